//! The parser's entry points: a whole line (UTF-8 check, export line or bare map, item size)
//! or a lone attribute value.

use crate::error::{ParseError, Reason};
use crate::model::size;
use crate::model::value::{Map, Value};

use super::layout::Layout;
use super::scanner::{PResult, Parser};

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
    let text = utf8(line)?;
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

/// The text of a line, checked to be UTF-8 once, up front. simdutf8 checks a line several
/// times faster than std; only on failure is std asked where the valid prefix ends.
pub(super) fn utf8(line: &[u8]) -> Result<&str, ParseError> {
    simdutf8::basic::from_utf8(line).map_err(|_| {
        let valid_up_to = std::str::from_utf8(line).map_or_else(|e| e.valid_up_to(), |_| 0);
        ParseError::new(Reason::InvalidUtf8, "invalid UTF-8", line, valid_up_to)
    })
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
