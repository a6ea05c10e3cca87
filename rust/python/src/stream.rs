//! The plumbing shared by the classes Python feeds a file at a time in chunks (`Splitter`,
//! `ColumnBuilder`, `LineReader`): each chunk, and each file's end, is handled with the GIL
//! released, and a core error comes back as the matching Python exception.

use ddbshard_core::compare::columns::ColumnBuilder;
use ddbshard_core::split::Splitter;
use ddbshard_core::Error;
use pyo3::prelude::*;

use crate::errors;

/// A core engine that reads one file at a time, in chunks.
pub trait FileInput: Send {
    /// Takes one chunk of the current file.
    fn feed(&mut self, data: &[u8]) -> Result<(), Error>;
    /// Ends the current file: its last line, and the check for a truncated stream.
    fn end_file(&mut self) -> Result<(), Error>;
    /// (compressed, decompressed) bytes read of the current file.
    fn file_bytes(&self) -> (u64, u64);
}

/// Feeds one chunk; the GIL is released meanwhile.
pub fn feed(py: Python<'_>, input: &mut impl FileInput, data: &[u8]) -> PyResult<()> {
    py.detach(|| input.feed(data))
        .map_err(|e| errors::to_py(py, e))
}

/// Ends the current file; the GIL is released meanwhile.
pub fn end_file(py: Python<'_>, input: &mut impl FileInput) -> PyResult<()> {
    py.detach(|| input.end_file())
        .map_err(|e| errors::to_py(py, e))
}

impl FileInput for Splitter {
    fn feed(&mut self, data: &[u8]) -> Result<(), Error> {
        Splitter::feed(self, data)
    }

    fn end_file(&mut self) -> Result<(), Error> {
        Splitter::end_file(self)
    }

    fn file_bytes(&self) -> (u64, u64) {
        Splitter::file_bytes(self)
    }
}

impl FileInput for ColumnBuilder {
    fn feed(&mut self, data: &[u8]) -> Result<(), Error> {
        ColumnBuilder::feed(self, data)
    }

    fn end_file(&mut self) -> Result<(), Error> {
        ColumnBuilder::end_file(self)
    }

    fn file_bytes(&self) -> (u64, u64) {
        ColumnBuilder::file_bytes(self)
    }
}
