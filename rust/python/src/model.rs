//! Python values ↔ DynamoDB values: `loads` gives what boto3's TypeDeserializer gives
//! (Decimal, bytes, set, list, dict, bool, None, str); `dumps` is its inverse, checked against
//! the same DynamoDB rules as parsed input by parsing its own output once more.

use std::borrow::Cow;

use ddbshard_core::model::binary;
use ddbshard_core::output::serialize;
use ddbshard_core::{parse_item, Map, ParseError, Reason, Shape, Value};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PyMapping, PySet,
    PyString, PyTuple, PyType,
};

use crate::errors;

static DECIMAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();

pub fn decimal_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    DECIMAL.import(py, "decimal", "Decimal")
}

/// Parses an export line, a bare attribute map or a stream image into Python values.
#[pyfunction]
pub fn loads<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
    let Some(bytes) = text_bytes(data)? else {
        return Err(PyTypeError::new_err("loads() takes bytes or str"));
    };
    let map = parse_item(&bytes, Shape::Any).map_err(|e| errors::parse_error(py, &e))?;
    let _pause = GcPause::new(py);
    // One item: a few dozen names and values, nested maps repeating some of them.
    ToPy::new(py, 32)?.map(&map)
}

/// The bytes of JSON text given as str, bytes or bytearray (borrowed where Python allows);
/// `None` for any other type.
pub fn text_bytes<'b>(data: &'b Bound<'_, PyAny>) -> PyResult<Option<Cow<'b, [u8]>>> {
    if let Ok(s) = data.cast::<PyString>() {
        return Ok(Some(match s.to_str() {
            Ok(text) => Cow::Borrowed(text.as_bytes()),
            // A str holding a lone surrogate has no UTF-8 form. Its "surrogatepass" bytes fail
            // the parser's UTF-8 check, so it is refused as invalid_utf8 at the right offset
            // instead of escaping as a UnicodeEncodeError.
            Err(_) => {
                let raw = s.call_method1("encode", ("utf-8", "surrogatepass"))?;
                Cow::Owned(raw.cast_into::<PyBytes>()?.as_bytes().to_vec())
            }
        }));
    }
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(Some(Cow::Borrowed(b.as_bytes())));
    }
    if let Ok(b) = data.cast::<PyByteArray>() {
        return Ok(Some(Cow::Owned(b.to_vec())));
    }
    Ok(None)
}

/// Python values from parsed ones, for one call (`loads`, `stream_records`).
///
/// Within a call the same texts recur: every item of an event has the same attribute names,
/// a stream record's key values appear again in its images, enumerations repeat. A recent
/// short text is made into a `str` (a number text into a `Decimal`) once and that object
/// shared by every place it appears: both types are immutable, so sharing cannot be observed
/// but by `is`, and it saves making, hashing and later freeing the copies.
pub struct ToPy<'m, 'py> {
    py: Python<'py>,
    decimal: Bound<'py, PyType>,
    names: Recent<'m, Bound<'py, PyString>>,
    strings: Recent<'m, Bound<'py, PyString>>,
    numbers: Recent<'m, Bound<'py, PyAny>>,
}

/// Attribute names are few, and each recurs in every item: a small cache of their own keeps
/// them from being pushed out by values, and stays in the CPU's first-level cache.
const MAX_NAME_SLOTS: usize = 256;

/// Texts longer than this are made afresh each time: long ones rarely recur, and hashing them
/// would cost about what it saves.
pub const SHARED_TEXT_BYTES: usize = 64;

impl<'m, 'py> ToPy<'m, 'py> {
    /// `slots`: how many distinct texts of each kind are remembered (a power of two), about
    /// the number of distinct short values the call is expected to see (names: at most 256).
    pub fn new(py: Python<'py>, slots: usize) -> PyResult<Self> {
        Ok(ToPy {
            py,
            decimal: decimal_type(py)?.clone(),
            names: Recent::new(slots.min(MAX_NAME_SLOTS)),
            strings: Recent::new(slots),
            numbers: Recent::new(slots),
        })
    }

    pub fn map(&mut self, map: &Map<'m>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(self.py);
        for (k, v) in map {
            let name = match k {
                Cow::Borrowed(k) if k.len() <= SHARED_TEXT_BYTES => {
                    let py = self.py;
                    self.names.get_or(k, || Ok(PyString::new(py, k)))?
                }
                _ => PyString::new(self.py, k),
            };
            dict.set_item(name, self.value(v)?)?;
        }
        Ok(dict)
    }

    /// Only text borrowed from the input is shared: it outlives the call, where the text of a
    /// string with escapes (decoded into a buffer of its own) may not.
    #[allow(clippy::ptr_arg)] // the Cow's variant is the point: only borrowed text is shared
    fn str(&mut self, s: &Cow<'m, str>) -> Bound<'py, PyString> {
        let py = self.py;
        match s {
            Cow::Borrowed(s) if s.len() <= SHARED_TEXT_BYTES => self
                .strings
                .get_or(s, || Ok(PyString::new(py, s)))
                .expect("infallible"),
            _ => PyString::new(py, s),
        }
    }

    #[allow(clippy::ptr_arg)] // as for `str`
    fn number(&mut self, n: &Cow<'m, str>) -> PyResult<Bound<'py, PyAny>> {
        let decimal = &self.decimal;
        match n {
            Cow::Borrowed(n) if n.len() <= SHARED_TEXT_BYTES => {
                self.numbers.get_or(n, || make_decimal(decimal, n))
            }
            _ => make_decimal(decimal, n),
        }
    }

    fn value(&mut self, v: &Value<'m>) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        Ok(match v {
            Value::S(s) => self.str(s).into_any(),
            Value::N(n) => self.number(n)?,
            Value::B(b) => binary_to_py(py, b)?,
            Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
            Value::Null => py.None().into_bound(py),
            Value::M(m) => self.map(m)?.into_any(),
            Value::L(l) => {
                let list = PyList::empty(py);
                for e in l {
                    list.append(self.value(e)?)?;
                }
                list.into_any()
            }
            Value::Ss(s) => {
                let set = PySet::empty(py)?;
                for m in s {
                    set.add(self.str(m))?;
                }
                set.into_any()
            }
            Value::Ns(s) => {
                let set = PySet::empty(py)?;
                for m in s {
                    set.add(self.number(m)?)?;
                }
                set.into_any()
            }
            Value::Bs(s) => {
                let set = PySet::empty(py)?;
                for m in s {
                    set.add(binary_to_py(py, m)?)?;
                }
                set.into_any()
            }
        })
    }
}

fn binary_to_py<'py>(py: Python<'py>, b64: &str) -> PyResult<Bound<'py, PyAny>> {
    let raw = binary::decode(b64).map_err(PyValueError::new_err)?;
    Ok(PyBytes::new(py, &raw).into_any())
}

/// `Decimal(text)`. A plain integer (no sign but '-', no leading zero, no point or exponent)
/// is passed as an int, which Decimal reads faster than text and which saves making a str: the
/// result is the same Decimal, digits and exponent 0 alike ("-0" keeps its sign as text).
pub fn make_decimal<'py>(decimal: &Bound<'py, PyType>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    match plain_int(text) {
        Some(i) => decimal.call1((i,)),
        None => decimal.call1((text,)),
    }
}

/// The value of a plain integer's text (see `make_decimal`), `None` for any other number.
pub fn plain_int(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text).as_bytes();
    let plain = matches!(digits, [b'1'..=b'9', rest @ ..] if rest.len() < 18 && rest.iter().all(u8::is_ascii_digit))
        || text == "0";
    if plain {
        text.parse::<i64>().ok()
    } else {
        None
    }
}

/// A direct-mapped cache of the objects made for recent texts: one slot per hash, a newer
/// text taking the slot of an older one. No probing and no growth, so a lookup costs a hash of
/// a short text and one comparison, whether it hits or not.
struct Recent<'m, T> {
    slots: Vec<Option<(&'m str, T)>>,
    shift: u32,
}

impl<'m, T: Clone> Recent<'m, T> {
    fn new(slots: usize) -> Self {
        let slots = slots.next_power_of_two().max(2);
        Recent {
            slots: (0..slots).map(|_| None).collect(),
            shift: 64 - slots.trailing_zeros(),
        }
    }

    fn get_or(&mut self, text: &'m str, make: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
        let slot = &mut self.slots[(fx_hash(text.as_bytes()) >> self.shift) as usize];
        if let Some((seen, made)) = slot {
            if same(seen.as_bytes(), text.as_bytes()) {
                return Ok(made.clone());
            }
        }
        let made = make()?;
        *slot = Some((text, made.clone()));
        Ok(made)
    }
}

/// `a == b` for short texts, eight bytes at a time and inline (a call to memcmp costs more
/// than the comparison itself at these lengths).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        let n = (s.len() - at).min(8);
        w[..n].copy_from_slice(&s[at..at + n]);
        u64::from_le_bytes(w)
    };
    (0..a.len()).step_by(8).all(|at| word(a, at) == word(b, at))
}

/// FxHash (rustc's): a rotate, a xor and a multiply per eight bytes. The texts are short and
/// come from the call's own input; a collision costs only a missed share.
pub fn fx_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(c.try_into().expect("8 bytes"))).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(last)).wrapping_mul(K);
    }
    h
}

/// Holds CPython's cyclic garbage collector off while a call builds its result. Building
/// allocates thousands of dicts, lists and sets, each allocation counting towards the next
/// collection, and each collection then walks all those new containers; none of them can be
/// part of a cycle (they are fresh and hold only each other, as a tree), so the walks find
/// nothing. Dropping the guard turns the collector back on if it was on.
pub struct GcPause(bool);

impl GcPause {
    pub fn new(_py: Python<'_>) -> Self {
        // SAFETY: the GIL is held (the `Python` token proves it); the calls only flip a flag.
        GcPause(unsafe { pyo3::ffi::PyGC_Disable() } == 1)
    }
}

impl Drop for GcPause {
    fn drop(&mut self) {
        if self.0 {
            // SAFETY: still under the GIL: the guard lives within the call that made it.
            unsafe { pyo3::ffi::PyGC_Enable() };
        }
    }
}

/// Serialises a dict of Python values as a compact DynamoDB-JSON attribute map, or as an
/// export line `{"Item":...}` with `line=True`.
#[pyfunction]
#[pyo3(signature = (item, *, line = false))]
pub fn dumps<'py>(
    py: Python<'py>,
    item: &Bound<'py, PyAny>,
    line: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let mapping = item
        .cast::<PyMapping>()
        .map_err(|_| PyTypeError::new_err("dumps() takes a dict of attribute name → value"))?;
    let map = mapping_to_map(mapping, 0)?;
    let mut out = Vec::with_capacity(256);
    if line {
        serialize::write_export_line(&mut out, &map);
    } else {
        serialize::write_map(&mut out, &map);
    }
    // One set of rules for everything: what dumps writes must parse as valid input.
    let shape = if line {
        Shape::ExportLine
    } else {
        Shape::AttributeMap
    };
    parse_item(&out, shape).map_err(|e| errors::parse_error(py, &e))?;
    Ok(PyBytes::new(py, &out))
}

/// Nesting guard for Python recursion: past DynamoDB's 32 levels the parse check refuses the
/// item anyway, so stop converting well before Python's own recursion limit could matter.
const MAX_CONVERT_DEPTH: usize = 40;

fn mapping_to_map(m: &Bound<'_, PyMapping>, depth: usize) -> PyResult<Map<'static>> {
    let mut out: Map<'static> = Vec::new();
    for pair in m.items()?.iter() {
        let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair.extract()?;
        let key = utf8(
            k.cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("attribute names must be str"))?,
        )?;
        out.push((Cow::Owned(key), py_to_value(&v, depth + 1)?));
    }
    Ok(out)
}

fn py_to_value(v: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value<'static>> {
    if depth > MAX_CONVERT_DEPTH {
        let e = ParseError::new(
            Reason::TooDeep,
            "nesting levels exceed DynamoDB's limit of 32",
            b"",
            0,
        );
        return Err(errors::parse_error(v.py(), &e));
    }
    if v.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Some(n) = number_text(v)? {
        return Ok(Value::N(Cow::Owned(n)));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Value::S(Cow::Owned(utf8(s)?)));
    }
    if let Some(b) = binary_bytes(v)? {
        return Ok(Value::B(Cow::Owned(binary::encode(&b))));
    }
    if v.cast::<PySet>().is_ok() || v.cast::<PyFrozenSet>().is_ok() {
        return set_to_value(v);
    }
    if let Ok(m) = v.cast::<PyMapping>() {
        if v.cast::<PyList>().is_err() && v.cast::<PyTuple>().is_err() {
            return Ok(Value::M(mapping_to_map(m, depth)?));
        }
    }
    if v.cast::<PyList>().is_ok() || v.cast::<PyTuple>().is_ok() {
        let mut items = Vec::new();
        for e in v.try_iter()? {
            items.push(py_to_value(&e?, depth + 1)?);
        }
        return Ok(Value::L(items));
    }
    Err(PyTypeError::new_err(format!(
        "unsupported type {} for a DynamoDB value",
        v.get_type().name()?
    )))
}

/// A str's UTF-8 text. A lone surrogate has none, and DynamoDB stores UTF-8, so such a str is
/// refused like invalid UTF-8 in parsed input (ParseError), not as a UnicodeEncodeError.
pub fn utf8(s: &Bound<'_, PyString>) -> PyResult<String> {
    match s.to_str() {
        Ok(text) => Ok(text.to_owned()),
        Err(_) => {
            let e = ParseError::new(
                Reason::InvalidUtf8,
                "string holds a lone surrogate, which has no UTF-8 form",
                b"",
                0,
            );
            Err(errors::parse_error(s.py(), &e))
        }
    }
}

/// Decimal or int → its text; float is refused as boto3 refuses it (it would lose digits).
fn number_text(v: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    if v.cast::<PyFloat>().is_ok() {
        return Err(PyTypeError::new_err(
            "float is not supported (it cannot hold DynamoDB's 38 digits): use decimal.Decimal",
        ));
    }
    if v.cast::<PyInt>().is_ok() {
        // Python refuses to print an int of over 4,300 digits (a ValueError of its own); any
        // int from 2^419 (about 1.4E+126) on is past DynamoDB's largest number anyway, so it is
        // refused as out of range before it is printed. Smaller ones are checked by the parser.
        let bits: u64 = v.call_method0("bit_length")?.extract()?;
        if bits >= 420 {
            let e = ParseError::new(
                Reason::InvalidNumber,
                format!(
                    "number out of range: an integer of {bits} bits is past DynamoDB's largest, \
                     9.9999999999999999999999999999999999999E+125"
                ),
                b"",
                0,
            );
            return Err(errors::parse_error(v.py(), &e));
        }
        return Ok(Some(v.str()?.to_str()?.to_owned()));
    }
    if v.is_instance(decimal_type(v.py())?)? {
        return Ok(Some(v.str()?.to_str()?.to_owned()));
    }
    Ok(None)
}

/// bytes, bytearray, or boto3's `Binary` (which wraps bytes in `.value`).
pub fn binary_bytes(v: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(Some(b.as_bytes().to_vec()));
    }
    if let Ok(b) = v.cast::<PyByteArray>() {
        return Ok(Some(b.to_vec()));
    }
    if v.get_type().name()?.to_str()? == "Binary" {
        if let Ok(inner) = v.getattr("value") {
            return binary_bytes(&inner);
        }
    }
    Ok(None)
}

fn set_to_value(v: &Bound<'_, PyAny>) -> PyResult<Value<'static>> {
    let (mut ss, mut ns, mut bs) = (Vec::new(), Vec::new(), Vec::new());
    for e in v.try_iter()? {
        let e = e?;
        if let Ok(s) = e.cast::<PyString>() {
            ss.push(Cow::Owned(utf8(s)?));
        } else if e.cast::<PyBool>().is_err() && number_text(&e)?.is_some() {
            ns.push(Cow::Owned(number_text(&e)?.expect("checked")));
        } else if let Some(b) = binary_bytes(&e)? {
            bs.push(Cow::Owned(binary::encode(&b)));
        } else {
            return Err(PyTypeError::new_err(format!(
                "unsupported set member type {}",
                e.get_type().name()?
            )));
        }
    }
    match (ss.is_empty(), ns.is_empty(), bs.is_empty()) {
        (false, true, true) => Ok(Value::Ss(ss)),
        (true, false, true) => Ok(Value::Ns(ns)),
        (true, true, false) => Ok(Value::Bs(bs)),
        // The member type of an empty set is unknown; the parse check refuses it as empty.
        (true, true, true) => Ok(Value::Ss(ss)),
        _ => Err(PyTypeError::new_err(
            "a set must hold only strings, only numbers or only binaries",
        )),
    }
}
