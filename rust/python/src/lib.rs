//! `ddbshard._core`: the thin PyO3 layer over ddbshard-core. It converts types and errors and
//! releases the GIL around each chunk of work; all logic lives in the core crate.
//!
//! One module per stage of the core it exposes: `model` (loads/dumps), `input` (LineReader,
//! sniff_compression), `records` (stream_records, the DynamoDB Streams records of an event,
//! read by the core's `parse::records`; a large event's reading and planning, `plan`, run on a
//! second thread while `build` makes the Python objects), `route` (Condition), `output` (the
//! shards' MD5s), `compare` (Parquet columns, canonical items, flattening, pair diffs) and
//! `split` (Splitter). `stream` is the chunked-file plumbing the three fed classes share;
//! `errors` maps core errors to exceptions.

mod build;
mod compare;
mod errors;
mod input;
mod model;
mod output;
mod plan;
mod records;
mod route;
mod split;
mod stream;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(model::loads, m)?)?;
    m.add_function(wrap_pyfunction!(model::dumps, m)?)?;
    m.add_function(wrap_pyfunction!(records::stream_records, m)?)?;
    m.add_class::<records::StreamRecord>()?;
    m.add_class::<route::Condition>()?;
    m.add_class::<input::LineReader>()?;
    m.add_class::<split::Splitter>()?;
    m.add_class::<compare::columns::ColumnBuilder>()?;
    m.add_class::<output::Md5>()?;
    m.add_function(wrap_pyfunction!(output::md5_update_many, m)?)?;
    m.add_function(wrap_pyfunction!(input::sniff_compression, m)?)?;
    m.add("SNIFF_LEN", ddbshard_core::input::decode::SNIFF_LEN)?;
    m.add_function(wrap_pyfunction!(compare::columns::canonical_item, m)?)?;
    m.add_function(wrap_pyfunction!(compare::columns::flatten_items, m)?)?;
    m.add_function(wrap_pyfunction!(compare::pairdiff::diff_pairs, m)?)?;
    m.add(
        "REASONS",
        ddbshard_core::Reason::ALL.map(|r| r.code()).to_vec(),
    )?;
    Ok(())
}
