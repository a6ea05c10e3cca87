//! Comparison of copies: the canonical form and hash of an item (`canonical`), Arrow-layout
//! batches for Parquet copies (`columns`), flat per-attribute columns (`flatten`) and the
//! join of two sides' hash pairs (`pairdiff`). Read through `input`, like split.

pub mod canonical;
pub mod columns;
pub mod flatten;
pub mod pairdiff;
