//! Input: compressed chunks to numbered lines, and each line to `parse`. `reader` is the front
//! of the data path that split, validation and Parquet copies all read through.

pub mod decode;
pub mod lines;
pub mod reader;
