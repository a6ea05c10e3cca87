//! Output: items written back as DynamoDB JSON (`serialize`), dealt round-robin into compressed
//! shards (`shard`), the shards' MD5s (`md5`, many streams at once) and the reject records.

pub mod md5;
pub mod rejects;
pub mod serialize;
pub mod shard;
