//! The DynamoDB-JSON parser: one line of bytes in, a validated item (borrowing the line) out.
//!
//! Hand-written rather than serde_json so that every DynamoDB rule is checked in the same pass
//! as the JSON syntax, each refusal names the rule and the byte offset, and values borrow the
//! line instead of being copied. UTF-8 is validated once for the whole line up front (SIMD, with
//! simdutf8), so string slices can be taken without checking them again.

use std::borrow::Cow;
use std::ops::Range;

use crate::error::{ParseError, Reason};
use crate::model::binary;
use crate::model::escape::{escape_bytes, find_special, is_special};
use crate::model::number;
use crate::model::size;
use crate::model::value::{Map, TypeTag, Value};

/// DynamoDB nests documents at most 32 levels, the top-level attribute counting as level 1
/// (Developer Guide, "Constraints"; a value at level 33 is refused with "Nesting Levels have
/// exceeded supported limits").
pub const MAX_DEPTH: usize = 32;
/// DynamoDB: attribute names are "at least one character long and less than 64 KB".
pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 65_535;

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
    parse_line(line, shape, None)
}

/// Where the parts of a parsed line sit, so that an item, or one of its top-level values, can
/// be written by copying the line's bytes instead of serializing the parsed form again.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Whether the line is exactly what `serialize` writes for the parsed item: no whitespace
    /// outside strings, and only the escapes `serialize::write_str` produces (so `\u00e9`, `\/`
    /// or `\b` make a line non-canonical). Only then are the ranges below a valid output.
    pub canonical: bool,
    /// The attribute map `{...}` (for an export line, without the `{"Item":` around it).
    pub map: Range<usize>,
    /// Each top-level attribute, in the order of the map.
    pub entries: Vec<Entry>,
}

/// Where one top-level attribute sits in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The opening quote of its name.
    pub name_at: usize,
    /// Its value `{"T":...}`.
    pub value: Range<usize>,
}

impl Layout {
    /// The bytes to copy for `line` (the line this layout was recorded for), if canonical.
    pub fn raw_line<'l>(&'l self, line: &'l [u8]) -> Option<RawLine<'l>> {
        self.canonical.then_some(RawLine { line, layout: self })
    }
}

/// A line in the serializer's own form (`Layout::canonical`), with its layout: the bytes an
/// unchanged item or value can be copied from. ("Canonical" here means only that; it is not
/// the `canonical` module's normalised form of an item.)
#[derive(Debug, Clone, Copy)]
pub struct RawLine<'l> {
    line: &'l [u8],
    layout: &'l Layout,
}

impl<'l> RawLine<'l> {
    /// The attribute map, byte for byte what `serialize::write_map` would write for it.
    pub fn map(&self) -> &'l [u8] {
        &self.line[self.layout.map.clone()]
    }

    /// Top-level value `i` (in map order), as `serialize::write_value` would write it.
    pub fn value(&self, i: usize) -> &'l [u8] {
        &self.line[self.layout.entries[i].value.clone()]
    }

    /// Top-level attributes `first..=last` (in map order), `"name":{"T":...}` each, with the
    /// commas between them: what `serialize` writes for them, in one slice to copy.
    pub fn entries(&self, first: usize, last: usize) -> &'l [u8] {
        let entries = &self.layout.entries;
        &self.line[entries[first].name_at..entries[last].value.end]
    }
}

/// `parse_item`, also recording the line's `layout` (whose buffers are reused between calls).
/// On error the layout is not canonical.
pub fn parse_item_layout<'a>(
    line: &'a [u8],
    shape: Shape,
    layout: &mut Layout,
) -> Result<Map<'a>, ParseError> {
    layout.canonical = false;
    layout.map = 0..0;
    layout.entries.clear();
    let result = parse_line(line, shape, Some(&mut *layout));
    // Refusals after the reading itself (the item size) must not leave it canonical either.
    if result.is_err() {
        layout.canonical = false;
    }
    result
}

fn parse_line<'a>(
    line: &'a [u8],
    shape: Shape,
    layout: Option<&mut Layout>,
) -> Result<Map<'a>, ParseError> {
    // simdutf8 checks a line several times faster than std; only on failure is std asked
    // where the valid prefix ends.
    let text = match simdutf8::basic::from_utf8(line) {
        Ok(t) => t,
        Err(_) => {
            let valid_up_to = std::str::from_utf8(line).map_or_else(|e| e.valid_up_to(), |_| 0);
            return Err(ParseError::new(
                Reason::InvalidUtf8,
                "invalid UTF-8",
                line,
                valid_up_to,
            ));
        }
    };
    let map = match shape {
        Shape::ExportLine => run(text, layout, Parser::export_line)?,
        Shape::AttributeMap => run(text, layout, Parser::bare_map)?,
        Shape::Any => parse_any(text, layout)?,
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

/// Runs one reading of the whole text, recording into `layout` when there is one.
fn run<'a>(
    text: &'a str,
    layout: Option<&mut Layout>,
    read: impl FnOnce(&mut Parser<'a>) -> PResult<Map<'a>>,
) -> Result<Map<'a>, ParseError> {
    let mut p = Parser::new(text);
    let Some(layout) = layout else {
        return read(&mut p).map_err(|e| *e);
    };
    let mut entries = std::mem::take(&mut layout.entries);
    entries.clear();
    p.entries = Some(entries);
    let result = read(&mut p);
    layout.entries = p.entries.take().unwrap_or_default();
    layout.map = p.map_span.clone();
    layout.canonical = result.is_ok() && p.canonical;
    result.map_err(|e| *e)
}

/// Parses a single attribute value such as `{"N":"1.5"}` (nesting level 1).
pub fn parse_value(text: &str) -> Result<Value<'_>, ParseError> {
    let mut p = Parser::new(text);
    p.ws();
    let v = p.value(1).map_err(|e| *e)?;
    p.end().map_err(|e| *e)?;
    Ok(v)
}

fn parse_any<'a>(text: &'a str, mut layout: Option<&mut Layout>) -> Result<Map<'a>, ParseError> {
    let mut probe = Parser::new(text);
    probe.ws();
    let starts_with_item = probe.eat(b'{') && {
        probe.ws();
        probe.peek() == Some(b'"') && probe.string().is_ok_and(|k| k == "Item")
    };
    if !starts_with_item {
        return run(text, layout, Parser::bare_map);
    }
    // `{"Item": X}` is an export line when X is an attribute map and nothing follows; a bare
    // map may also have an attribute called "Item", so fall back to that reading.
    match run(text, layout.as_deref_mut(), Parser::export_line) {
        Ok(m) => Ok(m),
        Err(as_line) => match run(text, layout, Parser::bare_map) {
            Ok(m) => Ok(m),
            Err(as_map) if as_map.offset > as_line.offset => Err(as_map),
            Err(_) => Err(as_line),
        },
    }
}

/// The parser's error: boxed, so that the `Result`s passed up through every value of every
/// item are no bigger than the values themselves (errors are rare, values are not).
type Failure = Box<ParseError>;
type PResult<T> = Result<T, Failure>;

struct Parser<'a> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
    /// No whitespace skipped and no escape unlike `serialize`'s so far (see `Layout`).
    canonical: bool,
    /// Where top-level values are recorded, when a layout is wanted.
    entries: Option<Vec<Entry>>,
    /// The top-level attribute map, once read.
    map_span: Range<usize>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            text,
            b: text.as_bytes(),
            pos: 0,
            canonical: true,
            entries: None,
            map_span: 0..0,
        }
    }

    #[cold]
    fn err(&self, reason: Reason, msg: impl Into<String>) -> Failure {
        Box::new(ParseError::new(reason, msg, self.b, self.pos))
    }

    #[cold]
    fn err_at(&self, pos: usize, reason: Reason, msg: impl Into<String>) -> Failure {
        Box::new(ParseError::new(reason, msg, self.b, pos))
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
            self.canonical = false;
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

    /// `c`, after optional whitespace. Inlined for the usual case of `c` right here.
    #[inline]
    fn expect(&mut self, c: u8) -> PResult<()> {
        if self.eat(c) {
            return Ok(());
        }
        self.ws();
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{}'", c as char)))
        }
    }

    #[cold]
    fn unexpected(&self, wanted: &str) -> Failure {
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

    fn end(&mut self) -> PResult<()> {
        self.ws();
        if self.pos == self.b.len() {
            Ok(())
        } else {
            Err(self.err(Reason::InvalidJson, "unexpected characters after the item"))
        }
    }

    fn export_line(&mut self) -> PResult<Map<'a>> {
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
    fn not_an_item(&self, at: usize) -> Failure {
        if self.peek() == Some(b'}') {
            self.err_at(at, Reason::NotAnItem, "empty object: no \"Item\"")
        } else {
            self.unexpected("'\"'")
        }
    }

    fn bare_map(&mut self) -> PResult<Map<'a>> {
        let map = self.attr_map(0, true)?;
        self.end()?;
        Ok(map)
    }

    /// An attribute map whose values sit at nesting level `level + 1`.
    fn attr_map(&mut self, level: usize, top: bool) -> PResult<Map<'a>> {
        self.ws();
        let open = self.pos;
        self.expect(b'{')?;
        let start = self.pos;
        // Items have tens of attributes: start the top-level map at a size that rarely has to
        // grow (each growth is a reallocation and a copy of every entry so far).
        let mut map: Map<'a> = Vec::with_capacity(if top { 16 } else { 0 });
        self.ws();
        if self.eat(b'}') {
            if top {
                self.map_span = open..self.pos;
            }
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
            if top && name.len() > MAX_ATTRIBUTE_NAME_BYTES {
                return Err(self.err_at(
                    name_at,
                    Reason::AttributeNameTooLong,
                    "attribute names must be less than 64 KB (65,535 bytes of UTF-8)",
                ));
            }
            self.expect(b':')?;
            self.ws();
            let value_at = self.pos;
            map.push((name, Value::Null));
            let (_, slot) = map.last_mut().expect("just pushed");
            self.value_into(level + 1, slot)?;
            if top {
                if let Some(entries) = &mut self.entries {
                    entries.push(Entry {
                        name_at,
                        value: value_at..self.pos,
                    });
                }
            }
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
        if top {
            self.map_span = open..self.pos;
        }
        Ok(map)
    }

    /// One typed value `{"T": v}` at nesting `level` (1 for a top-level attribute).
    fn value(&mut self, level: usize) -> PResult<Value<'a>> {
        let mut v = Value::Null;
        self.value_into(level, &mut v)?;
        Ok(v)
    }

    /// `value`, written into `out` where it is to stay (a map entry or list element). Values
    /// are returned through memory; moving one afterwards reads back, in wider loads, bytes
    /// just written in narrower stores, which stalls the CPU (no store-to-load forwarding),
    /// and this is the parser's most frequent call.
    fn value_into(&mut self, level: usize, out: &mut Value<'a>) -> PResult<()> {
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
        let tag = match self.plain_tag() {
            Some(tag) => tag,
            None => self.tag()?,
        };
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
        // `out` holds the placeholder `Value::Null`, which owns nothing: forgetting it skips
        // the call to the drop glue that `*out = v` would make for every value.
        debug_assert!(matches!(out, Value::Null));
        std::mem::forget(std::mem::replace(out, v));
        self.ws();
        if self.peek() == Some(b',') {
            return Err(self.err(
                Reason::WrongValueType,
                "an attribute value has exactly one type key; found more than one",
            ));
        }
        self.expect(b'}')
    }

    /// The usual spelling of a type key, `"S":` and the like with nothing between the
    /// tokens, read in one comparison; anything else is left to `tag`.
    #[inline]
    fn plain_tag(&mut self) -> Option<TypeTag> {
        let rest = &self.b[self.pos..];
        // Spelled out byte by byte: the compiler turns this into a few compares and jumps.
        let (tag, len) = match rest {
            [b'"', b'S', b'"', b':', ..] => (TypeTag::S, 4),
            [b'"', b'N', b'"', b':', ..] => (TypeTag::N, 4),
            [b'"', b'B', b'"', b':', ..] => (TypeTag::B, 4),
            [b'"', b'M', b'"', b':', ..] => (TypeTag::M, 4),
            [b'"', b'L', b'"', b':', ..] => (TypeTag::L, 4),
            [b'"', b'S', b'S', b'"', b':', ..] => (TypeTag::Ss, 5),
            [b'"', b'N', b'S', b'"', b':', ..] => (TypeTag::Ns, 5),
            [b'"', b'B', b'S', b'"', b':', ..] => (TypeTag::Bs, 5),
            [b'"', b'B', b'O', b'O', b'L', b'"', b':', ..] => (TypeTag::Bool, 7),
            [b'"', b'N', b'U', b'L', b'L', b'"', b':', ..] => (TypeTag::Null, 7),
            _ => return None,
        };
        self.pos += len;
        Some(tag)
    }

    /// A type key and its colon, in any spelling JSON allows (escapes, whitespace).
    fn tag(&mut self) -> PResult<TypeTag> {
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
        Ok(tag)
    }

    fn list(&mut self, level: usize) -> PResult<Vec<Value<'a>>> {
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
            items.push(Value::Null);
            self.value_into(level + 1, items.last_mut().expect("just pushed"))?;
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
        member: impl Fn(&mut Self, TypeTag) -> PResult<Cow<'a, str>>,
    ) -> PResult<Vec<Cow<'a, str>>> {
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

    fn typed_string(&mut self, tag: TypeTag) -> PResult<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            return Err(self.err(
                Reason::WrongValueType,
                format!("{} values must be JSON strings", tag.as_str()),
            ));
        }
        self.string()
    }

    fn number(&mut self) -> PResult<Cow<'a, str>> {
        let at = self.pos;
        if self.peek() != Some(b'"') {
            return Err(self.err(
                Reason::WrongValueType,
                "numbers are written as strings in DynamoDB JSON, like {\"N\":\"42\"}",
            ));
        }
        let text = self.string()?;
        if let Err(e) = number::validate(&text) {
            return Err(self.err_at(
                at,
                Reason::InvalidNumber,
                format!("invalid number {:?}: {}", truncate(&text), e.message()),
            ));
        }
        Ok(text)
    }

    fn base64(&mut self) -> PResult<Cow<'a, str>> {
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

    fn boolean(&mut self, tag: TypeTag) -> PResult<bool> {
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
    fn string(&mut self) -> PResult<Cow<'a, str>> {
        let start = self.pos + 1;
        let rest = &self.b[start..];
        match find_special(rest) {
            Some(n) if rest[n] == b'"' => {
                self.pos = start + n + 1;
                Ok(Cow::Borrowed(&self.text[start..start + n]))
            }
            Some(n) if rest[n] == b'\\' => self.escaped_string(start),
            Some(n) => Err(self.control_in_string(start + n)),
            None => {
                self.pos = self.b.len();
                Err(self.err_at(start - 1, Reason::InvalidJson, "unterminated string"))
            }
        }
    }

    #[cold]
    fn control_in_string(&self, at: usize) -> Failure {
        self.err_at(
            at,
            Reason::InvalidJson,
            "control character inside a string must be escaped",
        )
    }

    #[inline(never)]
    fn escaped_string(&mut self, start: usize) -> PResult<Cow<'a, str>> {
        let mut out = String::new();
        let mut i = start;
        loop {
            let rest = &self.b[i..];
            let Some(n) = find_special(rest) else {
                return Err(self.err_at(start - 1, Reason::InvalidJson, "unterminated string"));
            };
            out.push_str(&self.text[i..i + n]);
            i += n;
            match self.b[i] {
                b'"' => {
                    self.pos = i + 1;
                    return Ok(Cow::Owned(out));
                }
                b'\\' => {}
                _ => return Err(self.control_in_string(i)),
            }
            let at = i;
            let esc = self.b.get(i + 1).copied();
            i += 2;
            let c = match esc {
                Some(b'"') => '"',
                Some(b'\\') => '\\',
                Some(b'/') => '/',
                Some(b'b') => '\u{8}',
                Some(b'f') => '\u{c}',
                Some(b'n') => '\n',
                Some(b'r') => '\r',
                Some(b't') => '\t',
                Some(b'u') => {
                    let (c, used) = self.unicode_escape(at)?;
                    i += used;
                    c
                }
                _ => return Err(self.err_at(at, Reason::InvalidJson, "invalid escape in string")),
            };
            out.push(c);
            // The line stays canonical only if the serializer would write this very escape.
            if self.canonical {
                self.canonical = u8::try_from(c).is_ok_and(|c| {
                    let (want, len) = escape_bytes(c);
                    is_special(c) && self.b[at..i] == want[..len]
                });
            }
        }
    }

    /// `\uXXXX` at `at`, with a following low surrogate when the first is a high one.
    /// Returns the char and the bytes used after the `\u`.
    fn unicode_escape(&self, at: usize) -> PResult<(char, usize)> {
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

/// The first name that occurs twice, if any. Every map and string set of every item comes
/// through here, nearly always without a duplicate: up to 32 names, each is compared by
/// fingerprint with the ones before it (no allocation, no string comparison unless two
/// fingerprints agree); more are sorted.
fn first_duplicate<'s>(names: impl Iterator<Item = &'s str> + Clone) -> Option<&'s str> {
    const SMALL: usize = 32;
    let n = names.clone().count();
    if n < 2 {
        return None;
    }
    if n <= SMALL {
        let mut seen = [0u64; SMALL];
        for (i, name) in names.clone().enumerate() {
            let f = fingerprint(name);
            if seen[..i].contains(&f) && names.clone().take(i).any(|earlier| earlier == name) {
                return Some(name);
            }
            seen[i] = f;
        }
        return None;
    }
    let mut v: Vec<&str> = names.collect();
    v.sort_unstable();
    v.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// Equal strings have equal fingerprints: their length and first and last four bytes.
fn fingerprint(s: &str) -> u64 {
    let b = s.as_bytes();
    let n = b.len();
    let (head, tail) = if n >= 4 {
        let word = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        (word(0), word(n - 4))
    } else {
        let short = b.iter().rev().fold(0u32, |w, &c| w << 8 | u32::from(c));
        (short, 0)
    };
    (u64::from(head) | u64::from(tail) << 32) ^ (n as u64).rotate_right(8)
}

/// A member equal to an earlier one: strings by text, numbers by value ("1" = "1.0"),
/// binaries by decoded bytes.
fn set_duplicate<'s>(tag: TypeTag, members: &'s [Cow<'_, str>]) -> Option<&'s str> {
    if members.len() < 2 || surely_distinct(tag, members) {
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

/// Whether number or binary set members are proven distinct without allocating, as they are
/// in nearly every set; `false` means "maybe not", and the full check (which also picks the
/// member to name) decides.
fn surely_distinct(tag: TypeTag, members: &[Cow<'_, str>]) -> bool {
    const SMALL: usize = 16;
    match tag {
        TypeTag::Ns if members.len() <= SMALL => {
            // Plain numbers compare by their key; if one is not plain, all go by `Decimal`.
            let mut keys = [(false, "", ""); SMALL];
            let mut all_plain = true;
            for (i, m) in members.iter().enumerate() {
                let Some(key) = number::plain_key(m) else {
                    all_plain = false;
                    break;
                };
                if keys[..i].contains(&key) {
                    return false;
                }
                keys[i] = key;
            }
            if all_plain {
                return true;
            }
            let mut seen = [number::Decimal::ZERO; SMALL];
            for (i, m) in members.iter().enumerate() {
                let d = number::check(m).expect("validated");
                if seen[..i].contains(&d) {
                    return false;
                }
                seen[i] = d;
            }
            true
        }
        // Different base64 texts are different bytes unless unused trailing bits differ.
        TypeTag::Bs => {
            members.iter().all(|m| binary::trailing_bits_clear(m))
                && first_duplicate(members.iter().map(|m| m.as_ref())).is_none()
        }
        _ => false,
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(48) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::serialize::{write_export_line, write_map, write_str, write_value};

    /// Parses with a layout and checks it against the serializer: when the layout says
    /// canonical, the line, its map and each value must be byte for byte what `serialize`
    /// writes. Returns whether the line was canonical.
    fn check_layout(line: &str, shape: Shape) -> bool {
        let mut layout = Layout::default();
        let with = parse_item_layout(line.as_bytes(), shape, &mut layout);
        let without = parse_item(line.as_bytes(), shape);
        assert_eq!(with, without, "{line}");
        let Ok(item) = with else {
            assert!(!layout.canonical, "{line}");
            return false;
        };
        let Some(raw) = layout.raw_line(line.as_bytes()) else {
            return false;
        };
        let mut out = Vec::new();
        write_map(&mut out, &item);
        assert_eq!(raw.map(), &out[..], "{line}");
        assert_eq!(layout.entries.len(), item.len());
        for (i, (_, v)) in item.iter().enumerate() {
            out.clear();
            write_value(&mut out, v);
            assert_eq!(raw.value(i), &out[..], "{line}");
        }
        // Every run of consecutive attributes, as the serializer writes it.
        for first in 0..item.len() {
            for last in first..item.len() {
                out.clear();
                for (i, (k, v)) in item[first..=last].iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(&mut out, k);
                    out.push(b':');
                    write_value(&mut out, v);
                }
                assert_eq!(raw.entries(first, last), &out[..], "{line}");
            }
        }
        if layout.map.len() < line.len() {
            out.clear();
            write_export_line(&mut out, &item);
            assert_eq!(line.as_bytes(), &out[..], "{line}");
        }
        true
    }

    #[test]
    fn canonical_lines_are_what_serialize_writes() {
        for line in [
            r#"{"Item":{}}"#,
            r#"{"Item":{"a":{"S":""}}}"#,
            r#"{"Item":{"s":{"S":"a\"b\\c\nd\re\tf\u0001\u0008\u000c\u001fé😀 ok"},"n":{"N":"-1.50E+3"},"b":{"B":"AAE="},"t":{"BOOL":true},"f":{"BOOL":false},"z":{"NULL":true},"m":{"M":{"x":{"L":[{"N":"1"},{"M":{}}]}}},"l":{"L":[]},"ss":{"SS":["a",""]},"ns":{"NS":["1","2"]},"bs":{"BS":["AA==",""]}}}"#,
            "{\"Item\":{\"sep\":{\"S\":\"line\u{2028}para\u{2029}\u{7f}\"},\"k\\\"ey\":{\"S\":\"x\"}}}",
        ] {
            assert!(check_layout(line, Shape::ExportLine), "{line}");
            assert!(check_layout(line, Shape::Any), "{line}");
        }
        // A bare map: the map is the whole line.
        let line = r#"{"a":{"N":"1"},"Item":{"S":"x"}}"#;
        assert!(check_layout(line, Shape::AttributeMap));
        assert!(check_layout(line, Shape::Any));
    }

    #[test]
    fn other_spellings_are_not_canonical() {
        for line in [
            r#" {"Item":{"a":{"S":"x"}}}"#,
            r#"{"Item":{"a":{"S":"x"}}} "#,
            r#"{"Item": {"a":{"S":"x"}}}"#,
            r#"{"Item":{"a" :{"S":"x"}}}"#,
            r#"{"Item":{"a":{ "S":"x"}}}"#,
            r#"{"Item":{"a":{"S" :"x"}}}"#,
            r#"{"Item":{"a":{"L":[ ]}}}"#,
            r#"{"Item":{"a":{"M":{ }}}}"#,
            r#"{"Item":{"a":{"SS":["x" ,"y"]}}}"#,
            "{\"Item\":{\"a\":{\"S\":\"x\"}}\t}",
            r#"{"Item":{"a":{"S":"\/"}}}"#,
            r#"{"Item":{"a":{"S":"\b"}}}"#,
            r#"{"Item":{"a":{"S":"\f"}}}"#,
            r#"{"Item":{"a":{"S":"\u00e9"}}}"#,
            r#"{"Item":{"a":{"S":"\u001F"}}}"#,
            r#"{"Item":{"a":{"S":"\u000a"}}}"#,
            r#"{"Item":{"a":{"S":"\u0022"}}}"#,
            r#"{"Item":{"a":{"S":"\u005c"}}}"#,
            r#"{"Item":{"a":{"S":"\u0041"}}}"#,
            r#"{"Item":{"a":{"S":"\u2028"}}}"#,
            r#"{"Item":{"a":{"S":"\ud83d\ude00"}}}"#,
            r#"{"Item":{"\u0061":{"S":"x"}}}"#,
            r#"{"Item":{"a":{"\u0053":"x"}}}"#,
            r#"{"Item":{"a":{"N":"\u0031"}}}"#,
            r#"{"\u0049tem":{"a":{"S":"x"}}}"#,
        ] {
            assert!(!check_layout(line, Shape::ExportLine), "{line}");
            assert!(!check_layout(line, Shape::Any), "{line}");
        }
        // Refused lines are never canonical, including items refused for their size only
        // after they were read.
        let too_large = format!(r#"{{"Item":{{"a":{{"S":"{}"}}}}}}"#, "x".repeat(410_000));
        for line in [
            r#"{"Item":{"a":{"N":"x"}}}"#,
            r#"{"Item":{"a":{"S":"x"}}"#,
            &too_large,
        ] {
            assert!(!check_layout(line, Shape::ExportLine), "{line}");
        }
    }

    /// A small deterministic generator (xorshift), to build and mutate lines.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'x>(&mut self, from: &[&'x str]) -> &'x str {
            from[self.below(from.len())]
        }
    }

    const TEXTS: &[&str] = &[
        "",
        "a",
        "pk",
        "ü",
        "😀",
        "\u{2028}",
        "\"",
        "\\",
        "\n",
        "\r",
        "\t",
        "\u{1}",
        "\u{8}",
        "\u{c}",
        "\u{1f}",
        "\u{7f}",
        "/",
        "x\"y\\z\u{0}",
        "long string with spaces 123",
    ];

    fn random_value(rng: &mut Rng, depth: usize) -> String {
        let mut out = Vec::new();
        let kind = rng.below(if depth > 2 { 7 } else { 10 });
        let text = |rng: &mut Rng| {
            let mut s = String::new();
            for _ in 0..rng.below(4) {
                s.push_str(rng.pick(TEXTS));
            }
            s
        };
        let string = |s: &str| {
            let mut o = Vec::new();
            crate::output::serialize::write_str(&mut o, s);
            String::from_utf8(o).unwrap()
        };
        match kind {
            0 => out.extend(format!("{{\"S\":{}}}", string(&text(rng))).bytes()),
            1 => out.extend(
                format!("{{\"N\":\"{}\"}}", rng.pick(&["0", "-1.5", "1E+3", "42"])).bytes(),
            ),
            2 => out.extend(
                format!("{{\"B\":\"{}\"}}", rng.pick(&["", "AA==", "AAE=", "dGVz"])).bytes(),
            ),
            3 => out.extend(format!("{{\"BOOL\":{}}}", rng.pick(&["true", "false"])).bytes()),
            4 => out.extend(b"{\"NULL\":true}"),
            5 => {
                let members: Vec<String> = (0..1 + rng.below(3))
                    .map(|i| string(&format!("{i}{}", text(rng))))
                    .collect();
                out.extend(format!("{{\"SS\":[{}]}}", members.join(",")).bytes());
            }
            6 => out.extend(b"{\"NS\":[\"1\",\"2.5\"]}"),
            7 => out.extend(format!("{{\"M\":{}}}", random_map(rng, depth + 1)).bytes()),
            _ => {
                let items: Vec<String> = (0..rng.below(3))
                    .map(|_| random_value(rng, depth + 1))
                    .collect();
                out.extend(format!("{{\"L\":[{}]}}", items.join(",")).bytes());
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn random_map(rng: &mut Rng, depth: usize) -> String {
        let entries: Vec<String> = (0..rng.below(4))
            .map(|i| {
                let mut name = Vec::new();
                crate::output::serialize::write_str(&mut name, &format!("{i}{}", rng.pick(TEXTS)));
                format!(
                    "{}:{}",
                    String::from_utf8(name).unwrap(),
                    random_value(rng, depth)
                )
            })
            .collect();
        format!("{{{}}}", entries.join(","))
    }

    #[test]
    fn canonical_means_serializer_output_under_mutation() {
        // Lines the serializer wrote are canonical; after a random edit (whitespace, an escape
        // spelled another way, a byte changed), a line that still parses is either reported
        // non-canonical or is still exactly what the serializer writes.
        let edits: &[&str] = &[
            " ", "\t", "\n", "\\/", "\\b", "\\f", "\\u0041", "\\u00e9", "\\u001F", "\\u001f",
            "\\\"", "\\\\", "\\n", "\"", ",", "{", "}",
        ];
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let (mut canonical, mut not) = (0, 0);
        for _ in 0..3000 {
            let line = format!("{{\"Item\":{}}}", random_map(&mut rng, 1));
            assert!(check_layout(&line, Shape::ExportLine), "{line}");
            for _ in 0..5 {
                let mut edited = line.clone();
                let mut at = rng.below(edited.len() + 1);
                while !edited.is_char_boundary(at) {
                    at -= 1;
                }
                if rng.below(2) == 0 {
                    edited.insert_str(at, rng.pick(edits));
                } else {
                    let end = (at + 1 + rng.below(3)).min(edited.len());
                    if (at..=end).all(|i| edited.is_char_boundary(i)) {
                        edited.replace_range(at..end, rng.pick(edits));
                    }
                }
                for shape in [Shape::ExportLine, Shape::Any] {
                    if check_layout(&edited, shape) {
                        canonical += 1;
                    } else {
                        not += 1;
                    }
                }
            }
        }
        // Both outcomes happen, so the test exercises both.
        assert!(canonical > 100 && not > 100, "{canonical} {not}");
    }

    #[test]
    fn duplicates_are_found_by_fingerprint_or_by_sorting() {
        for n in [2, 3, 16, 32, 33, 100] {
            let names: Vec<String> = (0..n).map(|i| format!("attribute_name_{i:03}")).collect();
            assert_eq!(first_duplicate(names.iter().map(String::as_str)), None);
            for (a, b) in [(0, n - 1), (n / 2 - 1, n / 2), (n - 2, n - 1)] {
                let mut dup = names.clone();
                dup[b] = dup[a].clone();
                assert_eq!(
                    first_duplicate(dup.iter().map(String::as_str)),
                    Some(dup[a].as_str()),
                    "{n} {a} {b}"
                );
            }
        }
        // Same length, first and last four bytes, different middle: same fingerprint.
        let similar = [
            "abcd_1_wxyz",
            "abcd_2_wxyz",
            "abcd_3_wxyz",
            "",
            "a",
            "ab",
            "ba",
        ];
        assert_eq!(first_duplicate(similar.iter().copied()), None);
        assert_eq!(
            first_duplicate(["ab", "x", "ab"].iter().copied()),
            Some("ab")
        );
    }

    #[test]
    fn set_duplicates_by_value() {
        let dup = |line: &str| {
            parse_item(line.as_bytes(), Shape::AttributeMap)
                .map(|_| ())
                .map_err(|e| e.reason)
        };
        assert_eq!(Ok(()), dup(r#"{"a":{"NS":["1","2","3"]}}"#));
        assert_eq!(
            dup(r#"{"a":{"NS":["1","2","1.0"]}}"#),
            Err(Reason::DuplicateSetMember)
        );
        assert_eq!(
            dup(r#"{"a":{"NS":["-0","0"]}}"#),
            Err(Reason::DuplicateSetMember)
        );
        assert_eq!(Ok(()), dup(r#"{"a":{"BS":["AA==","AQ==","AAE="]}}"#));
        assert_eq!(
            dup(r#"{"a":{"BS":["AA==","AQ==","AA=="]}}"#),
            Err(Reason::DuplicateSetMember)
        );
        // Different text, same bytes: the trailing bits of "AB==" are not part of the value.
        assert_eq!(
            dup(r#"{"a":{"BS":["AA==","AB=="]}}"#),
            Err(Reason::DuplicateSetMember)
        );
        let many: Vec<String> = (0..20).map(|i| format!("\"{i}\"")).collect();
        assert_eq!(
            Ok(()),
            dup(&format!(r#"{{"a":{{"NS":[{}]}}}}"#, many.join(",")))
        );
        assert_eq!(
            dup(&format!(r#"{{"a":{{"NS":[{},"19.00"]}}}}"#, many.join(","))),
            Err(Reason::DuplicateSetMember)
        );
    }
}
