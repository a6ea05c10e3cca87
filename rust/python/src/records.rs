//! `stream_records`: the records of a DynamoDB Streams event as `StreamRecord` objects whose
//! images are exactly what `loads` gives (the same `ToPy` builds them).
//!
//! JSON text goes straight to the core's reader. An event already parsed into Python objects
//! (what a Lambda handler receives, or boto3's GetRecords response, whose binaries are bytes
//! and whose times are datetimes) is first written back as JSON, binaries as base64 and times
//! as epoch seconds, and then read the same way: one reader, so a dict and its JSON text give
//! the same records and the same refusals.

use std::borrow::Cow;

use ddbshard_core::model::binary;
use ddbshard_core::output::serialize;
use ddbshard_core::parse::{
    read_stream_records, EventName, RecordError, StreamRecord as CoreRecord,
};
use ddbshard_core::{ParseError, Reason};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple,
    PyType,
};
use pyo3::{intern, IntoPyObjectExt};

use crate::errors;
use crate::model::{binary_bytes, decimal_type, text_bytes, utf8, GcPause, ToPy};

/// One change record. Frozen: its fields are read, never set.
#[pyclass(frozen, module = "ddbshard._core")]
pub struct StreamRecord {
    #[pyo3(get)]
    index: usize,
    #[pyo3(get)]
    name: Py<PyString>,
    #[pyo3(get)]
    keys: Py<PyDict>,
    #[pyo3(get)]
    new: Option<Py<PyDict>>,
    #[pyo3(get)]
    old: Option<Py<PyDict>>,
    #[pyo3(get)]
    time_us: Option<i64>,
    #[pyo3(get)]
    sequence: Option<Py<PyString>>,
    #[pyo3(get)]
    event_id: Option<Py<PyString>>,
    #[pyo3(get)]
    source_arn: Option<Py<PyString>>,
    #[pyo3(get)]
    table: Option<Py<PyString>>,
    #[pyo3(get)]
    view_type: Option<Py<PyString>>,
}

const FIELDS: [&str; 11] = [
    "index",
    "name",
    "keys",
    "new",
    "old",
    "time_us",
    "sequence",
    "event_id",
    "source_arn",
    "table",
    "view_type",
];

impl StreamRecord {
    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(
            py,
            [
                self.index.into_bound_py_any(py)?,
                self.name.bind(py).clone().into_any(),
                self.keys.bind(py).clone().into_any(),
                (&self.new).into_bound_py_any(py)?,
                (&self.old).into_bound_py_any(py)?,
                self.time_us.into_bound_py_any(py)?,
                (&self.sequence).into_bound_py_any(py)?,
                (&self.event_id).into_bound_py_any(py)?,
                (&self.source_arn).into_bound_py_any(py)?,
                (&self.table).into_bound_py_any(py)?,
                (&self.view_type).into_bound_py_any(py)?,
            ],
        )
    }
}

#[pymethods]
impl StreamRecord {
    fn __eq__(&self, py: Python<'_>, other: PyRef<'_, StreamRecord>) -> PyResult<bool> {
        self.values(py)?.eq(other.values(py)?)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let values = self.values(py)?;
        let mut parts = Vec::with_capacity(FIELDS.len());
        for (field, value) in FIELDS.iter().zip(values.iter()) {
            parts.push(format!("{field}={}", value.repr()?));
        }
        Ok(format!("StreamRecord({})", parts.join(", ")))
    }

    /// The fields as a dict, in declaration order.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (field, value) in FIELDS.iter().zip(self.values(py)?.iter()) {
            dict.set_item(field, value)?;
        }
        Ok(dict)
    }
}

/// The records of a DynamoDB Streams event (JSON text, or the dict or list it parses to).
#[pyfunction]
#[pyo3(signature = (event, *, problems = None))]
pub fn stream_records<'py>(
    py: Python<'py>,
    event: &Bound<'py, PyAny>,
    problems: Option<&Bound<'py, PyList>>,
) -> PyResult<Bound<'py, PyList>> {
    let (json, written) = match text_bytes(event)? {
        Some(text) => (text, false),
        None => {
            if event.cast::<PyDict>().is_err()
                && event.cast::<PyList>().is_err()
                && event.cast::<PyTuple>().is_err()
            {
                return Err(PyTypeError::new_err(format!(
                    "stream_records() takes an event as JSON text (str or bytes) or as the dict \
                     or list it parses to, not {}",
                    event.get_type().name()?
                )));
            }
            let mut out = Vec::with_capacity(4096);
            write_json(&mut out, event, 0)?;
            (Cow::Owned(out), true)
        }
    };
    // Each record becomes Python objects as soon as it is read, while its text and parsed
    // values are still in the CPU's cache.
    let _pause = GcPause::new(py);
    // An event's records share their attribute names and many values: room for a few
    // thousand distinct ones.
    let mut to_py = ToPy::new(py, 4096)?;
    let out = PyList::empty(py);
    let mut failed: Option<PyErr> = None;
    let skipped = read_stream_records(&json, problems.is_some(), &mut |r| {
        let made = record_to_py(&mut to_py, &r)
            .and_then(|rec| Bound::new(py, rec))
            .and_then(|rec| out.append(rec));
        match made {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let skipped = skipped.map_err(|e| match record_error(py, &e, written) {
        Ok(obj) => PyErr::from_value(obj),
        Err(err) => err,
    })?;
    if let Some(list) = problems {
        for p in &skipped {
            list.append(record_error(py, p, written)?)?;
        }
    }
    Ok(out)
}

fn record_to_py<'m>(to_py: &mut ToPy<'m, '_>, r: &CoreRecord<'m>) -> PyResult<StreamRecord> {
    let py = to_py.py();
    let text = |s: &Option<Cow<'_, str>>| s.as_deref().map(|s| PyString::new(py, s).unbind());
    let mut image = |m: &Option<_>| -> PyResult<Option<Py<PyDict>>> {
        m.as_ref()
            .map(|m| to_py.map(m).map(Bound::unbind))
            .transpose()
    };
    Ok(StreamRecord {
        index: r.index,
        name: match r.name {
            EventName::Insert => intern!(py, "INSERT"),
            EventName::Modify => intern!(py, "MODIFY"),
            EventName::Remove => intern!(py, "REMOVE"),
        }
        .clone()
        .unbind(),
        new: image(&r.new)?,
        old: image(&r.old)?,
        keys: to_py.map(&r.keys)?.unbind(),
        time_us: r.time_us,
        sequence: text(&r.sequence),
        event_id: text(&r.event_id),
        source_arn: text(&r.source_arn),
        table: text(&r.table),
        view_type: text(&r.view_type),
    })
}

static RECORD_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// A `StreamRecordError` (a ParseError) for `e`. The byte offset means something only in text
/// the caller gave; for a dict it counts in the JSON written for it, so the message leaves it
/// out (the excerpt still shows the value).
fn record_error<'py>(
    py: Python<'py>,
    e: &RecordError,
    written: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let cls = RECORD_ERROR.import(py, "ddbshard.exceptions", "StreamRecordError")?;
    let p = &e.error;
    let message = if written {
        format!("{}: {} ({})", e.path, p.message, p.reason.code())
    } else {
        e.to_string()
    };
    let kwargs = PyDict::new(py);
    kwargs.set_item("index", e.index)?;
    kwargs.set_item("path", &e.path)?;
    kwargs.set_item("sequence", e.sequence.as_deref())?;
    kwargs.set_item("event_id", e.event_id.as_deref())?;
    cls.call(
        (
            message,
            p.reason.code(),
            p.line,
            p.offset,
            p.excerpt.clone(),
        ),
        Some(&kwargs),
    )
}

/// Nesting guard for the JSON written from Python objects; the reader refuses anything this
/// deep anyway (images nest at most 32 levels within records three levels deep).
const MAX_WRITE_DEPTH: usize = 100;

static DATETIME: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static EPOCH: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Writes a parsed event back as JSON: dicts, lists, str, int, float, bool and None as JSON
/// has them; bytes as base64 text (boto3's binaries, which Lambda sends as base64 already);
/// a datetime (boto3's ApproximateCreationDateTime) as epoch seconds; a Decimal as a number.
fn write_json(out: &mut Vec<u8>, v: &Bound<'_, PyAny>, depth: usize) -> PyResult<()> {
    if depth > MAX_WRITE_DEPTH {
        let e = ParseError::new(
            Reason::TooDeep,
            format!("the event nests deeper than {MAX_WRITE_DEPTH} levels"),
            b"",
            0,
        );
        return Err(errors::parse_error(v.py(), &e));
    }
    if let Ok(d) = v.cast::<PyDict>() {
        out.push(b'{');
        for (i, (k, val)) in d.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let k = k
                .cast_into::<PyString>()
                .map_err(|_| PyTypeError::new_err("the event's object keys must be str"))?;
            write_str(out, &k)?;
            out.push(b':');
            write_json(out, &val, depth + 1)?;
        }
        out.push(b'}');
    } else if let Ok(s) = v.cast::<PyString>() {
        write_str(out, s)?;
    } else if v.cast::<PyList>().is_ok() || v.cast::<PyTuple>().is_ok() {
        out.push(b'[');
        for (i, item) in v.try_iter()?.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json(out, &item?, depth + 1)?;
        }
        out.push(b']');
    } else if v.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(b) = v.cast::<PyBool>() {
        out.extend_from_slice(if b.is_true() { b"true" } else { b"false" });
    } else if v.cast::<PyInt>().is_ok() {
        out.extend_from_slice(v.str()?.to_str()?.as_bytes());
    } else if let Ok(f) = v.cast::<PyFloat>() {
        let f = f.value();
        if !f.is_finite() {
            return Err(PyValueError::new_err(format!(
                "{f} in the event is not a JSON number"
            )));
        }
        // Rust's shortest round-trip digits, as Python's repr gives them.
        out.extend_from_slice(format!("{f:?}").as_bytes());
    } else if v.cast::<PyBytes>().is_ok() || v.cast::<PyByteArray>().is_ok() {
        let raw = binary_bytes(v)?.unwrap_or_default();
        serialize::write_str(out, &binary::encode(&raw));
    } else if v.is_instance(decimal_type(v.py())?)? {
        if !v.call_method0("is_finite")?.is_truthy()? {
            return Err(PyValueError::new_err(format!(
                "{} in the event is not a JSON number",
                v.str()?
            )));
        }
        out.extend_from_slice(v.str()?.to_str()?.as_bytes());
    } else if v.is_instance(DATETIME.import(v.py(), "datetime", "datetime")?)? {
        write_datetime(out, v)?;
    } else if let Ok(m) = v.cast::<PyMapping>() {
        let d = PyDict::new(v.py());
        d.update(m)?;
        write_json(out, d.as_any(), depth)?;
    } else if let Some(raw) = binary_bytes(v)? {
        // boto3's Binary, as a resource's deserialized values hold it.
        serialize::write_str(out, &binary::encode(&raw));
    } else {
        return Err(PyTypeError::new_err(format!(
            "unsupported type {} in the event",
            v.get_type().name()?
        )));
    }
    Ok(())
}

fn write_str(out: &mut Vec<u8>, s: &Bound<'_, PyString>) -> PyResult<()> {
    match s.to_str() {
        Ok(text) => serialize::write_str(out, text),
        // A lone surrogate: refused as invalid UTF-8, as loads and dumps refuse it.
        Err(_) => serialize::write_str(out, &utf8(s)?),
    }
    Ok(())
}

/// A datetime as epoch seconds with exact microseconds (a naive one is taken as UTC, which is
/// what AWS writes).
fn write_datetime(out: &mut Vec<u8>, v: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = v.py();
    let epoch = EPOCH.get_or_try_init(py, || -> PyResult<_> {
        let dt = py.import("datetime")?;
        let utc = dt.getattr("timezone")?.getattr("utc")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("tzinfo", &utc)?;
        Ok(dt
            .getattr("datetime")?
            .call((1970, 1, 1), Some(&kwargs))?
            .unbind())
    })?;
    let aware = if v.getattr(intern!(py, "tzinfo"))?.is_none() {
        let kwargs = PyDict::new(py);
        kwargs.set_item("tzinfo", epoch.bind(py).getattr("tzinfo")?)?;
        v.call_method("replace", (), Some(&kwargs))?
    } else {
        v.clone()
    };
    let delta = aware.sub(epoch.bind(py))?;
    let days: i64 = delta.getattr("days")?.extract()?;
    let seconds: i64 = delta.getattr("seconds")?.extract()?;
    let micros: i64 = delta.getattr("microseconds")?.extract()?;
    let total = (days * 86_400 + seconds) * 1_000_000 + micros;
    let sign = if total < 0 { "-" } else { "" };
    let abs = total.unsigned_abs();
    out.extend_from_slice(format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000).as_bytes());
    Ok(())
}
