//! `diff_pairs`: the core's comparison of two sides' (key hash, item hash) pairs, on the Arrow
//! buffers of the Parquet copies' integer columns as polars read them (no copy into Python
//! objects); the GIL is released while it runs.

use ddbshard_core::compare::pairdiff;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A column given as buffers of little-endian 64-bit values (e.g. `pyarrow.Buffer`s, sliced
/// to the values of each chunk), held for as long as the slices made from them are used.
struct Column(Vec<Bytes>);

/// A buffer of bytes: pyarrow exports its buffers as signed bytes, `bytes` as unsigned.
enum Bytes {
    Signed(PyBuffer<i8>),
    Unsigned(PyBuffer<u8>),
}

impl Bytes {
    fn get(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
        match PyBuffer::<i8>::get(obj) {
            Ok(b) => Ok(Bytes::Signed(b)),
            Err(_) => Ok(Bytes::Unsigned(PyBuffer::<u8>::get(obj)?)),
        }
    }

    fn raw(&self) -> (*const u8, usize, bool) {
        match self {
            Bytes::Signed(b) => (b.buf_ptr() as *const u8, b.len_bytes(), b.is_c_contiguous()),
            Bytes::Unsigned(b) => (b.buf_ptr() as *const u8, b.len_bytes(), b.is_c_contiguous()),
        }
    }
}

impl Column {
    fn get(chunks: &[Bound<'_, PyAny>], what: &str) -> PyResult<Column> {
        let mut out = Vec::with_capacity(chunks.len());
        for c in chunks {
            let buf = Bytes::get(c)?;
            let (_, len, contiguous) = buf.raw();
            if !contiguous || len % 8 != 0 {
                return Err(PyValueError::new_err(format!(
                    "{what}: each chunk must be contiguous 64-bit values"
                )));
            }
            out.push(buf);
        }
        Ok(Column(out))
    }

    fn slices(&self) -> Vec<&[u8]> {
        self.0
            .iter()
            // SAFETY: the buffer is contiguous, len_bytes long, and stays alive (and, being
            // an exported Arrow or bytes buffer, unchanged) for as long as `self` is borrowed.
            .map(|b| {
                let (ptr, len, _) = b.raw();
                unsafe { std::slice::from_raw_parts(ptr, len) }
            })
            .collect()
    }

    fn values(&self) -> usize {
        self.0.iter().map(|b| b.raw().1 / 8).sum()
    }
}

fn le_bytes<'py>(py: Python<'py>, values: &[u64]) -> Bound<'py, PyBytes> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    PyBytes::new(py, &bytes)
}

/// The rows of a full join on the key hash that are not matches: (matched count, key hashes,
/// expected item hashes, actual item hashes, kinds), the last four as little-endian u64 bytes
/// (and u8 kinds: 0 missing, 1 unexpected, 2 changed; an absent side's hash is 0).
#[pyfunction]
#[pyo3(signature = (expected_keys, expected_items, actual_keys, actual_items, threads = 0))]
#[allow(clippy::type_complexity)]
pub fn diff_pairs<'py>(
    py: Python<'py>,
    expected_keys: Vec<Bound<'py, PyAny>>,
    expected_items: Vec<Bound<'py, PyAny>>,
    actual_keys: Vec<Bound<'py, PyAny>>,
    actual_items: Vec<Bound<'py, PyAny>>,
    threads: usize,
) -> PyResult<(
    u64,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
)> {
    let ek = Column::get(&expected_keys, "expected key hashes")?;
    let eh = Column::get(&expected_items, "expected item hashes")?;
    let ak = Column::get(&actual_keys, "actual key hashes")?;
    let ah = Column::get(&actual_items, "actual item hashes")?;
    if ek.values() != eh.values() || ak.values() != ah.values() {
        return Err(PyValueError::new_err(
            "each side needs as many item hashes as key hashes",
        ));
    }
    let (eks, ehs, aks, ahs) = (ek.slices(), eh.slices(), ak.slices(), ah.slices());
    let d = py.detach(|| pairdiff::diff_pairs(&eks, &ehs, &aks, &ahs, threads));
    let kinds: Vec<u8> = d.kind.iter().map(|k| *k as u8).collect();
    Ok((
        d.matched,
        le_bytes(py, &d.key),
        le_bytes(py, &d.expected),
        le_bytes(py, &d.actual),
        PyBytes::new(py, &kinds),
    ))
}
