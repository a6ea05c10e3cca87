//! `ColumnBuilder`: the core's columnar batch builder for Parquet copies. Chunks go in with the
//! GIL released; batches come out as Arrow-layout buffers in `bytes` objects, which
//! `ddbshard.parquet` wraps with `pyarrow.Array.from_buffers` without copying or making an
//! object per item. Also `canonical_item`, the canonical form and hash of one item, and
//! `flatten_items`, the per-attribute columns of `parquet --flatten`.

use ddbshard_core::compare::canonical::{self, Canonicalizer};
use ddbshard_core::compare::columns::{Batch, ColumnBuilder as CoreBuilder, KeyColumn, Validity};
use ddbshard_core::compare::flatten;
use ddbshard_core::{parse_item, Error, Shape, TypeTag};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::errors;
use crate::stream;

fn shape_of(shape: &str) -> PyResult<Shape> {
    match shape {
        "export" => Ok(Shape::ExportLine),
        "map" => Ok(Shape::AttributeMap),
        "any" => Ok(Shape::Any),
        other => Err(PyValueError::new_err(format!(
            "shape must be 'export', 'map' or 'any', not {other:?}"
        ))),
    }
}

#[pyclass(module = "ddbshard._core")]
pub struct ColumnBuilder {
    inner: CoreBuilder,
}

#[pymethods]
impl ColumnBuilder {
    /// `keys`: [(attribute, "S" | "N" | "B")], hash key first. `target` is named in reject
    /// records for items whose key is missing or mistyped. `track_types` records the types of
    /// every top-level attribute (for `--flatten`). `source_keys`: every line takes the next
    /// key fed with `feed_source_keys` into the batch's `source_key` column.
    #[new]
    #[pyo3(signature = (keys = Vec::new(), target = None, track_types = false, shape = "export", source_keys = false))]
    fn new(
        py: Python<'_>,
        keys: Vec<(String, String)>,
        target: Option<String>,
        track_types: bool,
        shape: &str,
        source_keys: bool,
    ) -> PyResult<Self> {
        let mut typed = Vec::with_capacity(keys.len());
        for (name, t) in keys {
            let tag = match t.as_str() {
                "S" => TypeTag::S,
                "N" => TypeTag::N,
                "B" => TypeTag::B,
                other => {
                    return Err(errors::to_py(
                        py,
                        Error::Config(format!(
                            "key attribute {name:?} has type {other:?}: use S, N or B"
                        )),
                    ))
                }
            };
            typed.push((name, tag));
        }
        let inner = CoreBuilder::new(typed, target, shape_of(shape)?, track_types, source_keys)
            .map_err(|e| errors::to_py(py, e))?;
        Ok(ColumnBuilder { inner })
    }

    /// Starts a file; `line_numbers=False` when its lines are not the source's own (routed).
    #[pyo3(signature = (name, line_numbers = true))]
    fn begin_file(&mut self, name: &str, line_numbers: bool) {
        self.inner.begin_file(name, line_numbers);
    }

    /// Source keys (JSON lines, one per item line to come, from `Splitter.drain_source_keys`);
    /// fed before the lines they belong to.
    fn feed_source_keys(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.inner
            .feed_source_keys(data)
            .map_err(|e| errors::to_py(py, e))
    }

    /// Feeds one chunk of the current file (compressed or not); the GIL is released meanwhile.
    fn feed(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        stream::feed(py, &mut self.inner, data)
    }

    /// Ends the current file; raises DecompressError if it was truncated.
    fn end_file(&mut self, py: Python<'_>) -> PyResult<()> {
        stream::end_file(py, &mut self.inner)
    }

    /// (compressed, decompressed) bytes read of the current file.
    fn file_bytes(&self) -> (u64, u64) {
        self.inner.file_bytes()
    }

    /// Rows in the batch being built.
    #[getter]
    fn rows(&self) -> usize {
        self.inner.rows()
    }

    /// Approximate bytes held by the batch being built.
    #[getter]
    fn batch_bytes(&self) -> usize {
        self.inner.batch_bytes()
    }

    /// The rows built so far as Arrow buffers (see `_core.pyi`), and a fresh batch.
    fn take_batch<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let batch = self.inner.take_batch();
        batch_dict(py, &batch)
    }

    /// Reject records (JSON lines, as split writes them) since the last call.
    fn take_rejects<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.take_rejects())
    }

    /// {"read", "items", "rejected", "reasons": {code: n}}.
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.inner.counts();
        let d = PyDict::new(py);
        d.set_item("read", c.read)?;
        d.set_item("items", c.items)?;
        d.set_item("rejected", c.rejected)?;
        d.set_item("reasons", c.reasons.clone())?;
        Ok(d)
    }

    /// Top-level attribute name -> the types it had ("S", "N", ...), over every item so far;
    /// empty unless built with `track_types`.
    fn attribute_types(&self) -> Vec<(String, Vec<&'static str>)> {
        let Some(types) = self.inner.attribute_types() else {
            return Vec::new();
        };
        let mut out: Vec<(String, Vec<&'static str>)> = types
            .iter()
            .map(|(name, mask)| {
                let tags = TypeTag::ALL
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, t)| t.as_str())
                    .collect();
                (name.clone(), tags)
            })
            .collect();
        out.sort();
        out
    }
}

fn bytes<'py>(py: Python<'py>, b: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, b)
}

fn validity<'py>(py: Python<'py>, v: &Validity) -> (Option<Bound<'py, PyBytes>>, usize) {
    if v.nulls == 0 {
        (None, 0)
    } else {
        (Some(bytes(py, &v.bits)), v.nulls)
    }
}

fn batch_dict<'py>(py: Python<'py>, b: &Batch) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("rows", b.rows)?;
    let keys = PyList::empty(py);
    for k in &b.keys {
        let kd = PyDict::new(py);
        match k {
            KeyColumn::S(c) | KeyColumn::B(c) => {
                kd.set_item(
                    "type",
                    if matches!(k, KeyColumn::S(_)) {
                        "S"
                    } else {
                        "B"
                    },
                )?;
                kd.set_item("offsets", bytes(py, &c.offsets))?;
                kd.set_item("data", bytes(py, &c.data))?;
            }
            KeyColumn::N { text, float, valid } => {
                kd.set_item("type", "N")?;
                kd.set_item("offsets", bytes(py, &text.offsets))?;
                kd.set_item("data", bytes(py, &text.data))?;
                kd.set_item("float", bytes(py, float))?;
                let (bits, nulls) = validity(py, valid);
                kd.set_item("float_validity", bits)?;
                kd.set_item("float_nulls", nulls)?;
            }
        }
        keys.append(kd)?;
    }
    d.set_item("keys", keys)?;
    d.set_item("item_offsets", bytes(py, &b.item.offsets))?;
    d.set_item("item_data", bytes(py, &b.item.data))?;
    d.set_item("hash", bytes(py, &b.hash))?;
    d.set_item("key_hash", bytes(py, &b.key_hash))?;
    d.set_item("file_index", bytes(py, &b.file_index))?;
    d.set_item("files", b.files.clone())?;
    d.set_item("line", bytes(py, &b.line))?;
    let (bits, nulls) = validity(py, &b.line_valid);
    d.set_item("line_validity", bits)?;
    d.set_item("line_nulls", nulls)?;
    d.set_item("source_key_offsets", bytes(py, &b.source_key.offsets))?;
    d.set_item("source_key_data", bytes(py, &b.source_key.data))?;
    Ok(d)
}

/// The canonical form of one item (an export line, a bare attribute map or `{"Item":...}`)
/// and its 64-bit hash: (canonical bytes, hash as an unsigned integer).
#[pyfunction]
pub fn canonical_item<'py>(py: Python<'py>, data: &[u8]) -> PyResult<(Bound<'py, PyBytes>, u64)> {
    let item = parse_item(data, Shape::Any).map_err(|e| errors::parse_error(py, &e))?;
    let mut out = Vec::with_capacity(data.len());
    Canonicalizer::new().write_item(&mut out, &item);
    let h = canonical::hash(&out);
    Ok((PyBytes::new(py, &out), h))
}

/// Flat columns of canonical items given as Arrow large_utf8 buffers (`offsets`: rows + 1
/// little-endian i64; `data`), one per (attribute, type) in `columns`; the GIL is released
/// meanwhile. Each column: {"type", "offsets", "values", "validity", "nulls",
/// "child_offsets", "child_values", "child_len"} (see `ddbshard_core::compare::flatten`).
#[pyfunction]
pub fn flatten_items<'py>(
    py: Python<'py>,
    offsets: &[u8],
    data: &[u8],
    columns: Vec<(String, String)>,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let mut typed = Vec::with_capacity(columns.len());
    for (name, t) in columns {
        let tag = TypeTag::ALL
            .iter()
            .copied()
            .find(|tag| tag.as_str() == t && *tag != TypeTag::Null)
            .ok_or_else(|| PyValueError::new_err(format!("{name}: no column for type {t:?}")))?;
        typed.push((name, tag));
    }
    let flat = py
        .detach(|| flatten::flatten(offsets, data, &typed))
        .map_err(|e| errors::to_py(py, e))?;
    let mut out = Vec::with_capacity(flat.len());
    for c in &flat {
        let d = PyDict::new(py);
        d.set_item("type", c.tag.as_str())?;
        d.set_item("offsets", bytes(py, &c.offsets))?;
        d.set_item("values", bytes(py, &c.values))?;
        let (bits, nulls) = validity(py, &c.validity);
        d.set_item("validity", bits)?;
        d.set_item("nulls", nulls)?;
        d.set_item("child_offsets", bytes(py, &c.child_offsets))?;
        d.set_item("child_values", bytes(py, &c.child_values))?;
        d.set_item("child_len", c.child_len)?;
        out.push(d);
    }
    Ok(out)
}
