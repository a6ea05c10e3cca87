//! Maps core errors to the Python exception classes defined in `ddbshard/exceptions.py`
//! (one class per kind of failure, all under `DdbShardError`).

use ddbshard_core::{Error, ParseError};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

fn class<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
) -> PyResult<Bound<'py, PyType>> {
    cell.get_or_try_init(py, || {
        let module = py.import("ddbshard.exceptions")?;
        Ok::<_, PyErr>(module.getattr(name)?.cast_into::<PyType>()?.unbind())
    })
    .map(|t| t.bind(py).clone())
}

static PARSE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static DECOMPRESS_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static CONFIG_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static UNMATCHED_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `ParseError(message, reason, line, offset, excerpt)`.
pub fn parse_error(py: Python<'_>, e: &ParseError) -> PyErr {
    match class(py, &PARSE_ERROR, "ParseError") {
        Ok(cls) => match cls.call1((
            e.to_string(),
            e.reason.code(),
            e.line,
            e.offset,
            e.excerpt.clone(),
        )) {
            Ok(obj) => PyErr::from_value(obj),
            Err(err) => err,
        },
        Err(err) => err,
    }
}

pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let simple = |cell: &'static PyOnceLock<Py<PyType>>, name: &str, msg: String| match class(
        py, cell, name,
    ) {
        Ok(cls) => match cls.call1((msg,)) {
            Ok(obj) => PyErr::from_value(obj),
            Err(err) => err,
        },
        Err(err) => err,
    };
    match e {
        Error::Parse(p) => parse_error(py, &p),
        Error::Decompress(m) => simple(&DECOMPRESS_ERROR, "DecompressError", m),
        Error::Config(m) => simple(&CONFIG_ERROR, "ConfigError", m),
        Error::Io(io) => PyErr::from(io),
        Error::Unmatched(m) => simple(&UNMATCHED_ERROR, "UnmatchedError", m),
    }
}

/// For invariants the core promises; reaching it is a bug, reported rather than swallowed.
#[allow(dead_code)]
pub fn internal(msg: impl Into<String>) -> PyErr {
    PyRuntimeError::new_err(msg.into())
}
