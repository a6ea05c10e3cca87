//! ddbshard-core: the data path of ddbshard without Python.
//!
//! The data path, one module per step: decode (gzip/zstd/plain) → lines → parse (DynamoDB
//! JSON, validated) → expr (routing conditions) → transform → target (key checks) →
//! serialize → shard (round-robin, compressed blocks); `split` drives them for one worker.
//! Number, binary and item-size rules live in `number`, `binary` and `size`.

pub mod binary;
pub mod canonical;
pub mod columns;
pub mod decode;
pub mod error;
mod escape;
pub mod expr;
pub mod flatten;
pub mod lines;
pub mod md5;
pub mod number;
pub mod pairdiff;
pub mod parse;
pub mod reader;
pub mod serialize;
pub mod shard;
pub mod size;
pub mod split;
pub mod target;
pub mod transform;
pub mod value;

pub use error::{Error, ParseError, Reason};
pub use parse::{parse_item, parse_value, Shape};
pub use value::{Map, TypeTag, Value};
