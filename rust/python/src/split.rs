//! `Splitter`: the split engine for one worker. Built from the dict `SplitConfig.core_spec()`
//! returns; input is fed in chunks with the GIL released, shard bytes and reject records are
//! drained back to Python, which writes them wherever the destination is (disk or S3).

use ddbshard_core::output::shard::Codec;
use ddbshard_core::route::expr::Condition;
use ddbshard_core::route::target::Target;
use ddbshard_core::route::transform::{Template, Transform};
use ddbshard_core::split::{Route, Splitter as CoreSplitter, Unmatched};
use ddbshard_core::{parse_value, Error, TypeTag, Value};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::errors;
use crate::stream;

#[pyclass(module = "ddbshard._core")]
pub struct Splitter {
    inner: CoreSplitter,
}

fn config_err(py: Python<'_>, msg: String) -> PyErr {
    errors::to_py(py, Error::Config(msg))
}

fn get<'py, T: FromPyObjectOwned<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
    match d.get_item(key)? {
        Some(v) => v.extract().map_err(Into::into),
        None => Err(config_err(d.py(), format!("core spec lacks {key:?}"))),
    }
}

/// A dict of str → str in its insertion order (the order of the config file).
fn pairs(d: &Bound<'_, PyDict>, key: &str) -> PyResult<Vec<(String, String)>> {
    let inner: Bound<'_, PyDict> = get(d, key)?;
    inner
        .iter()
        .map(|(k, v)| Ok((k.extract()?, v.extract()?)))
        .collect()
}

fn key_type(py: Python<'_>, target: &str, attr: &str, t: &str) -> PyResult<TypeTag> {
    match t {
        "S" => Ok(TypeTag::S),
        "N" => Ok(TypeTag::N),
        "B" => Ok(TypeTag::B),
        _ => Err(config_err(
            py,
            format!("target {target}: key {attr:?} has type {t:?}; use S, N or B"),
        )),
    }
}

fn build_target(py: Python<'_>, spec: &Bound<'_, PyDict>) -> PyResult<Target> {
    let name: String = get(spec, "name")?;
    let names = pairs(spec, "names")?;
    let mut values: Vec<(String, Value<'static>)> = Vec::new();
    for (k, text) in pairs(spec, "values")? {
        let v = parse_value(&text)
            .map_err(|e| config_err(py, format!("target {name}: value {k}: {e}")))?
            .into_owned();
        values.push((k, v));
    }
    let condition = match get::<Option<String>>(spec, "where")? {
        Some(w) => Some(
            Condition::parse(&w, &names, &values)
                .map_err(|e| config_err(py, format!("target {name}: where: {e}")))?,
        ),
        None => None,
    };
    let mut set = Vec::new();
    for (attr, text) in pairs(spec, "set")? {
        let t = Template::parse(&text, &names)
            .map_err(|e| config_err(py, format!("target {name}: set {attr}: {e}")))?;
        set.push((attr, t));
    }
    let transform = Transform {
        keep: get(spec, "keep")?,
        drop: get(spec, "drop")?,
        rename: pairs(spec, "rename")?,
        set,
    };
    let key_types: std::collections::BTreeMap<String, String> =
        pairs(spec, "key_types")?.into_iter().collect();
    let typed = |attr: &str| -> PyResult<TypeTag> {
        let t = key_types
            .get(attr)
            .ok_or_else(|| config_err(py, format!("target {name}: no key type for {attr:?}")))?;
        key_type(py, &name, attr, t)
    };
    let hash: String = get(spec, "hash_key")?;
    let range: Option<String> = get(spec, "range_key")?;
    let hash_key = (hash.clone(), typed(&hash)?);
    let range_key = match range {
        Some(r) => Some((r.clone(), typed(&r)?)),
        None => None,
    };
    let mut index_keys = Vec::new();
    for (attr, t) in pairs(spec, "index_keys")? {
        index_keys.push((attr.clone(), key_type(py, &name, &attr, &t)?));
    }
    let target = Target {
        name,
        condition,
        transform,
        hash_key,
        range_key,
        index_keys,
        shards: get(spec, "shards")?,
    };
    target
        .check_names()
        .map_err(|e| config_err(py, format!("target {}: {e}", target.name)))?;
    Ok(target)
}

#[pymethods]
impl Splitter {
    /// Builds the engine from `SplitConfig.core_spec()`; every expression and template is
    /// parsed here, so a bad config fails before any data is read.
    #[new]
    fn new(py: Python<'_>, spec: &Bound<'_, PyDict>) -> PyResult<Self> {
        let route = match get::<String>(spec, "route")?.as_str() {
            "first" => Route::First,
            "all" => Route::All,
            r => return Err(config_err(py, format!("route {r:?}: use first or all"))),
        };
        let unmatched = match get::<String>(spec, "unmatched")?.as_str() {
            "reject" => Unmatched::Reject,
            "drop" => Unmatched::Drop,
            "error" => Unmatched::Error,
            u => {
                return Err(config_err(
                    py,
                    format!("unmatched {u:?}: use reject, drop or error"),
                ))
            }
        };
        let codec = match get::<String>(spec, "compression")?.as_str() {
            "zstd" => Codec::Zstd,
            "gzip" => Codec::Gzip,
            "none" => Codec::None,
            c => {
                return Err(config_err(
                    py,
                    format!("compression {c:?}: use zstd, gzip or none"),
                ))
            }
        };
        let level: i32 = get(spec, "level")?;
        let mut targets = Vec::new();
        for t in get::<Vec<Bound<'_, PyDict>>>(spec, "targets")? {
            targets.push(build_target(py, &t)?);
        }
        let inner = CoreSplitter::new(targets, route, unmatched, codec, level)
            .map_err(|e| errors::to_py(py, e))?;
        Ok(Splitter { inner })
    }

    fn begin_file(&mut self, name: &str) {
        self.inner.begin_file(name);
    }

    /// Feeds one chunk of the current file; the GIL is released meanwhile.
    fn feed(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        stream::feed(py, &mut self.inner, data)
    }

    /// Ends the current file: last line, truncation check, shard blocks flushed.
    fn end_file(&mut self, py: Python<'_>) -> PyResult<()> {
        stream::end_file(py, &mut self.inner)
    }

    /// (compressed, decompressed) bytes read of the current file.
    fn file_bytes(&self) -> (u64, u64) {
        self.inner.file_bytes()
    }

    /// Starts round-robin dealing for `target` at shard `next`.
    fn set_next_shard(&mut self, target: usize, next: usize) {
        self.inner.set_next_shard(target, next);
    }

    /// Compressed shard bytes ready to write: [(target index, shard index, bytes)].
    fn drain<'py>(&mut self, py: Python<'py>) -> Vec<(usize, usize, Bound<'py, PyBytes>)> {
        let mut out = Vec::new();
        self.inner
            .drain_shards(|t, s, b| out.push((t, s, PyBytes::new(py, b))));
        out
    }

    /// Keeps the source key (attributes `names`, hash key first) of every line written, for
    /// `drain_source_keys`; an item without it is refused (missing_key) by every target it
    /// matches. Needs one shard per target.
    fn keep_source_key(&mut self, py: Python<'_>, names: Vec<String>) -> PyResult<()> {
        self.inner
            .keep_source_key(names)
            .map_err(|e| errors::to_py(py, e))
    }

    /// The source keys of the lines written since the last call: [(target index, bytes)],
    /// one JSON line per line written to the target, in the same order. Drain them before the
    /// shards: a line's key is ready when the line is.
    fn drain_source_keys<'py>(&mut self, py: Python<'py>) -> Vec<(usize, Bound<'py, PyBytes>)> {
        let mut out = Vec::new();
        self.inner
            .drain_source_keys(|t, b| out.push((t, PyBytes::new(py, b))));
        out
    }

    /// Reject records (JSON lines) produced since the last call.
    fn take_rejects<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.take_rejects())
    }

    /// Per target, per shard: (items, uncompressed bytes).
    fn shard_stats(&self) -> Vec<Vec<(u64, u64)>> {
        (0..self.inner.targets().len())
            .map(|t| {
                self.inner
                    .shard_set(t)
                    .stats()
                    .map(|s| (s.items, s.bytes))
                    .collect()
            })
            .collect()
    }

    /// The counts so far, as a dict (see `ddbshard_core::split::Counts`).
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.inner.counts();
        let d = PyDict::new(py);
        d.set_item("read", c.read)?;
        d.set_item("written", c.written)?;
        d.set_item("unmatched", c.unmatched)?;
        d.set_item("rejected", c.rejected)?;
        d.set_item("reject_records", c.reject_records.clone())?;
        let targets = PyDict::new(py);
        for (t, target) in self.inner.targets().iter().enumerate() {
            let td = PyDict::new(py);
            td.set_item("written", c.target_written[t])?;
            td.set_item("rejected", c.target_rejected[t].clone())?;
            targets.set_item(&target.name, td)?;
        }
        d.set_item("targets", targets)?;
        Ok(d)
    }
}
