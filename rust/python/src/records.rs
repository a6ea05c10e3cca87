//! `stream_records`: the records of a DynamoDB Streams event as `StreamRecord` objects whose
//! images are exactly what `loads` gives.
//!
//! A small event is read and built on the caller's thread by the `ToPy` that `loads` uses, as
//! is any event in a process limited to one CPU. A larger one is read on a thread of its own,
//! and what to build worked out there (`plan`), while the caller's thread builds the objects of
//! the records before (`build`); see `read_overlapped`.
//!
//! JSON text goes straight to the core's reader. An event already parsed into Python objects
//! (what a Lambda handler receives, or boto3's GetRecords response, whose binaries are bytes
//! and whose times are datetimes) is first written back as JSON, binaries as base64 and times
//! as epoch seconds, and then read the same way: one reader, so a dict and its JSON text give
//! the same records and the same refusals.

use std::borrow::Cow;
use std::sync::{mpsc, OnceLock};
use std::thread;

use ddbshard_core::model::binary;
use ddbshard_core::output::serialize;
use ddbshard_core::parse::{read_stream_records, RecordError, StreamRecord as CoreRecord};
use ddbshard_core::{Map, ParseError, Reason};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple,
    PyType,
};
use pyo3::{intern, IntoPyObjectExt};

use crate::build::{event_name, Builder, Parts};
use crate::errors;
use crate::model::{binary_bytes, decimal_type, text_bytes, utf8, GcPause, ToPy};
use crate::plan::{Op, Plan};

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
    fn from_parts(parts: Parts<'_>) -> PyResult<Self> {
        let [keys, new, old, sequence, event_id, source_arn, table, view_type] = parts.fields;
        let dict = |v: Bound<'_, PyAny>| -> PyResult<Option<Py<PyDict>>> {
            Ok(if v.is_none() {
                None
            } else {
                Some(v.cast_into::<PyDict>()?.unbind())
            })
        };
        let text = |v: Bound<'_, PyAny>| -> PyResult<Option<Py<PyString>>> {
            Ok(if v.is_none() {
                None
            } else {
                Some(v.cast_into::<PyString>()?.unbind())
            })
        };
        Ok(StreamRecord {
            index: parts.index,
            name: parts.name.unbind(),
            keys: keys.cast_into::<PyDict>()?.unbind(),
            new: dict(new)?,
            old: dict(old)?,
            time_us: parts.time_us,
            sequence: text(sequence)?,
            event_id: text(event_id)?,
            source_arn: text(source_arn)?,
            table: text(table)?,
            view_type: text(view_type)?,
        })
    }

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
    let _pause = GcPause::new(py);
    let out = PyList::empty(py);
    let mut each = |parts: Parts<'py>| -> PyResult<()> {
        out.append(Bound::new(py, StreamRecord::from_parts(parts)?)?)
    };
    let skip_bad = problems.is_some();
    let parsed = if json.len() < OVERLAP_FROM || !second_core() {
        read_inline(py, &json, skip_bad, &mut each)?
    } else {
        let mut builder = Builder::new(py, json.len())?;
        match read_overlapped(py, &json, skip_bad, &mut builder, &mut each)? {
            Some(parsed) => parsed,
            // No thread to be had (a limit on threads or on memory): the second thread only
            // saves time, so the records are read on this one, none of them built yet.
            None => read_inline(py, &json, skip_bad, &mut each)?,
        }
    };
    let skipped = parsed.map_err(|e| match record_error(py, &e, written) {
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

type Parsed = Result<Vec<RecordError>, RecordError>;
type Each<'e, 'py> = dyn FnMut(Parts<'py>) -> PyResult<()> + 'e;

/// Below this much JSON (two dozen records of ~1.3 KB) the records are read and built on the
/// caller's thread alone: starting a thread and handing records over costs about what the
/// overlap saves on that many (measured: even at 30 such records, ahead from 45 on).
const OVERLAP_FROM: usize = 32 * 1024;
/// Whether the process may run on more than one CPU, as Rust's `available_parallelism` finds
/// it (the CPU affinity and, on Linux, a cgroup's CPU quota; a share of a CPU enforced outside
/// the system, as a hypervisor may, does not show). On one, a second thread would only take
/// turns with this one, adding the hand-over's cost (about 6% more CPU) to a call no shorter. Found once per process: asking costs a system call and reads of the
/// cgroup files, a tenth of the work on a small event.
fn second_core() -> bool {
    static MORE_THAN_ONE: OnceLock<bool> = OnceLock::new();
    *MORE_THAN_ONE.get_or_init(|| thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// The reader's stack: what Rust gives its threads (2 MiB, or `RUST_MIN_STACK` bytes), but no
/// less than the floor. The reader recurses into the event's nesting (up to 256 levels around
/// the records and 32 in an image: 32 KiB of stack measured), and overflowing a stack aborts
/// the process; a small `RUST_MIN_STACK` set for other programs must not do that. Found once
/// per process, as Rust finds its own.
fn reader_stack() -> usize {
    const RUST_DEFAULT: usize = 2 << 20;
    const FLOOR: usize = 256 << 10;
    static STACK: OnceLock<usize> = OnceLock::new();
    *STACK.get_or_init(|| {
        std::env::var("RUST_MIN_STACK")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(RUST_DEFAULT)
            .max(FLOOR)
    })
}

/// Records handed over at a time, and batches the reader may be ahead of the builder: enough
/// that the reader, which is the faster, seldom has to wait for room (each such wait costs the
/// builder a wake-up call to the kernel), few enough that the planned steps (which hold
/// decoded binaries and unescaped texts) stay a few hundred records' worth at most.
const BATCH_RECORDS: usize = 8;
const BATCHES_AHEAD: usize = 32;

/// Python runs a signal's handler only between its own steps, so a call as long as a large
/// event's (seconds for 200 MB) asks for it every this many records: Ctrl-C then raises
/// KeyboardInterrupt within the call, which stops the reading (and the reader thread), as a
/// handler's exception does. Asking costs a read of one flag.
const SIGNALS_EVERY: usize = 512;

/// Each record is made into Python objects as soon as it is read, while its text and parsed
/// values are still in the CPU's cache, by the `ToPy` that `loads` uses. A failure to build
/// stops the reading.
fn read_inline<'py>(
    py: Python<'py>,
    json: &[u8],
    skip_bad: bool,
    each: &mut Each<'_, 'py>,
) -> PyResult<Parsed> {
    // A small event's records share their attribute names and some values.
    let mut to_py = ToPy::new(py, 256)?;
    let mut failed = None;
    let mut count = 0;
    let parsed = read_stream_records(json, skip_bad, &mut |r| {
        count += 1;
        let signals = if count % SIGNALS_EVERY == 0 {
            py.check_signals()
        } else {
            Ok(())
        };
        match signals
            .and_then(|()| record_to_py(py, &mut to_py, &r))
            .and_then(&mut *each)
        {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(parsed),
    }
}

fn record_to_py<'m, 'py>(
    py: Python<'py>,
    to_py: &mut ToPy<'m, 'py>,
    r: &CoreRecord<'m>,
) -> PyResult<Parts<'py>> {
    let none = || py.None().into_bound(py);
    let text = |s: &Option<Cow<'_, str>>| {
        s.as_deref()
            .map_or_else(none, |s| PyString::new(py, s).into_any())
    };
    let mut image = |m: Option<&Map<'m>>| -> PyResult<Bound<'py, PyAny>> {
        Ok(match m {
            Some(m) => to_py.map(m)?.into_any(),
            None => none(),
        })
    };
    Ok(Parts {
        index: r.index,
        name: event_name(py, r.name),
        time_us: r.time_us,
        fields: [
            image(Some(&r.keys))?,
            image(r.new.as_ref())?,
            image(r.old.as_ref())?,
            text(&r.sequence),
            text(&r.event_id),
            text(&r.source_arn),
            text(&r.table),
            text(&r.view_type),
        ],
    })
}

/// Reading and planning (pure Rust: on a 1,000-record event 3.7 ms of a call's 7.7 ms of
/// work) run on a thread of their own, records ahead, while this thread, which holds the GIL, builds the objects
/// of the records already planned. The outcome is the inline one: records are built in order,
/// a failure to build stops the reading (the reader's next hand-over fails) and is the error,
/// and otherwise the reader's result (its first fatal error, or the records it skipped) is.
/// The event's bytes outlive the scope, so the steps can borrow them across threads. `None`
/// when the thread cannot be started, before anything is read.
fn read_overlapped<'a, 'py>(
    py: Python<'py>,
    json: &'a [u8],
    skip_bad: bool,
    builder: &mut Builder<'py>,
    each: &mut Each<'_, 'py>,
) -> PyResult<Option<Parsed>> {
    thread::scope(|scope| {
        let (planned, batches) = mpsc::sync_channel::<Vec<Op<'a>>>(BATCHES_AHEAD);
        // Used batches go back to the reader, which frees what they hold and refills them.
        let (used, spent) = mpsc::channel::<Vec<Op<'a>>>();
        let started = thread::Builder::new()
            .name("ddbshard-records".into())
            .stack_size(reader_stack())
            .spawn_scoped(scope, move || {
                let mut plan = Plan::new(json.len());
                let fresh = || {
                    spent.try_recv().map_or_else(
                        |_| Vec::with_capacity(1024),
                        |mut ops| {
                            ops.clear();
                            ops
                        },
                    )
                };
                let mut ops = fresh();
                let mut count = 0;
                let parsed = read_stream_records(json, skip_bad, &mut |r| {
                    plan.record(&r, &mut ops);
                    count += 1;
                    if count % BATCH_RECORDS == 0 {
                        return planned.send(std::mem::replace(&mut ops, fresh())).is_ok();
                    }
                    true
                });
                if !ops.is_empty() {
                    // A failed send means the builder stopped, and its error is the outcome.
                    let _ = planned.send(ops);
                }
                parsed
            });
        let Ok(reader) = started else {
            return Ok(None);
        };
        let mut failed = None;
        for (n, ops) in batches.iter().enumerate() {
            let signals = if (n + 1) % (SIGNALS_EVERY / BATCH_RECORDS) == 0 {
                py.check_signals()
            } else {
                Ok(())
            };
            if let Err(e) = signals.and_then(|()| builder.run(&ops, each)) {
                failed = Some(e);
                break;
            }
            // The reader may be done and gone; then the batch is freed here.
            let _ = used.send(ops);
        }
        drop(batches);
        let parsed = reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match failed {
            Some(e) => Err(e),
            None => Ok(Some(parsed)),
        }
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
