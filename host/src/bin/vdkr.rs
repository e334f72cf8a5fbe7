//! `vdkr`: the docker flavour of the vcontainer CLI (an `argv[0]` of `vdkr-<arch>` selects the arch).

fn main() -> std::process::ExitCode {
    vcontainer::cli::main_for(vcontainer::cli::Tool::Vdkr)
}
