//! Routing: which targets take an item (`expr`, the `where` conditions), how each reshapes it
//! (`transform`), the target's key and size checks before its line is written (`target`), and
//! the source key a routed copy keeps beside each output line (`source_key`).

pub mod expr;
pub mod source_key;
pub mod target;
pub mod transform;
