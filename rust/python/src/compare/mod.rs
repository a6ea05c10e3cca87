//! The core's `compare` stage: Parquet-copy columns, canonical items and flat columns
//! (`columns`), and the diff of two sides' hash pairs (`pairdiff`).

pub mod columns;
pub mod pairdiff;
