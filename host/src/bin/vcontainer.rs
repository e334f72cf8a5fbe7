//! `vcontainer`: project-level commands (guest images, benchmarks). The engine CLIs are `vdkr` and
//! `vpdmn`; `vcontainer vdkr …` and `vcontainer vpdmn …` reach them too.

use std::process::ExitCode;

fn main() -> ExitCode {
    vcontainer::cli::vcontainer_main()
}
