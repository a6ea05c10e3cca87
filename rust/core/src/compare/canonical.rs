//! The canonical form of an item, and its hash: one text per item *as DynamoDB compares items*,
//! so that two copies of a table can be compared by hashing, whatever order and spelling each
//! copy's writer chose.
//!
//! What is normalised, and why:
//! - attributes of every map (top level and nested) are sorted by the bytes of their names:
//!   maps are unordered in DynamoDB, and exports write them in no fixed order;
//! - numbers are written in `number::Decimal::canonical` form: DynamoDB stores 1.50, 1.5 and
//!   15E-1 as the same number, so they must give the same text;
//! - set members are sorted (SS by bytes, NS by value, BS by their canonical base64 text) and
//!   deduplicated: sets are unordered;
//! - a binary whose base64 text has stray trailing bits (`AB==` for the byte 0) is re-encoded:
//!   DynamoDB stores bytes, not the text;
//! - lists keep their order (it is part of the value); strings are written as
//!   `serialize::write_str` writes them (only `"`, `\` and control characters escaped).
//!
//! The output is compact DynamoDB JSON (`{"a":{"N":"1.5"},...}`), readable by `parse_item`.
//! The hash is XXH3-64 with seed 0 (`HASH_SEED`) of those bytes: the plain `XXH3_64bits` any
//! xxHash binding computes (Python: `xxhash.xxh3_64_intdigest(item)`). A fixed, documented
//! function rather than Rust's randomly seeded hasher, so a hash written to Parquet today can
//! be compared with one written by another run, machine or tool.

use std::borrow::Cow;

use crate::model::binary;
use crate::model::number::{self, Decimal};
use crate::model::value::{Map, Value};
use crate::output::serialize::write_str;
use crate::parse::MAX_DEPTH;

/// Seed of the item hash. Zero makes it the standard XXH3-64: keep it, or every Parquet copy
/// written before the change stops comparing equal to those written after.
pub const HASH_SEED: u64 = 0;

/// XXH3-64 of canonical item bytes.
pub fn hash(canonical: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(canonical, HASH_SEED)
}

/// Writes canonical forms, reusing its sort buffers from item to item (one per nesting level,
/// since a nested map is sorted while its parent's order is still in use).
#[derive(Debug, Default)]
pub struct Canonicalizer {
    /// (the name's first eight bytes as a big-endian number, index): comparing the numbers
    /// orders most names without a `memcmp` call; equal prefixes fall back to the bytes.
    orders: Vec<Vec<(u64, u32)>>,
    numbers: Vec<(Decimal, u32)>,
}

fn prefix(b: &[u8]) -> u64 {
    let mut p = [0u8; 8];
    let n = b.len().min(8);
    p[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(p)
}

/// Sorts `order` (prefix, index) by the bytes `name(index)`.
fn sort_by_bytes<'x>(order: &mut [(u64, u32)], name: impl Fn(usize) -> &'x [u8]) {
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| name(a.1 as usize).cmp(name(b.1 as usize)))
    });
}

impl Canonicalizer {
    pub fn new() -> Self {
        Canonicalizer {
            orders: vec![Vec::new(); MAX_DEPTH + 2],
            numbers: Vec::new(),
        }
    }

    /// Appends the canonical form of an item (a bare attribute map, `{...}`).
    pub fn write_item(&mut self, out: &mut Vec<u8>, item: &Map<'_>) {
        self.write_map(out, item, 0);
    }

    /// Appends the canonical form of one attribute value (`{"T":...}`).
    pub fn write_value(&mut self, out: &mut Vec<u8>, v: &Value<'_>) {
        self.value(out, v, 1);
    }

    fn write_map(&mut self, out: &mut Vec<u8>, map: &Map<'_>, depth: usize) {
        if self.orders.len() <= depth {
            // Deeper than the parser allows; only reachable for values built by hand.
            self.orders.resize(depth + 1, Vec::new());
        }
        let mut order = std::mem::take(&mut self.orders[depth]);
        order.clear();
        order.extend(
            map.iter()
                .enumerate()
                .map(|(i, (name, _))| (prefix(name.as_bytes()), i as u32)),
        );
        if !order.windows(2).all(|w| w[0].0 < w[1].0) {
            sort_by_bytes(&mut order, |i| map[i].0.as_bytes());
        }
        out.push(b'{');
        let mut previous: Option<&str> = None;
        for &(_, i) in &order {
            let (name, value) = &map[i as usize];
            // A map never holds a name twice (the parser refuses it); if one built by hand
            // does, the first in sorted order stands, as one DynamoDB item could hold only one.
            if previous == Some(name.as_ref()) {
                continue;
            }
            if previous.is_some() {
                out.push(b',');
            }
            previous = Some(name.as_ref());
            write_text(out, name);
            out.push(b':');
            self.value(out, value, depth + 1);
        }
        out.push(b'}');
        self.orders[depth] = order;
    }

    fn value(&mut self, out: &mut Vec<u8>, v: &Value<'_>, depth: usize) {
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(v.type_tag().as_str().as_bytes());
        out.extend_from_slice(b"\":");
        match v {
            Value::S(s) => write_text(out, s),
            Value::N(n) => {
                out.push(b'"');
                write_number(out, n);
                out.push(b'"');
            }
            Value::B(b) => write_binary(out, b),
            Value::Bool(true) | Value::Null => out.extend_from_slice(b"true"),
            Value::Bool(false) => out.extend_from_slice(b"false"),
            Value::M(m) => self.write_map(out, m, depth),
            Value::L(l) => {
                out.push(b'[');
                for (i, e) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.value(out, e, depth + 1);
                }
                out.push(b']');
            }
            Value::Ss(members) => {
                let mut order = self.take_order(depth, members.iter().map(|m| m.as_bytes()));
                sort_by_bytes(&mut order, |i| members[i].as_bytes());
                order.dedup_by(|a, b| members[a.1 as usize] == members[b.1 as usize]);
                write_list(out, &order, |out, &(_, i)| {
                    write_text(out, &members[i as usize])
                });
                self.orders[depth] = order;
            }
            Value::Ns(members) => {
                let mut numbers = std::mem::take(&mut self.numbers);
                numbers.clear();
                for (i, m) in members.iter().enumerate() {
                    // Members were validated by the parser; one that does not parse (only in
                    // a value built by hand) sorts as zero and is written as it is.
                    numbers.push((Decimal::parse(m).unwrap_or(Decimal::ZERO), i as u32));
                }
                numbers.sort_unstable_by(|a, b| {
                    a.0.cmp(&b.0).then_with(|| {
                        members[a.1 as usize]
                            .as_bytes()
                            .cmp(members[b.1 as usize].as_bytes())
                    })
                });
                numbers.dedup_by(|a, b| a.0 == b.0);
                out.push(b'[');
                for (k, (_, i)) in numbers.iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    out.push(b'"');
                    write_number(out, &members[*i as usize]);
                    out.push(b'"');
                }
                out.push(b']');
                self.numbers = numbers;
            }
            Value::Bs(members) => {
                let mut order = self.take_order(depth, members.iter().map(|m| m.as_bytes()));
                // Sorting by canonical text needs the text only for members with stray trailing
                // bits, which no encoder writes: compare the members as written otherwise.
                if members.iter().all(|m| binary::trailing_bits_clear(m)) {
                    sort_by_bytes(&mut order, |i| members[i].as_bytes());
                    order.dedup_by(|a, b| members[a.1 as usize] == members[b.1 as usize]);
                    write_list(out, &order, |out, &(_, i)| {
                        write_str(out, &members[i as usize])
                    });
                } else {
                    let mut texts: Vec<String> =
                        members.iter().map(|m| canonical_base64(m)).collect();
                    texts.sort_unstable();
                    texts.dedup();
                    write_list(out, &texts, |out, t| write_str(out, t));
                }
                self.orders[depth] = order;
            }
        }
        out.push(b'}');
    }

    fn take_order<'x>(
        &mut self,
        depth: usize,
        names: impl Iterator<Item = &'x [u8]>,
    ) -> Vec<(u64, u32)> {
        if self.orders.len() <= depth {
            self.orders.resize(depth + 1, Vec::new());
        }
        let mut order = std::mem::take(&mut self.orders[depth]);
        order.clear();
        order.extend(names.enumerate().map(|(i, n)| (prefix(n), i as u32)));
        order
    }
}

/// A string as `write_str` writes it. A string the parser borrowed from its line had no escape
/// there, so it holds no `"`, `\\` or control character (the parser refuses those unescaped):
/// it is copied between quotes without looking for characters to escape.
#[allow(clippy::ptr_arg)] // whether the Cow borrows is what this looks at
fn write_text(out: &mut Vec<u8>, s: &Cow<'_, str>) {
    match s {
        Cow::Borrowed(b) => {
            debug_assert!(crate::model::escape::find_special(b.as_bytes()).is_none());
            out.reserve(b.len() + 2);
            out.push(b'"');
            out.extend_from_slice(b.as_bytes());
            out.push(b'"');
        }
        Cow::Owned(o) => write_str(out, o),
    }
}

fn write_list<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    mut each: impl FnMut(&mut Vec<u8>, T),
) {
    out.push(b'[');
    for (k, item) in items.into_iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        each(out, item);
    }
    out.push(b']');
}

/// Appends the canonical text of a valid number (no quotes): `Decimal::canonical`, computed
/// without a `Decimal` (and without allocating) for plain decimals such as `-12` or `153.880`.
pub fn write_number(out: &mut Vec<u8>, text: &str) {
    if let Some((negative, int, frac)) = number::plain_key(text) {
        if int.is_empty() && frac.is_empty() {
            out.push(b'0');
            return;
        }
        // `Decimal::canonical` switches to scientific notation below 1E-20 (leading digit at
        // exponent -21): 0.000000000000000000001 has 20 zeros after the point.
        let leading_zeros = frac.len() - frac.trim_start_matches('0').len();
        if !int.is_empty() || leading_zeros < 20 {
            if negative {
                out.push(b'-');
            }
            if int.is_empty() {
                out.push(b'0');
            } else {
                out.extend_from_slice(int.as_bytes());
            }
            if !frac.is_empty() {
                out.push(b'.');
                out.extend_from_slice(frac.as_bytes());
            }
            return;
        }
    }
    match Decimal::parse(text) {
        Ok(d) => out.extend_from_slice(d.canonical().as_bytes()),
        Err(_) => out.extend_from_slice(text.as_bytes()),
    }
}

/// The canonical number text as a `String` (see `write_number`).
pub fn number_text(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len() + 2);
    write_number(&mut out, text);
    // Only ASCII digits, signs, points and `E` are ever written.
    String::from_utf8(out).unwrap_or_default()
}

fn write_binary(out: &mut Vec<u8>, text: &str) {
    if binary::trailing_bits_clear(text) {
        write_str(out, text);
    } else {
        write_str(out, &canonical_base64(text));
    }
}

/// Base64 text with its unused trailing bits cleared, as every encoder writes it.
fn canonical_base64(text: &str) -> String {
    if binary::trailing_bits_clear(text) {
        return text.to_owned();
    }
    match binary::decode(text) {
        Ok(bytes) => binary::encode(&bytes),
        Err(_) => text.to_owned(),
    }
}

/// The value of a canonical number text as an `f64`, when the double holds exactly that value
/// (`0.5`, `1E22`, `12345`), else `None` (`0.1`, `2^53 + 1`, `1E23`): a float column must not
/// claim a value the table does not hold.
///
/// A decimal D·10^p is a double exactly when it is q·2^k with an odd q below 2^53 (and k in
/// range, always so within DynamoDB's 1E-130..1E126). With p >= 0 that odd part is D's odd part
/// times 5^p; with p < 0, 5^-p must divide D and leave an odd part below 2^53.
pub fn exact_f64(canonical: &str) -> Option<f64> {
    let (mantissa, exp) = match canonical.find('E') {
        Some(i) => (&canonical[..i], canonical[i + 1..].parse::<i64>().ok()?),
        None => (canonical, 0),
    };
    let unsigned = mantissa.strip_prefix('-').unwrap_or(mantissa);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let mut p = exp - frac.len() as i64;
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
        p += 1;
    }
    if digits.len() > number::MAX_DIGITS {
        return None;
    }
    let mut d: u128 = 0;
    for c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        d = d * 10 + u128::from(c - b'0');
    }
    const LIMIT: u128 = 1 << 53;
    if d != 0 {
        if p >= 0 {
            // 5^23 alone is above 2^53.
            if p > 22 {
                return None;
            }
            d >>= d.trailing_zeros();
            if d >= LIMIT || d * 5u128.pow(p as u32) >= LIMIT {
                return None;
            }
        } else {
            for _ in 0..-p {
                if !d.is_multiple_of(5) {
                    return None;
                }
                d /= 5;
            }
            d >>= d.trailing_zeros();
            if d >= LIMIT {
                return None;
            }
        }
    }
    canonical.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_item, Shape};

    fn canon(line: &str) -> String {
        let item = parse_item(line.as_bytes(), Shape::Any).unwrap();
        let mut out = Vec::new();
        Canonicalizer::new().write_item(&mut out, &item);
        String::from_utf8(out).unwrap()
    }

    fn same(a: &str, b: &str) {
        let (ca, cb) = (canon(a), canon(b));
        assert_eq!(ca, cb, "{a} vs {b}");
        assert_eq!(hash(ca.as_bytes()), hash(cb.as_bytes()));
    }

    fn differ(a: &str, b: &str) {
        let (ca, cb) = (canon(a), canon(b));
        assert_ne!(ca, cb, "{a} vs {b}");
        assert_ne!(hash(ca.as_bytes()), hash(cb.as_bytes()));
    }

    #[test]
    fn equal_numbers_are_one_text() {
        same(r#"{"n":{"N":"1.50"}}"#, r#"{"n":{"N":"1.5"}}"#);
        same(r#"{"n":{"N":"15E-1"}}"#, r#"{"n":{"N":"1.5"}}"#);
        same(r#"{"n":{"N":"-0.0"}}"#, r#"{"n":{"N":"0"}}"#);
        same(r#"{"n":{"N":"1E+2"}}"#, r#"{"n":{"N":"100"}}"#);
        same(r#"{"n":{"N":"+007.250"}}"#, r#"{"n":{"N":"7.25"}}"#);
        differ(r#"{"n":{"N":"1.5"}}"#, r#"{"n":{"N":"1.51"}}"#);
        differ(r#"{"n":{"N":"1.5"}}"#, r#"{"n":{"S":"1.5"}}"#);
        assert_eq!(canon(r#"{"n":{"N":"1.50"}}"#), r#"{"n":{"N":"1.5"}}"#);
    }

    #[test]
    fn fast_number_path_matches_decimal_canonical() {
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "+0",
            "00",
            "0.0",
            "1",
            "-1",
            "+1",
            "10",
            "100",
            "1.50",
            "-1.50",
            ".5",
            "5.",
            "-.5",
            "0.05",
            "007",
            "123.456000",
            "1e5",
            "1E-5",
            "15E-1",
            "1.5E+30",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for zeros in 15..25 {
            cases.push(format!("0.{}1", "0".repeat(zeros)));
            cases.push(format!("-0.{}12", "0".repeat(zeros)));
            cases.push(format!("1{}", "0".repeat(zeros)));
        }
        cases.push("9".repeat(38));
        cases.push(format!("-{}", "9".repeat(38)));
        cases.push(format!("0.{}", "9".repeat(37)));
        for c in &cases {
            let want = Decimal::parse(c).unwrap().canonical();
            assert_eq!(number_text(c), want, "{c}");
        }
    }

    #[test]
    fn maps_are_sorted_at_every_level() {
        same(
            r#"{"b":{"S":"x"},"a":{"M":{"z":{"N":"1"},"y":{"M":{"q":{"BOOL":true},"p":{"NULL":true}}}}}}"#,
            r#"{"a":{"M":{"y":{"M":{"p":{"NULL":true},"q":{"BOOL":true}}},"z":{"N":"1.0"}}},"b":{"S":"x"}}"#,
        );
        assert_eq!(
            canon(
                r#"{"b":{"S":"x"},"a":{"M":{"z":{"N":"1"},"y":{"L":[{"M":{"d":{"S":"1"},"c":{"S":"2"}}}]}}}}"#
            ),
            r#"{"a":{"M":{"y":{"L":[{"M":{"c":{"S":"2"},"d":{"S":"1"}}}]},"z":{"N":"1"}}},"b":{"S":"x"}}"#
        );
        // Names sharing their first eight bytes, and one that is a prefix of another.
        assert_eq!(
            canon(r#"{"attribute_b":{"S":"1"},"attribute":{"S":"2"},"attribute_a":{"S":"3"}}"#),
            r#"{"attribute":{"S":"2"},"attribute_a":{"S":"3"},"attribute_b":{"S":"1"}}"#
        );
        same(
            r#"{"s":{"SS":["prefix_same_2","prefix_same_1","prefix"]}}"#,
            r#"{"s":{"SS":["prefix","prefix_same_1","prefix_same_2"]}}"#,
        );
        // Sorted by bytes: "B" < "a" < "é" (UTF-8 0xC3).
        assert_eq!(
            canon(r#"{"é":{"S":"1"},"a":{"S":"2"},"B":{"S":"3"}}"#),
            r#"{"B":{"S":"3"},"a":{"S":"2"},"é":{"S":"1"}}"#
        );
    }

    #[test]
    fn sets_are_unordered_lists_are_not() {
        same(
            r#"{"s":{"SS":["b","a","c"]}}"#,
            r#"{"s":{"SS":["c","b","a"]}}"#,
        );
        same(
            r#"{"s":{"NS":["10","9","-1.50"]}}"#,
            r#"{"s":{"NS":["-1.5","9.0","1E1"]}}"#,
        );
        same(
            r#"{"s":{"BS":["AQ==","AA=="]}}"#,
            r#"{"s":{"BS":["AA==","AQ=="]}}"#,
        );
        // Stray trailing bits: AB== is the byte 0, like AA==.
        same(r#"{"b":{"B":"AB=="}}"#, r#"{"b":{"B":"AA=="}}"#);
        same(
            r#"{"s":{"BS":["AQ==","AB=="]}}"#,
            r#"{"s":{"BS":["AA==","AQ=="]}}"#,
        );
        differ(
            r#"{"l":{"L":[{"S":"a"},{"S":"b"}]}}"#,
            r#"{"l":{"L":[{"S":"b"},{"S":"a"}]}}"#,
        );
        assert_eq!(
            canon(r#"{"s":{"NS":["10","9","-1.50"]}}"#),
            r#"{"s":{"NS":["-1.5","9","10"]}}"#
        );
        differ(r#"{"s":{"SS":["a","b"]}}"#, r#"{"s":{"SS":["a","b","c"]}}"#);
    }

    #[test]
    fn strings_and_escapes_are_normalised() {
        // \u00e9 and é are the same string; \/ is /.
        same(
            r#"{"s":{"S":"caf\u00e9 a\/b"}}"#,
            r#"{"s":{"S":"café a/b"}}"#,
        );
        assert_eq!(
            canon(r#"{"s":{"S":"q\"\\\n\u0001"}}"#),
            r#"{"s":{"S":"q\"\\\n\u0001"}}"#
        );
    }

    #[test]
    fn canonical_form_parses_back_to_the_same_item() {
        let line = r#"{"Item":{"z":{"L":[{"N":"2.0"},{"SS":["y","x"]}]},"b":{"B":"AAE="},"n":{"NULL":true},"t":{"BOOL":false},"m":{"M":{}}}}"#;
        let c = canon(line);
        assert_eq!(canon(&c), c);
        assert_eq!(
            c,
            r#"{"b":{"B":"AAE="},"m":{"M":{}},"n":{"NULL":true},"t":{"BOOL":false},"z":{"L":[{"N":"2"},{"SS":["x","y"]}]}}"#
        );
    }

    #[test]
    fn hash_is_plain_xxh3() {
        // Reference values of XXH3_64bits (seed 0) from the xxHash project's sanity checks.
        assert_eq!(hash(b""), 0x2D06_8005_38D3_94C2);
        assert_eq!(hash(b"{}"), xxhash_rust::xxh3::xxh3_64(b"{}"));
        assert_ne!(
            hash(b"{\"a\":{\"N\":\"1\"}}"),
            hash(b"{\"a\":{\"N\":\"2\"}}")
        );
    }

    #[test]
    fn exact_floats() {
        for (text, want) in [
            ("0", Some(0.0)),
            ("1.5", Some(1.5)),
            ("-0.25", Some(-0.25)),
            ("12345", Some(12345.0)),
            ("9007199254740992", Some(9007199254740992.0)),
            ("1E22", Some(1e22)),
            ("1E30", None),
            ("0.1", None),
            ("9007199254740993", None),
            ("1E23", None),
            ("1.5E-30", None),
            ("0.0000152587890625", Some(0.0000152587890625)), // 2^-16
            ("123456789012345678901234567890", None),
        ] {
            let canonical = number_text(text);
            assert_eq!(exact_f64(&canonical), want, "{text}");
        }
        // 2^-60 has 42 significant digits: more than a DynamoDB number holds, so no such text.
        assert_eq!(exact_f64(&number_text("0.5")), Some(0.5));
        assert_eq!(exact_f64("-4503599627370497.5"), None);
        assert_eq!(exact_f64("4503599627370495.5"), Some(4503599627370495.5));
    }
}
