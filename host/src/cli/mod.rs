//! The vdkr/vpdmn command line: argument grammar, arch selection and the one-shot flow
//! (validate inputs → guest image → boot → command → optional storage export → shutdown).

mod arch_select;
mod args;
mod oneshot;
mod project;

pub use crate::state::Tool;
pub use arch_select::resolve_arch;
pub use args::{EngineArgs, EngineCommand, PASSTHROUGH};
pub use oneshot::main_for;
pub use project::vcontainer_main;
