//! The vdkr/vpdmn command line: argument grammar, arch selection and the one-shot flow
//! (validate inputs → guest image → boot → command → optional storage export → shutdown).

mod args;
mod arch_select;
mod oneshot;
mod project;

pub use args::{EngineArgs, EngineCommand, PASSTHROUGH};
pub use arch_select::resolve_arch;
pub use oneshot::main_for;
pub use project::vcontainer_main;
pub use crate::state::Tool;
