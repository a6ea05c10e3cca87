//! `Md5` and `md5_update_many`: the shards' MD5s, many streams in one call (core `md5`).

use ddbshard_core::output::md5 as core_md5;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A running MD5, like `hashlib.md5()`, that `md5_update_many` can feed beside others.
#[pyclass(module = "ddbshard._core")]
#[derive(Default)]
pub struct Md5 {
    inner: core_md5::Md5,
}

#[pymethods]
impl Md5 {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    fn update(&mut self, py: Python<'_>, data: &[u8]) {
        let inner = &mut self.inner;
        py.detach(|| inner.update(data));
    }

    fn digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.digest())
    }

    fn hexdigest(&self) -> String {
        self.inner
            .digest()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Appends `chunks[i]` (in order) to `hashers[i]` for every i, the streams side by side in
/// SIMD lanes; the GIL is released meanwhile. A hasher may appear only once. Chunks are any
/// contiguous byte buffers: `bytes`, or `memoryview`s of the mapped spill file (no copy).
#[pyfunction]
pub fn md5_update_many(
    py: Python<'_>,
    mut hashers: Vec<PyRefMut<'_, Md5>>,
    chunks: Vec<Vec<PyBuffer<u8>>>,
) -> PyResult<()> {
    if hashers.len() != chunks.len() {
        return Err(PyValueError::new_err(format!(
            "{} hashers but {} lists of chunks",
            hashers.len(),
            chunks.len()
        )));
    }
    if chunks.iter().flatten().any(|b| !b.is_c_contiguous()) {
        return Err(PyValueError::new_err("chunks must be contiguous buffers"));
    }
    let slices: Vec<Vec<&[u8]>> = chunks
        .iter()
        .map(|c| c.iter().map(bytes_of).collect())
        .collect();
    let mut jobs: Vec<(&mut core_md5::Md5, &[&[u8]])> = hashers
        .iter_mut()
        .zip(&slices)
        .map(|(h, s)| (&mut h.inner, &s[..]))
        .collect();
    py.detach(|| core_md5::update_many(&mut jobs));
    Ok(())
}

fn bytes_of(buffer: &PyBuffer<u8>) -> &[u8] {
    // SAFETY: the buffer is contiguous (checked above) and len_bytes long, and it stays
    // exported, so alive and not resizable by its owner, for as long as `buffer` is borrowed.
    unsafe { std::slice::from_raw_parts(buffer.buf_ptr() as *const u8, buffer.len_bytes()) }
}
