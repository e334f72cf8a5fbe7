//! `vcontainer`: project-level commands (guest images, benchmarks). The engine CLIs are `vdkr` and
//! `vpdmn`.

use std::process::ExitCode;

fn main() -> ExitCode {
    vcontainer::cli::vcontainer_main()
}
