//! Leaf helpers every layer may use; they import nothing else of this crate.

pub mod host_tar;
pub mod path_lookup;
pub mod private;
pub mod progress;
pub mod tail;
pub mod terminal;
