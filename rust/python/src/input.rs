//! `LineReader`: feeds compressed chunks through the core's reader with the GIL released,
//! counting items and collecting refusals. Used by `ddbshard validate` and the benchmarks.

use ddbshard_core::input::decode::{self, Compression, Magic};
use ddbshard_core::input::reader::{LineEvent, LineReader as CoreReader};
use ddbshard_core::{Error, Shape};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::stream::{self, FileInput};

/// (line number, reason code, message, raw line)
type Refusal = (u64, &'static str, String, Vec<u8>);

#[pyclass(module = "ddbshard._core")]
pub struct LineReader {
    inner: Counting,
}

/// The core reader, with the items and refusals it has reported.
struct Counting {
    reader: CoreReader,
    items: u64,
    refusals: Vec<Refusal>,
    refused: u64,
}

impl FileInput for Counting {
    fn feed(&mut self, data: &[u8]) -> Result<(), Error> {
        let Counting {
            reader,
            items,
            refusals,
            refused,
        } = self;
        reader.feed(data, &mut |e| count(e, items, refusals, refused))
    }

    fn end_file(&mut self) -> Result<(), Error> {
        let Counting {
            reader,
            items,
            refusals,
            refused,
        } = self;
        reader.finish(&mut |e| count(e, items, refusals, refused))
    }

    fn file_bytes(&self) -> (u64, u64) {
        (self.reader.bytes_in(), self.reader.bytes_out())
    }
}

#[pymethods]
impl LineReader {
    #[new]
    #[pyo3(signature = (shape = "export"))]
    fn new(shape: &str) -> PyResult<Self> {
        let shape = match shape {
            "export" => Shape::ExportLine,
            "map" => Shape::AttributeMap,
            "any" => Shape::Any,
            other => {
                return Err(PyValueError::new_err(format!(
                    "shape must be 'export', 'map' or 'any', not {other:?}"
                )))
            }
        };
        Ok(LineReader {
            inner: Counting {
                reader: CoreReader::new(shape),
                items: 0,
                refusals: Vec::new(),
                refused: 0,
            },
        })
    }

    /// Feeds one chunk of (possibly compressed) input; the GIL is released meanwhile.
    fn feed(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        stream::feed(py, &mut self.inner, data)
    }

    /// Ends the input; raises DecompressError if it was truncated.
    fn finish(&mut self, py: Python<'_>) -> PyResult<()> {
        stream::end_file(py, &mut self.inner)
    }

    /// Valid items seen so far.
    #[getter]
    fn items(&self) -> u64 {
        self.inner.items
    }

    /// Refused lines seen so far.
    #[getter]
    fn refused(&self) -> u64 {
        self.inner.refused
    }

    #[getter]
    fn bytes_in(&self) -> u64 {
        self.inner.file_bytes().0
    }

    #[getter]
    fn bytes_out(&self) -> u64 {
        self.inner.file_bytes().1
    }

    /// Refusals collected since the last call: (line, reason, message, raw line bytes).
    fn take_refusals<'py>(
        &mut self,
        py: Python<'py>,
    ) -> Vec<(u64, &'static str, String, Bound<'py, PyBytes>)> {
        std::mem::take(&mut self.inner.refusals)
            .into_iter()
            .map(|(n, r, m, raw)| (n, r, m, PyBytes::new(py, &raw)))
            .collect()
    }
}

fn count(e: LineEvent<'_, '_>, items: &mut u64, refusals: &mut Vec<Refusal>, refused: &mut u64) {
    match e.item {
        Ok(_) => *items += 1,
        Err(err) => {
            *refused += 1;
            refusals.push((
                e.line_no,
                err.reason.code(),
                err.to_string(),
                e.raw.to_vec(),
            ));
        }
    }
}

/// The format a stream's first bytes say it is: "gzip", "zstd", "none" (text, or too short to
/// tell), or the name of a compressed format that is not read ("bzip2", "xz", ...). The bytes
/// the reader itself sniffs with, so that a source folder and the reader agree.
#[pyfunction]
pub fn sniff_compression(head: &[u8]) -> &'static str {
    match decode::sniff(head) {
        Magic::Read(Compression::None) => "none",
        Magic::Read(Compression::Gzip) => "gzip",
        Magic::Read(Compression::Zstd) => "zstd",
        Magic::Unsupported(name) => name,
    }
}
