//! The model: one item in memory and DynamoDB's rules for its values (numbers, base64
//! binaries, item size), plus the JSON string escaping that both `parse` and `output` follow.
//! Everything here depends only on other `model` modules, so every stage can use it.

pub mod binary;
pub(crate) mod escape;
pub mod number;
pub mod size;
pub mod value;
