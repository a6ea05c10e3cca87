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
    map_to_py(py, &map)
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

pub fn map_to_py<'py>(py: Python<'py>, map: &Map<'_>) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (k, v) in map {
        dict.set_item(k.as_ref(), value_to_py(py, v)?)?;
    }
    Ok(dict)
}

fn value_to_py<'py>(py: Python<'py>, v: &Value<'_>) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::S(s) => PyString::new(py, s).into_any(),
        Value::N(n) => decimal_type(py)?.call1((n.as_ref(),))?,
        Value::B(b) => binary_to_py(py, b)?,
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Null => py.None().into_bound(py),
        Value::M(m) => map_to_py(py, m)?.into_any(),
        Value::L(l) => {
            let list = PyList::empty(py);
            for e in l {
                list.append(value_to_py(py, e)?)?;
            }
            list.into_any()
        }
        Value::Ss(s) => {
            let set = PySet::empty(py)?;
            for m in s {
                set.add(m.as_ref())?;
            }
            set.into_any()
        }
        Value::Ns(s) => {
            let set = PySet::empty(py)?;
            let dec = decimal_type(py)?;
            for m in s {
                set.add(dec.call1((m.as_ref(),))?)?;
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

fn binary_to_py<'py>(py: Python<'py>, b64: &str) -> PyResult<Bound<'py, PyAny>> {
    let raw = binary::decode(b64).map_err(PyValueError::new_err)?;
    Ok(PyBytes::new(py, &raw).into_any())
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
