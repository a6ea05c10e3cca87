//! Python objects from the steps `plan` worked out: the only part of `stream_records` that
//! needs the GIL, so the part that runs on the caller's thread.
//!
//! A step's inputs are the values on a stack; remembered objects (`Op::Str`, `Op::Int`, ...)
//! are kept in the order made, so that `Op::Seen(n)` is an index. A map whose names, in order,
//! were met before comes as its values alone: its names are those kept for its shape. (Making
//! such a dict by copying the first of its shape, whose table is already grown, and then
//! setting its values measured no faster than growing a new one, on either thread's CPU.)

use ddbshard_core::parse::EventName;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PySet, PyString, PyTuple, PyType};
use pyo3::{ffi, intern};

use crate::model::{decimal_type, plain_int};
use crate::plan::{Op, NO_SHAPE};

/// A record's values, as `Op::Record` takes them.
pub struct Parts<'py> {
    pub index: usize,
    pub name: Bound<'py, PyString>,
    pub time_us: Option<i64>,
    /// keys, new, old, sequence, event_id, source_arn, table, view_type.
    pub fields: [Bound<'py, PyAny>; 8],
}

pub struct Builder<'py> {
    py: Python<'py>,
    decimal: Decimals<'py>,
    remembered: Vec<Bound<'py, PyAny>>,
    /// Where the names of each shape start in `shape_names`, by shape number (shapes are
    /// numbered in the order their first maps are made).
    shapes: Vec<usize>,
    /// The names of every shape, in order, one after the other.
    shape_names: Vec<Bound<'py, PyAny>>,
    stack: Vec<Bound<'py, PyAny>>,
}

impl<'py> Builder<'py> {
    /// For an event of `len` bytes of JSON.
    pub fn new(py: Python<'py>, len: usize) -> PyResult<Self> {
        Ok(Builder {
            py,
            decimal: Decimals::new(py)?,
            remembered: Vec::with_capacity(len / 128),
            shapes: Vec::new(),
            shape_names: Vec::new(),
            stack: Vec::new(),
        })
    }

    /// Carries out `ops`, handing each finished record to `each`.
    pub fn run(
        &mut self,
        ops: &[Op<'_>],
        each: &mut dyn FnMut(Parts<'py>) -> PyResult<()>,
    ) -> PyResult<()> {
        let py = self.py;
        for op in ops {
            let made = match op {
                Op::Str(s) => self.remember(PyString::new(py, s).into_any()),
                Op::FreshStr(s) => PyString::new(py, s).into_any(),
                Op::Int(i) => {
                    let made = self.decimal.make(i.into_pyobject(py)?.into_any())?;
                    self.remember(made)
                }
                Op::Number(n) => {
                    let made = self.decimal.make(PyString::new(py, n).into_any())?;
                    self.remember(made)
                }
                Op::FreshNumber(n) => {
                    let arg = match plain_int(n) {
                        Some(i) => i.into_pyobject(py)?.into_any(),
                        None => PyString::new(py, n).into_any(),
                    };
                    self.decimal.make(arg)?
                }
                Op::Seen(n) => self.remembered[*n as usize].clone(),
                Op::Bytes(b) => PyBytes::new(py, b).into_any(),
                Op::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
                Op::None => py.None().into_bound(py),
                Op::Map { len, shape, named } => {
                    self.map(*len as usize, *shape, *named)?.into_any()
                }
                Op::List(len) => {
                    let start = self.stack.len() - *len as usize;
                    PyList::new(py, self.stack.drain(start..))?.into_any()
                }
                Op::Set(len) => {
                    let start = self.stack.len() - *len as usize;
                    let set = PySet::new(py, &self.stack[start..])?;
                    self.stack.truncate(start);
                    set.into_any()
                }
                Op::Record {
                    index,
                    name,
                    time_us,
                } => {
                    let start = self.stack.len() - 8;
                    let mut fields = self.stack.drain(start..);
                    let mut next = || fields.next().expect("eight fields");
                    let fields = [
                        next(),
                        next(),
                        next(),
                        next(),
                        next(),
                        next(),
                        next(),
                        next(),
                    ];
                    let name = event_name(py, *name);
                    each(Parts {
                        index: *index,
                        name,
                        time_us: *time_us,
                        fields,
                    })?;
                    continue;
                }
                Op::Fail(message) => return Err(PyValueError::new_err(*message)),
            };
            self.stack.push(made);
        }
        Ok(())
    }

    fn remember(&mut self, made: Bound<'py, PyAny>) -> Bound<'py, PyAny> {
        self.remembered.push(made.clone());
        made
    }

    fn map(&mut self, len: usize, shape: u32, named: bool) -> PyResult<Bound<'py, PyDict>> {
        if !named {
            let at = self.shapes[shape as usize];
            let names = &self.shape_names[at..at + len];
            let start = self.stack.len() - len;
            let dict = PyDict::new(self.py);
            for (name, value) in names.iter().zip(&self.stack[start..]) {
                dict.set_item(name, value)?;
            }
            self.stack.truncate(start);
            return Ok(dict);
        }
        let start = self.stack.len() - 2 * len;
        let dict = PyDict::new(self.py);
        let (names, values) = self.stack[start..].split_at(len);
        for (name, value) in names.iter().zip(values) {
            dict.set_item(name, value)?;
        }
        if shape != NO_SHAPE {
            assert_eq!(
                shape as usize,
                self.shapes.len(),
                "shapes numbered in order"
            );
            self.shapes.push(self.shape_names.len());
            self.shape_names.extend_from_slice(names);
        }
        self.stack.truncate(start);
        Ok(dict)
    }
}

/// The `str` of an event name, one for all records.
pub fn event_name(py: Python<'_>, name: EventName) -> Bound<'_, PyString> {
    match name {
        EventName::Insert => intern!(py, "INSERT"),
        EventName::Modify => intern!(py, "MODIFY"),
        EventName::Remove => intern!(py, "REMOVE"),
    }
    .clone()
}

/// `Decimal(arg)` (an int or the number's text, as `make_decimal` chooses), called with one
/// argument tuple kept from call to call: an event has thousands of distinct numbers, and a
/// new tuple for each is an allocation and a deallocation as costly as the rest of the call.
/// The tuple is refilled only while this is its one reference (as `PyTuple_SetItem` requires):
/// were it kept by the constructor, the next call makes a new one.
struct Decimals<'py> {
    decimal: Bound<'py, PyType>,
    args: Bound<'py, PyTuple>,
}

impl<'py> Decimals<'py> {
    fn new(py: Python<'py>) -> PyResult<Self> {
        Ok(Decimals {
            decimal: decimal_type(py)?.clone(),
            args: PyTuple::new(py, [py.None()])?,
        })
    }

    fn make(&mut self, arg: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = self.decimal.py();
        if self.args.get_refcnt() != 1 {
            self.args = PyTuple::new(py, [py.None()])?;
        }
        // SAFETY: under the GIL; `args` is a tuple of one item whose only reference is ours,
        // so it may be refilled (SetItem takes `arg`'s reference and releases the old item's).
        // The call returns a new reference or NULL with an exception set.
        unsafe {
            if ffi::PyTuple_SetItem(self.args.as_ptr(), 0, arg.into_ptr()) != 0 {
                return Err(PyErr::fetch(py));
            }
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyObject_Call(
                    self.decimal.as_ptr(),
                    self.args.as_ptr(),
                    std::ptr::null_mut(),
                ),
            )
        }
    }
}
