//! ddbshard-core: the data path of ddbshard without Python.
//!
//! decode (gzip/zstd/plain) → lines → parse (DynamoDB JSON, validated) → value → serialize,
//! with number and binary rules in their own modules and the item-size rule in `size`.

pub mod binary;
pub mod decode;
pub mod error;
pub mod expr;
pub mod lines;
pub mod number;
pub mod parse;
pub mod reader;
pub mod serialize;
pub mod size;
pub mod value;

pub use error::{Error, ParseError, Reason};
pub use parse::{parse_item, parse_value, Shape};
pub use value::{Map, TypeTag, Value};
