//! `ddbshard._core`: the thin PyO3 layer over ddbshard-core. It converts types and errors and
//! releases the GIL around each chunk of work; all logic lives in the core crate.

mod columns;
mod condition;
mod convert;
mod errors;
mod md5;
mod pairdiff;
mod reader;
mod splitter;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(convert::loads, m)?)?;
    m.add_function(wrap_pyfunction!(convert::dumps, m)?)?;
    m.add_class::<condition::Condition>()?;
    m.add_class::<reader::LineReader>()?;
    m.add_class::<splitter::Splitter>()?;
    m.add_class::<columns::ColumnBuilder>()?;
    m.add_class::<md5::Md5>()?;
    m.add_function(wrap_pyfunction!(md5::md5_update_many, m)?)?;
    m.add_function(wrap_pyfunction!(reader::sniff_compression, m)?)?;
    m.add("SNIFF_LEN", ddbshard_core::input::decode::SNIFF_LEN)?;
    m.add_function(wrap_pyfunction!(columns::canonical_item, m)?)?;
    m.add_function(wrap_pyfunction!(columns::flatten_items, m)?)?;
    m.add_function(wrap_pyfunction!(pairdiff::diff_pairs, m)?)?;
    m.add(
        "REASONS",
        ddbshard_core::Reason::ALL.map(|r| r.code()).to_vec(),
    )?;
    Ok(())
}
