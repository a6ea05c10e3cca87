//! Writes items back as compact DynamoDB JSON: `{"Item":{...}}` export lines or bare maps.
//! Numbers and binaries are written as the text they were read as; strings are escaped the
//! way JSON requires and nothing more (non-ASCII stays raw UTF-8, as AWS exports write it).

use crate::model::escape::{escape_bytes, find_special};
use crate::model::value::{Map, Value};
use crate::parse::RawLine;

/// One attribute of a transform's output (`transform::Transform::project`), as
/// `write_export_line_attrs` writes it. (Defined here, where it is written, so that `output`
/// needs nothing from `route`.)
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutAttr<'m, 'a> {
    pub name: &'m str,
    pub value: &'m Value<'a>,
    /// The value's index in the input item when it is one of the item's own values (not a
    /// template's), so that its bytes in a canonical input line can be copied to the output.
    pub from_item: Option<usize>,
    /// Whether `name` differs from the item's name for the value (a rename).
    pub renamed: bool,
}

/// Appends `{"Item":{...}}` (no newline).
pub fn write_export_line(out: &mut Vec<u8>, item: &Map<'_>) {
    out.extend_from_slice(b"{\"Item\":");
    write_map(out, item);
    out.push(b'}');
}

/// Appends `{"Item":{...}}` for an item given as a transform's output attributes. With the
/// input line in canonical form (`raw`), what comes unchanged from the input item is copied
/// from the line: the same bytes `write_value` and `write_str` would make, without walking
/// the value. Attributes kept under their own name, one after another as in the item, are
/// copied names, values, commas and all, in one slice.
pub fn write_export_line_attrs(
    out: &mut Vec<u8>,
    attrs: &[OutAttr<'_, '_>],
    raw: Option<RawLine<'_>>,
) {
    out.extend_from_slice(b"{\"Item\":{");
    let mut i = 0;
    while i < attrs.len() {
        if i > 0 {
            out.push(b',');
        }
        let a = &attrs[i];
        i += 1;
        match (raw, a.from_item) {
            (Some(raw), Some(first)) if !a.renamed => {
                let mut last = first;
                while let Some(next) = attrs.get(i) {
                    if next.renamed || next.from_item != Some(last + 1) {
                        break;
                    }
                    last += 1;
                    i += 1;
                }
                out.extend_from_slice(raw.entries(first, last));
            }
            (Some(raw), Some(index)) => {
                write_str(out, a.name);
                out.push(b':');
                out.extend_from_slice(raw.value(index));
            }
            _ => {
                write_str(out, a.name);
                out.push(b':');
                write_value(out, a.value);
            }
        }
    }
    out.extend_from_slice(b"}}");
}

/// Appends a bare attribute map `{...}`.
pub fn write_map(out: &mut Vec<u8>, map: &Map<'_>) {
    out.push(b'{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

pub fn write_value(out: &mut Vec<u8>, v: &Value<'_>) {
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(v.type_tag().as_str().as_bytes());
    out.extend_from_slice(b"\":");
    match v {
        Value::S(s) | Value::N(s) | Value::B(s) => write_str(out, s),
        Value::Bool(true) | Value::Null => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::M(m) => write_map(out, m),
        Value::L(l) => {
            out.push(b'[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, e);
            }
            out.push(b']');
        }
        Value::Ss(s) | Value::Ns(s) | Value::Bs(s) => {
            out.push(b'[');
            for (i, e) in s.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, e);
            }
            out.push(b']');
        }
    }
    out.push(b'}');
}

/// A JSON string literal: `"`, `\` and control characters escaped (`\n`, `\r`, `\t`, else
/// `\u00xx`), everything else copied, non-ASCII included. Runs between the bytes that need
/// an escape are found eight bytes at a time and copied whole.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let mut rest = s.as_bytes();
    while let Some(i) = find_special(rest) {
        out.extend_from_slice(&rest[..i]);
        write_escape(out, rest[i]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

fn write_escape(out: &mut Vec<u8>, c: u8) {
    let (bytes, n) = escape_bytes(c);
    out.extend_from_slice(&bytes[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_item, Shape};

    #[test]
    fn round_trips_every_type() {
        let line = r#"{"Item":{"s":{"S":"a\"b\\c\n\u0001é😀"},"n":{"N":"1.50"},"b":{"B":"AAE="},"t":{"BOOL":true},"f":{"BOOL":false},"z":{"NULL":true},"m":{"M":{"x":{"L":[{"N":"1"},{"M":{}}]}}},"l":{"L":[]},"ss":{"SS":["a",""]},"ns":{"NS":["1","2"]},"bs":{"BS":["AA==",""]}}}"#;
        let item = parse_item(line.as_bytes(), Shape::ExportLine).unwrap();
        let mut out = Vec::new();
        write_export_line(&mut out, &item);
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(text, line);
        let again = parse_item(&out, Shape::ExportLine).unwrap();
        assert_eq!(again, item);
    }

    /// The byte-at-a-time writer `write_str` replaced, as the reference.
    fn write_str_simple(out: &mut Vec<u8>, s: &str) {
        out.push(b'"');
        for c in s.bytes() {
            match c {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0..=0x1f => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
                _ => out.push(c),
            }
        }
        out.push(b'"');
    }

    #[test]
    fn write_str_matches_the_simple_writer() {
        let tricky = [
            "",
            "plain",
            "\"",
            "\\",
            "\\\"",
            "a\"b\\c",
            "\u{0}",
            "\u{1f}",
            "\u{20}",
            "\u{7f}",
            "\u{8}\u{c}\n\r\t",
            "é",
            "😀",
            "\u{2028}\u{2029}",
            "日本語\"quoted\"",
            "exactly8",
            "exactly8\"",
            "\"exactly8",
            "seven!\"x",
            "0123456789abcdef\\",
            "</script>",
            "ünïcödé\u{1}ünïcödé\u{1f}ünïcödé",
        ];
        let mut cases: Vec<String> = tricky.iter().map(|s| s.to_string()).collect();
        // Every ASCII byte, and each special at every position of runs of several lengths.
        cases.push((0u8..0x80).map(char::from).collect());
        for len in 0..20 {
            for special in [
                "\"", "\\", "\n", "\u{1}", "\u{1f}", "\u{7f}", "é", "\u{2028}",
            ] {
                for at in 0..=len {
                    let mut s = "x".repeat(len);
                    s.insert_str(at, special);
                    cases.push(s);
                }
            }
        }
        for s in &cases {
            let (mut fast, mut simple) = (Vec::new(), Vec::new());
            write_str(&mut fast, s);
            write_str_simple(&mut simple, s);
            assert_eq!(fast, simple, "{s:?}");
            // And it is the JSON string: parsed back, it is `s`.
            let line = format!("{{\"a\":{{\"S\":{}}}}}", String::from_utf8(fast).unwrap());
            let item = parse_item(line.as_bytes(), Shape::AttributeMap).unwrap();
            assert_eq!(item[0].1, Value::S(s.as_str().into()), "{s:?}");
        }
    }
}
