//! Leaf helpers every layer may use; they import nothing else of this crate.

pub mod path_lookup;
pub mod private;
pub mod tail;
