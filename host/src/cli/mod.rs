//! The vdkr/vpdmn command line: argument grammar, arch selection and the one-shot flow
//! (validate inputs → guest image → boot → command → optional storage export → shutdown).

mod arch_select;
mod args;
mod bundling;
pub mod config;
mod dispatch;
mod docs;
mod engine_cmd;
mod error_text;
mod execute;
mod guest;
mod host_engine;
mod image_args;
mod memres;
mod oci;
mod project;
mod project_args;
mod run_options;
mod settings;
mod vconfig;
mod vstorage;

pub use crate::state::Tool;
pub use arch_select::resolve_arch;
pub use args::{EngineArgs, EngineCommand, MemresAction, PASSTHROUGH};
pub use dispatch::main_for;
pub use execute::check_output;
pub use project::vcontainer_main;

/// The async runtime of one CLI invocation (two workers: the CLI mostly waits on the guest).
fn runtime(reporter: &crate::util::progress::Reporter) -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            reporter.error(format!("cannot start the async runtime: {e}"));
            None
        }
    }
}
