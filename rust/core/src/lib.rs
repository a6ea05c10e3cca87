//! ddbshard-core: the data path of ddbshard without Python.
//!
//! One folder per stage of the data path, each depending only on the stages before it:
//!
//! - `model`: the item in memory (`value`), DynamoDB's number, binary and item-size rules, and
//!   JSON string escaping: the vocabulary every other stage speaks;
//! - `input`: bytes to lines: decompression (`decode`), line splitting (`lines`), and the
//!   `reader` that numbers the lines and hands each one to `parse`;
//! - `parse`: one line of DynamoDB JSON to a validated item (and the line's layout);
//! - `route`: which targets take an item (`expr` conditions), reshaped how (`transform`),
//!   checked against the target's keys (`target`);
//! - `output`: items back to DynamoDB JSON (`serialize`), dealt into compressed shards
//!   (`shard`, with their MD5s in `md5`), and the reject records (`rejects`);
//! - `compare`: Parquet copies and diffs: the canonical form of an item and its hash, columnar
//!   batches, flat columns and the comparison of hash pairs.
//!
//! `error` (the typed errors, depending on no other module) sits beside them, and `split`
//! drives input → parse → route → output for one worker. `tests/layout.rs` checks that no
//! two stages, and no two modules, depend on each other in a circle.

pub mod compare;
pub mod error;
pub mod input;
pub mod model;
pub mod output;
pub mod parse;
pub mod route;
pub mod split;

pub use error::{Error, ParseError, Reason};
pub use model::value::{Map, TypeTag, Value};
pub use parse::{parse_item, parse_value, Shape};
