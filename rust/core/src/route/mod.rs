//! Routing: which targets take an item (`expr`, the `where` conditions), how each reshapes it
//! (`transform`), and the target's key and size checks before its line is written (`target`).

pub mod expr;
pub mod target;
pub mod transform;
