//! `vpdmn`: the podman flavour of the vcontainer CLI (an `argv[0]` of `vpdmn-<arch>` selects the arch).

fn main() -> std::process::ExitCode {
    vcontainer::cli::main_for(vcontainer::cli::Tool::Vpdmn)
}
