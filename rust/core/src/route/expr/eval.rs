//! Evaluating a parsed condition against one item, with DynamoDB's comparison rules, without
//! allocating in the common case: values are borrowed from the item, numbers compared as
//! `Decimal` (fixed size, literals parsed once at parse time), binaries decoded four base64
//! characters at a time on the stack.
//!
//! Semantics follow the AWS Developer Guide ("Condition and filter expressions, operators, and
//! functions") and, where it is silent, the behaviour the ScyllaDB Alternator test suite
//! (`test/alternator/test_condition_expression.py`) records from real DynamoDB.

use std::cmp::Ordering;

use crate::model::binary;
use crate::model::number::Decimal;
use crate::model::value::{map_get, Map, Value};

use super::ast::{CmpOp, Node, Operand};

/// An operand evaluated against an item.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Got<'x, 'y> {
    /// The path names nothing, or `size` of a type that has no size.
    Missing,
    /// A value, with its number form when the parser already knows it.
    Val(&'x Value<'y>, Option<&'x Decimal>),
    /// The result of `size(path)`, a number.
    Size(usize),
}

pub(crate) fn eval(node: &Node, item: &Map<'_>) -> bool {
    match node {
        Node::Or(parts) => parts.iter().any(|n| eval(n, item)),
        Node::And(parts) => parts.iter().all(|n| eval(n, item)),
        Node::Not(inner) => !eval(inner, item),
        Node::Compare(op, l, r) => {
            let (a, b) = (operand(l, item), operand(r, item));
            match op {
                CmpOp::Eq => equal(&a, &b),
                // "Not equal" holds whenever "equal" does not, including when an attribute is
                // missing or the types differ: DynamoDB succeeds `z <> :v` for a missing `z`,
                // and even `q <> z` with both missing (Alternator tests
                // test_update_condition_ne, test_update_condition_ne_two_unset).
                CmpOp::Ne => !equal(&a, &b),
                CmpOp::Lt => order(&a, &b) == Some(Ordering::Less),
                CmpOp::Le => matches!(order(&a, &b), Some(Ordering::Less | Ordering::Equal)),
                CmpOp::Gt => order(&a, &b) == Some(Ordering::Greater),
                CmpOp::Ge => matches!(order(&a, &b), Some(Ordering::Greater | Ordering::Equal)),
            }
        }
        Node::Between(v, lo, hi) => {
            let v = operand(v, item);
            matches!(
                order(&v, &operand(lo, item)),
                Some(Ordering::Greater | Ordering::Equal)
            ) && matches!(
                order(&v, &operand(hi, item)),
                Some(Ordering::Less | Ordering::Equal)
            )
        }
        Node::In(v, list) => {
            let v = operand(v, item);
            list.iter().any(|o| equal(&v, &operand(o, item)))
        }
        Node::Exists(p) => p.resolve(item).is_some(),
        Node::NotExists(p) => p.resolve(item).is_none(),
        Node::AttributeType(o, tag) => match operand(o, item) {
            Got::Val(v, _) => v.type_tag() == *tag,
            _ => false,
        },
        Node::BeginsWith(a, b) => begins_with(&operand(a, item), &operand(b, item)),
        Node::Contains(a, b) => contains(&operand(a, item), &operand(b, item)),
    }
}

fn operand<'x, 'y>(o: &'x Operand, item: &'x Map<'y>) -> Got<'x, 'y> {
    match o {
        Operand::Path(p) => p.resolve(item).map_or(Got::Missing, |v| Got::Val(v, None)),
        Operand::Literal(l) => Got::Val(&l.value, l.number.as_ref()),
        Operand::Size(p) => p
            .resolve(item)
            .and_then(size_of)
            .map_or(Got::Missing, Got::Size),
    }
}

/// `size(path)`: S → length, B → bytes, sets, L and M → element count; other types have no
/// size, so a comparison with it is false (AWS guide, `size` function; Alternator's
/// test_update_condition_size for N, BOOL and NULL).
///
/// A string's length is counted in UTF-16 code units, which is what DynamoDB does: the guide
/// only says "the length of the string", and ExtendDB found against the real service that
/// `size("é𝄞")` is 3, not 2 characters or 6 UTF-8 bytes (ExtendDB/extenddb issue #60, PR #67).
fn size_of(v: &Value<'_>) -> Option<usize> {
    Some(match v {
        Value::S(s) => s.chars().map(char::len_utf16).sum(),
        Value::B(b) => binary::decoded_len(b).ok()?,
        Value::Ss(m) | Value::Ns(m) | Value::Bs(m) => m.len(),
        Value::L(l) => l.len(),
        Value::M(m) => m.len(),
        Value::N(_) | Value::Bool(_) | Value::Null => return None,
    })
}

fn number(g: &Got<'_, '_>) -> Option<Decimal> {
    match *g {
        Got::Val(Value::N(t), pre) => pre.copied().or_else(|| Decimal::parse(t).ok()),
        Got::Size(n) => decimal_from_count(n),
        _ => None,
    }
}

fn is_number(g: &Got<'_, '_>) -> bool {
    matches!(g, Got::Size(_) | Got::Val(Value::N(_), _))
}

/// A count as a `Decimal`, written into a stack buffer (a usize has at most 20 digits, well
/// inside DynamoDB's 38).
fn decimal_from_count(mut n: usize) -> Option<Decimal> {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Decimal::parse(std::str::from_utf8(&buf[i..]).ok()?).ok()
}

/// `=`: same type and same value; a missing operand equals nothing.
pub(crate) fn equal(a: &Got<'_, '_>, b: &Got<'_, '_>) -> bool {
    match (a, b) {
        (Got::Missing, _) | (_, Got::Missing) => false,
        _ if is_number(a) && is_number(b) => number(a).is_some_and(|x| Some(x) == number(b)),
        (Got::Val(x, _), Got::Val(y, _)) => values_equal(x, y),
        _ => false,
    }
}

/// Order of two operands, or `None` when they cannot be ordered: only N (numerically), S (by
/// UTF-8 bytes) and B (by unsigned bytes) order, and only against their own type; a missing
/// operand orders against nothing (AWS guide, "Comparison operator and function reference";
/// the API reference's Condition: "DynamoDB treats each byte of the binary data as unsigned").
pub(crate) fn order(a: &Got<'_, '_>, b: &Got<'_, '_>) -> Option<Ordering> {
    if is_number(a) && is_number(b) {
        return Some(number(a)?.cmp(&number(b)?));
    }
    match (a, b) {
        (Got::Val(Value::S(x), _), Got::Val(Value::S(y), _)) => {
            Some(x.as_bytes().cmp(y.as_bytes()))
        }
        (Got::Val(Value::B(x), _), Got::Val(Value::B(y), _)) => {
            Some(B64Bytes::new(x).cmp(B64Bytes::new(y)))
        }
        _ => None,
    }
}

/// Deep equality. Numbers compare by value (1.50 = 1.5), binaries by decoded bytes, sets as
/// sets (member order is not significant), maps by key regardless of order, lists in order.
pub(crate) fn values_equal(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::S(x), Value::S(y)) => x == y,
        (Value::N(x), Value::N(y)) => numbers_equal(x, y),
        (Value::B(x), Value::B(y)) => binaries_equal(x, y),
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, Value::Null) => true,
        (Value::M(x), Value::M(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| map_get(y, k).is_some_and(|w| values_equal(v, w)))
        }
        (Value::L(x), Value::L(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| values_equal(v, w))
        }
        (Value::Ss(x), Value::Ss(y)) => same_set(x, y, |p, q| p == q),
        (Value::Ns(x), Value::Ns(y)) => same_set(x, y, |p, q| numbers_equal(p, q)),
        (Value::Bs(x), Value::Bs(y)) => same_set(x, y, |p, q| binaries_equal(p, q)),
        _ => false,
    }
}

/// Set members are unique (the parser refuses duplicates, as DynamoDB does), so equal sizes
/// plus containment one way is set equality.
fn same_set<T>(x: &[T], y: &[T], eq: impl Fn(&T, &T) -> bool) -> bool {
    x.len() == y.len() && x.iter().all(|p| y.iter().any(|q| eq(p, q)))
}

fn numbers_equal(x: &str, y: &str) -> bool {
    match (Decimal::parse(x), Decimal::parse(y)) {
        (Ok(a), Ok(b)) => a == b,
        _ => x == y,
    }
}

fn binaries_equal(x: &str, y: &str) -> bool {
    B64Bytes::new(x).eq(B64Bytes::new(y))
}

/// `begins_with(a, b)`: a string prefix of a string or a byte prefix of a binary; any other
/// pairing (including a missing attribute) is false.
fn begins_with(a: &Got<'_, '_>, b: &Got<'_, '_>) -> bool {
    match (a, b) {
        (Got::Val(Value::S(x), _), Got::Val(Value::S(y), _)) => x.starts_with(y.as_ref()),
        (Got::Val(Value::B(x), _), Got::Val(Value::B(y), _)) => {
            let mut hay = B64Bytes::new(x);
            B64Bytes::new(y).all(|c| hay.next() == Some(c))
        }
        _ => false,
    }
}

/// `contains(a, b)`: substring of a string, byte substring of a binary, member of a set of
/// b's type, or element of a list (deep equality, any type). The guide mentions only strings
/// and sets; Alternator's test_update_condition_contains records DynamoDB doing B and L too.
fn contains(a: &Got<'_, '_>, b: &Got<'_, '_>) -> bool {
    let (Got::Val(hay, _), Got::Val(needle, pre)) = (a, b) else {
        return false;
    };
    match (hay, needle) {
        (Value::S(x), Value::S(y)) => x.contains(y.as_ref()),
        // Rare enough to decode into owned buffers rather than search the base64 stream.
        (Value::B(x), Value::B(y)) => match (binary::decode(x), binary::decode(y)) {
            (Ok(h), Ok(n)) => n.is_empty() || h.windows(n.len()).any(|w| w == n.as_slice()),
            _ => false,
        },
        (Value::Ss(m), Value::S(y)) => m.iter().any(|s| s == y),
        (Value::Ns(m), Value::N(y)) => {
            let Some(want) = pre.copied().or_else(|| Decimal::parse(y).ok()) else {
                return false;
            };
            m.iter().any(|s| Decimal::parse(s).is_ok_and(|d| d == want))
        }
        (Value::Bs(m), Value::B(y)) => m.iter().any(|s| binaries_equal(s, y)),
        (Value::L(l), _) => l.iter().any(|v| values_equal(v, needle)),
        _ => false,
    }
}

/// The bytes of validated base64 text, decoded one four-character group at a time, so that
/// binaries compare without a heap buffer. Text was validated by the item parser (or is a
/// validated `:value`), so characters outside the alphabet cannot occur; they would read as 0.
struct B64Bytes<'t> {
    text: &'t [u8],
    pos: usize,
    group: [u8; 3],
    len: u8,
    at: u8,
}

impl<'t> B64Bytes<'t> {
    fn new(text: &'t str) -> Self {
        B64Bytes {
            text: text.as_bytes(),
            pos: 0,
            group: [0; 3],
            len: 0,
            at: 0,
        }
    }
}

fn sextet(c: u8) -> u32 {
    u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => 0,
    })
}

impl Iterator for B64Bytes<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        if self.at == self.len {
            let q = self.text.get(self.pos..self.pos + 4)?;
            self.pos += 4;
            let n = sextet(q[0]) << 18 | sextet(q[1]) << 12 | sextet(q[2]) << 6 | sextet(q[3]);
            self.group = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            self.len = match (q[2], q[3]) {
                (b'=', _) => 1,
                (_, b'=') => 2,
                _ => 3,
            };
            self.at = 0;
        }
        let byte = self.group[self.at as usize];
        self.at += 1;
        Some(byte)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_base64_matches_the_decoder() {
        for bytes in [
            &b""[..],
            b"\0",
            b"\xff\x00",
            b"abc",
            b"\x80\x7f\x01\xfe",
            b"hello, world",
        ] {
            let text = binary::encode(bytes);
            assert_eq!(B64Bytes::new(&text).collect::<Vec<u8>>(), bytes, "{text}");
        }
        // Trailing bits are ignored, as by the decoder DynamoDB's SDKs use.
        assert!(binaries_equal("AB==", "AA=="));
        assert_eq!(binary::decode("AB==").unwrap(), vec![0]);
    }

    #[test]
    fn counts_convert_to_numbers() {
        for n in [0usize, 7, 10, 1234567, usize::MAX] {
            let d = decimal_from_count(n).unwrap();
            assert_eq!(d, Decimal::parse(&n.to_string()).unwrap());
        }
    }

    #[test]
    fn sizes_by_type() {
        let v = |s: &str| crate::parse::parse_value(s).unwrap().into_owned();
        assert_eq!(size_of(&v(r#"{"S":"hello"}"#)), Some(5));
        // é is one UTF-16 unit, 𝄞 (U+1D11E) two: 3, as DynamoDB counts.
        assert_eq!(size_of(&v(r#"{"S":"é𝄞"}"#)), Some(3));
        assert_eq!(size_of(&v(r#"{"B":"aGkgdGhlcmU="}"#)), Some(8));
        assert_eq!(size_of(&v(r#"{"NS":["2","4","7"]}"#)), Some(3));
        assert_eq!(size_of(&v(r#"{"L":[{"N":"2"},{"S":"dog"}]}"#)), Some(2));
        assert_eq!(size_of(&v(r#"{"M":{"x":{"N":"2"}}}"#)), Some(1));
        assert_eq!(size_of(&v(r#"{"N":"5"}"#)), None);
        assert_eq!(size_of(&v(r#"{"BOOL":true}"#)), None);
        assert_eq!(size_of(&v(r#"{"NULL":true}"#)), None);
    }
}
