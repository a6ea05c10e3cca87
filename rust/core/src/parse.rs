//! The DynamoDB-JSON parser: one line of bytes in, a validated item (borrowing the line) out.
//!
//! Hand-written rather than serde_json so that every DynamoDB rule is checked in the same pass
//! as the JSON syntax, each refusal names the rule and the byte offset, and values borrow the
//! line instead of being copied. UTF-8 is validated once for the whole line up front (fast,
//! vectorised in std), so string slices can be taken without checking them again.

use std::borrow::Cow;

use crate::binary;
use crate::error::{ParseError, Reason};
use crate::number;
use crate::size;
use crate::value::{Map, TypeTag, Value};

/// DynamoDB nests documents at most 32 levels, the top-level attribute counting as level 1
/// (Developer Guide, "Constraints"; a value at level 33 is refused with "Nesting Levels have
/// exceeded supported limits").
pub const MAX_DEPTH: usize = 32;

/// What a line is expected to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{"Item":{...}}`, the export and ImportTable line format.
    ExportLine,
    /// A bare attribute map `{"attr":{"S":"..."},...}`, as in stream images and API calls.
    AttributeMap,
    /// Either of the above: a lone `"Item"` key whose value is an attribute map is read as an
    /// export line; anything else as a bare map.
    Any,
}

/// Parses one line into a validated item. `line` must not contain the line terminator.
pub fn parse_item(line: &[u8], shape: Shape) -> Result<Map<'_>, ParseError> {
    let text = match std::str::from_utf8(line) {
        Ok(t) => t,
        Err(e) => {
            return Err(ParseError::new(
                Reason::InvalidUtf8,
                "invalid UTF-8",
                line,
                e.valid_up_to(),
            ))
        }
    };
    let map = match shape {
        Shape::ExportLine => Parser::new(text).export_line()?,
        Shape::AttributeMap => Parser::new(text).bare_map()?,
        Shape::Any => parse_any(text)?,
    };
    // The stored size never exceeds the JSON text's length (every type's JSON spelling is at
    // least as long as its stored bytes), so only long lines need the exact count.
    if line.len() > size::MAX_ITEM_BYTES {
        let n = size::item_size(&map);
        if n > size::MAX_ITEM_BYTES {
            return Err(ParseError::new(
                Reason::ItemTooLarge,
                format!("item is {n} bytes, over DynamoDB's 400 KB (409600 bytes) item limit"),
                line,
                0,
            ));
        }
    }
    Ok(map)
}

/// Parses a single attribute value such as `{"N":"1.5"}` (nesting level 1).
pub fn parse_value(text: &str) -> Result<Value<'_>, ParseError> {
    let mut p = Parser::new(text);
    p.ws();
    let v = p.value(1)?;
    p.end()?;
    Ok(v)
}

fn parse_any(text: &str) -> Result<Map<'_>, ParseError> {
    let mut probe = Parser::new(text);
    probe.ws();
    let starts_with_item = probe.eat(b'{') && {
        probe.ws();
        probe.peek() == Some(b'"') && probe.string().is_ok_and(|k| k == "Item")
    };
    if !starts_with_item {
        return Parser::new(text).bare_map();
    }
    // `{"Item": X}` is an export line when X is an attribute map and nothing follows; a bare
    // map may also have an attribute called "Item", so fall back to that reading.
    match Parser::new(text).export_line() {
        Ok(m) => Ok(m),
        Err(as_line) => match Parser::new(text).bare_map() {
            Ok(m) => Ok(m),
            Err(as_map) if as_map.offset > as_line.offset => Err(as_map),
            Err(_) => Err(as_line),
        },
    }
}

struct Parser<'a> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            text,
            b: text.as_bytes(),
            pos: 0,
        }
    }

    #[cold]
    fn err(&self, reason: Reason, msg: impl Into<String>) -> ParseError {
        ParseError::new(reason, msg, self.b, self.pos)
    }

    #[cold]
    fn err_at(&self, pos: usize, reason: Reason, msg: impl Into<String>) -> ParseError {
        ParseError::new(reason, msg, self.b, pos)
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    #[inline]
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), ParseError> {
        self.ws();
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{}'", c as char)))
        }
    }

    #[cold]
    fn unexpected(&self, wanted: &str) -> ParseError {
        match self.peek() {
            None => self.err(
                Reason::InvalidJson,
                format!("line ends where {wanted} was expected"),
            ),
            Some(c) => self.err(
                Reason::InvalidJson,
                format!("expected {wanted}, found '{}'", c.escape_ascii()),
            ),
        }
    }

    fn end(&mut self) -> Result<(), ParseError> {
        self.ws();
        if self.pos == self.b.len() {
            Ok(())
        } else {
            Err(self.err(Reason::InvalidJson, "unexpected characters after the item"))
        }
    }

    fn export_line(&mut self) -> Result<Map<'a>, ParseError> {
        self.expect(b'{')?;
        self.ws();
        let key_at = self.pos;
        if self.peek() != Some(b'"') {
            return Err(self.not_an_item(key_at));
        }
        let key = self.string()?;
        if key != "Item" {
            return Err(self.err_at(
                key_at,
                Reason::NotAnItem,
                format!("an export line holds one \"Item\" object; found key {key:?}"),
            ));
        }
        self.expect(b':')?;
        let map = self.attr_map(0, true)?;
        self.ws();
        if self.peek() == Some(b',') {
            return Err(self.err(
                Reason::NotAnItem,
                "an export line holds only the \"Item\" object; found another key",
            ));
        }
        self.expect(b'}')?;
        self.end()?;
        Ok(map)
    }

    #[cold]
    fn not_an_item(&self, at: usize) -> ParseError {
        if self.peek() == Some(b'}') {
            self.err_at(at, Reason::NotAnItem, "empty object: no \"Item\"")
        } else {
            self.unexpected("'\"'")
        }
    }

    fn bare_map(&mut self) -> Result<Map<'a>, ParseError> {
        let map = self.attr_map(0, true)?;
        self.end()?;
        Ok(map)
    }

    /// An attribute map whose values sit at nesting level `level + 1`.
    fn attr_map(&mut self, level: usize, top: bool) -> Result<Map<'a>, ParseError> {
        self.expect(b'{')?;
        let start = self.pos;
        let mut map: Map<'a> = Vec::new();
        self.ws();
        if self.eat(b'}') {
            return Ok(map);
        }
        loop {
            self.ws();
            let name_at = self.pos;
            if self.peek() != Some(b'"') {
                return Err(self.unexpected("an attribute name"));
            }
            let name = self.string()?;
            if top && name.is_empty() {
                return Err(self.err_at(
                    name_at,
                    Reason::EmptyAttributeName,
                    "attribute names must be at least one character",
                ));
            }
            self.expect(b':')?;
            self.ws();
            let value = self.value(level + 1)?;
            map.push((name, value));
            self.ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b'}') {
                break;
            }
            return Err(self.unexpected("',' or '}'"));
        }
        if let Some(dup) = first_duplicate(map.iter().map(|(k, _)| k.as_ref())) {
            return Err(self.err_at(
                start,
                Reason::DuplicateAttribute,
                format!("attribute {dup:?} appears twice in one map"),
            ));
        }
        Ok(map)
    }

    /// One typed value `{"T": v}` at nesting `level` (1 for a top-level attribute).
    fn value(&mut self, level: usize) -> Result<Value<'a>, ParseError> {
        let open = self.pos;
        if level > MAX_DEPTH {
            return Err(self.err(
                Reason::TooDeep,
                "nesting levels have exceeded DynamoDB's limit of 32",
            ));
        }
        if !self.eat(b'{') {
            return Err(match self.peek() {
                Some(b'"' | b'[' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => self.err(
                    Reason::WrongValueType,
                    "an attribute value must be an object like {\"S\":\"...\"}",
                ),
                _ => self.unexpected("an attribute value object"),
            });
        }
        self.ws();
        if self.peek() == Some(b'}') {
            return Err(self.err_at(
                open,
                Reason::UnknownType,
                "empty attribute value: one type key (S, N, B, BOOL, NULL, M, L, SS, NS, BS) is required",
            ));
        }
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("a type key"));
        }
        let tag_at = self.pos;
        let tag_text = self.string()?;
        let Some(tag) = TypeTag::from_bytes(tag_text.as_bytes()) else {
            return Err(self.err_at(
                tag_at,
                Reason::UnknownType,
                format!("unknown type {tag_text:?}: DynamoDB types are S, N, B, BOOL, NULL, M, L, SS, NS, BS"),
            ));
        };
        self.expect(b':')?;
        self.ws();
        let v = match tag {
            TypeTag::S => Value::S(self.typed_string(tag)?),
            TypeTag::N => Value::N(self.number()?),
            TypeTag::B => Value::B(self.base64()?),
            TypeTag::Bool => Value::Bool(self.boolean(tag)?),
            TypeTag::Null => {
                if !self.boolean(tag)? {
                    return Err(self.err(
                        Reason::InvalidNull,
                        "NULL must be true: DynamoDB refuses {\"NULL\":false}",
                    ));
                }
                Value::Null
            }
            TypeTag::M => {
                // Checked here so that `{"M":[]}` is a wrong value type, like `{"L":{}}`, not
                // invalid JSON (attr_map's own '{' check cannot tell the two apart).
                if self.peek() != Some(b'{') {
                    return Err(self.err(Reason::WrongValueType, "M must be a JSON object"));
                }
                Value::M(self.attr_map(level, false)?)
            }
            TypeTag::L => Value::L(self.list(level)?),
            TypeTag::Ss => Value::Ss(self.set(tag, Parser::typed_string)?),
            TypeTag::Ns => Value::Ns(self.set(tag, |p, _| p.number())?),
            TypeTag::Bs => Value::Bs(self.set(tag, |p, _| p.base64())?),
        };
        self.ws();
        if self.peek() == Some(b',') {
            return Err(self.err(
                Reason::WrongValueType,
                "an attribute value has exactly one type key; found more than one",
            ));
        }
        self.expect(b'}')?;
        Ok(v)
    }

    fn list(&mut self, level: usize) -> Result<Vec<Value<'a>>, ParseError> {
        if !self.eat(b'[') {
            return Err(self.err(Reason::WrongValueType, "L must be a JSON array"));
        }
        let mut items = Vec::new();
        self.ws();
        if self.eat(b']') {
            return Ok(items);
        }
        loop {
            self.ws();
            items.push(self.value(level + 1)?);
            self.ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b']') {
                return Ok(items);
            }
            return Err(self.unexpected("',' or ']'"));
        }
    }

    /// A string, number set or binary set: non-empty, members valid, no two members equal.
    fn set(
        &mut self,
        tag: TypeTag,
        member: impl Fn(&mut Self, TypeTag) -> Result<Cow<'a, str>, ParseError>,
    ) -> Result<Vec<Cow<'a, str>>, ParseError> {
        let open = self.pos;
        if !self.eat(b'[') {
            return Err(self.err(
                Reason::WrongValueType,
                format!("{} must be a JSON array of strings", tag.as_str()),
            ));
        }
        let mut members = Vec::new();
        self.ws();
        if !self.eat(b']') {
            loop {
                self.ws();
                members.push(member(self, tag)?);
                self.ws();
                if self.eat(b',') {
                    continue;
                }
                if self.eat(b']') {
                    break;
                }
                return Err(self.unexpected("',' or ']'"));
            }
        }
        if members.is_empty() {
            return Err(self.err_at(
                open,
                Reason::EmptySet,
                format!(
                    "{} is empty: DynamoDB does not allow empty sets",
                    tag.as_str()
                ),
            ));
        }
        if let Some(dup) = set_duplicate(tag, &members) {
            return Err(self.err_at(
                open,
                Reason::DuplicateSetMember,
                format!(
                    "{} holds {dup:?} twice: set members must be unique",
                    tag.as_str()
                ),
            ));
        }
        Ok(members)
    }

    fn typed_string(&mut self, tag: TypeTag) -> Result<Cow<'a, str>, ParseError> {
        if self.peek() != Some(b'"') {
            return Err(self.err(
                Reason::WrongValueType,
                format!("{} values must be JSON strings", tag.as_str()),
            ));
        }
        self.string()
    }

    fn number(&mut self) -> Result<Cow<'a, str>, ParseError> {
        let at = self.pos;
        if self.peek() != Some(b'"') {
            return Err(self.err(
                Reason::WrongValueType,
                "numbers are written as strings in DynamoDB JSON, like {\"N\":\"42\"}",
            ));
        }
        let text = self.string()?;
        if let Err(e) = number::check(&text) {
            return Err(self.err_at(
                at,
                Reason::InvalidNumber,
                format!("invalid number {:?}: {}", truncate(&text), e.message()),
            ));
        }
        Ok(text)
    }

    fn base64(&mut self) -> Result<Cow<'a, str>, ParseError> {
        let at = self.pos;
        if self.peek() != Some(b'"') {
            return Err(self.err(Reason::WrongValueType, "binary values are base64 strings"));
        }
        let text = self.string()?;
        if let Err(e) = binary::decoded_len(&text) {
            return Err(self.err_at(at, Reason::InvalidBase64, e));
        }
        Ok(text)
    }

    fn boolean(&mut self, tag: TypeTag) -> Result<bool, ParseError> {
        let rest = &self.b[self.pos..];
        if rest.starts_with(b"true") {
            self.pos += 4;
            Ok(true)
        } else if rest.starts_with(b"false") {
            self.pos += 5;
            Ok(false)
        } else {
            Err(self.err(
                Reason::WrongValueType,
                format!("{} takes a JSON true or false", tag.as_str()),
            ))
        }
    }

    /// A JSON string at `pos` (which holds the opening quote). Borrowed when it has no escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, ParseError> {
        let start = self.pos + 1;
        let rest = &self.b[start..];
        let Some(n) = memchr::memchr2(b'"', b'\\', rest) else {
            self.pos = self.b.len();
            return Err(self.err_at(start - 1, Reason::InvalidJson, "unterminated string"));
        };
        if let Some(bad) = rest[..n].iter().position(|&c| c < 0x20) {
            return Err(self.err_at(
                start + bad,
                Reason::InvalidJson,
                "control character inside a string must be escaped",
            ));
        }
        if rest[n] == b'"' {
            self.pos = start + n + 1;
            return Ok(Cow::Borrowed(&self.text[start..start + n]));
        }
        self.escaped_string(start)
    }

    #[inline(never)]
    fn escaped_string(&mut self, start: usize) -> Result<Cow<'a, str>, ParseError> {
        let mut out = String::new();
        let mut i = start;
        loop {
            let rest = &self.b[i..];
            let Some(n) = memchr::memchr2(b'"', b'\\', rest) else {
                return Err(self.err_at(start - 1, Reason::InvalidJson, "unterminated string"));
            };
            if let Some(bad) = rest[..n].iter().position(|&c| c < 0x20) {
                return Err(self.err_at(
                    i + bad,
                    Reason::InvalidJson,
                    "control character inside a string must be escaped",
                ));
            }
            out.push_str(&self.text[i..i + n]);
            i += n;
            if self.b[i] == b'"' {
                self.pos = i + 1;
                return Ok(Cow::Owned(out));
            }
            // Backslash escape.
            let esc = self.b.get(i + 1).copied();
            i += 2;
            match esc {
                Some(b'"') => out.push('"'),
                Some(b'\\') => out.push('\\'),
                Some(b'/') => out.push('/'),
                Some(b'b') => out.push('\u{8}'),
                Some(b'f') => out.push('\u{c}'),
                Some(b'n') => out.push('\n'),
                Some(b'r') => out.push('\r'),
                Some(b't') => out.push('\t'),
                Some(b'u') => {
                    let (c, used) = self.unicode_escape(i - 2)?;
                    out.push(c);
                    i += used;
                }
                _ => {
                    return Err(self.err_at(i - 2, Reason::InvalidJson, "invalid escape in string"))
                }
            }
        }
    }

    /// `\uXXXX` at `at`, with a following low surrogate when the first is a high one.
    /// Returns the char and the bytes used after the `\u`.
    fn unicode_escape(&self, at: usize) -> Result<(char, usize), ParseError> {
        let hex = |p: usize| -> Option<u32> {
            let s = self.b.get(p..p + 4)?;
            let s = std::str::from_utf8(s).ok()?;
            u32::from_str_radix(s, 16)
                .ok()
                .filter(|_| s.bytes().all(|c| c.is_ascii_hexdigit()))
        };
        let bad = || self.err_at(at, Reason::InvalidJson, "invalid \\u escape");
        let hi = hex(at + 2).ok_or_else(bad)?;
        if (0xD800..0xDC00).contains(&hi) {
            if self.b.get(at + 6..at + 8) != Some(b"\\u") {
                return Err(self.err_at(
                    at,
                    Reason::InvalidUtf8,
                    "unpaired surrogate in \\u escape",
                ));
            }
            let lo = hex(at + 8).ok_or_else(bad)?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.err_at(
                    at,
                    Reason::InvalidUtf8,
                    "unpaired surrogate in \\u escape",
                ));
            }
            let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            return Ok((char::from_u32(c).ok_or_else(bad)?, 10));
        }
        if (0xDC00..0xE000).contains(&hi) {
            return Err(self.err_at(at, Reason::InvalidUtf8, "unpaired surrogate in \\u escape"));
        }
        Ok((char::from_u32(hi).ok_or_else(bad)?, 4))
    }
}

/// The first name that occurs twice, if any. Small maps compare pairwise; larger ones sort.
fn first_duplicate<'s>(names: impl Iterator<Item = &'s str> + Clone) -> Option<&'s str> {
    let n = names.clone().count();
    if n < 2 {
        return None;
    }
    if n <= 16 {
        let v: Vec<&str> = names.collect();
        for i in 1..v.len() {
            if v[..i].contains(&v[i]) {
                return Some(v[i]);
            }
        }
        return None;
    }
    let mut v: Vec<&str> = names.collect();
    v.sort_unstable();
    v.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// A member equal to an earlier one: strings by text, numbers by value ("1" = "1.0"),
/// binaries by decoded bytes.
fn set_duplicate<'s>(tag: TypeTag, members: &'s [Cow<'_, str>]) -> Option<&'s str> {
    if members.len() < 2 {
        return None;
    }
    match tag {
        TypeTag::Ns => {
            let mut nums: Vec<(number::Decimal, usize)> = members
                .iter()
                .enumerate()
                .map(|(i, m)| (number::check(m).expect("validated"), i))
                .collect();
            nums.sort_by_key(|a| a.0);
            nums.windows(2)
                .find(|w| w[0].0 == w[1].0)
                .map(|w| members[w[1].1].as_ref())
        }
        TypeTag::Bs => {
            let mut bytes: Vec<(Vec<u8>, usize)> = members
                .iter()
                .enumerate()
                .map(|(i, m)| (binary::decode(m).expect("validated"), i))
                .collect();
            bytes.sort();
            bytes
                .windows(2)
                .find(|w| w[0].0 == w[1].0)
                .map(|w| members[w[1].1].as_ref())
        }
        _ => first_duplicate(members.iter().map(|m| m.as_ref())),
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(48) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
