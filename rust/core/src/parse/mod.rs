//! The DynamoDB-JSON parser: one line of bytes in, a validated item (borrowing the line) out.
//!
//! Hand-written rather than serde_json so that every DynamoDB rule is checked in the same pass
//! as the JSON syntax, each refusal names the rule and the byte offset, and values borrow the
//! line instead of being copied. UTF-8 is validated once for the whole line up front (SIMD, with
//! simdutf8), so string slices can be taken without checking them again.
//!
//! The parser is split by concern: `line` (the entry points and the reading of a whole line),
//! `scanner` (the cursor over the line: whitespace, punctuation, errors), `values` (the
//! attribute-value grammar: maps, typed values, lists, sets), `scalars` (S, N, B, BOOL and
//! NULL payloads), `strings` (JSON strings and escapes), `duplicates` (duplicate map names and
//! set members) and `layout` (where a line's parts sit, to copy them instead of serializing).
//! `records` reads DynamoDB Streams records: their JSON envelope, and their images with the
//! same attribute-map grammar as an item.

mod duplicates;
mod layout;
mod line;
mod records;
mod scalars;
mod scanner;
mod strings;
mod values;

pub use layout::{Entry, Layout, RawLine};
pub use line::{parse_item, parse_item_layout, parse_value, Shape};
pub use records::{
    epoch_micros, parse_stream_records, read_stream_records, EventName, RecordError, Records,
    StreamRecord,
};

/// DynamoDB nests documents at most 32 levels, the top-level attribute counting as level 1
/// (Developer Guide, "Constraints"; a value at level 33 is refused with "Nesting Levels have
/// exceeded supported limits").
pub const MAX_DEPTH: usize = 32;
/// DynamoDB: attribute names are "at least one character long and less than 64 KB".
pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 65_535;
