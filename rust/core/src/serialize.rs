//! Writes items back as compact DynamoDB JSON: `{"Item":{...}}` export lines or bare maps.
//! Numbers and binaries are written as the text they were read as; strings are escaped the
//! way JSON requires and nothing more (non-ASCII stays raw UTF-8, as AWS exports write it).

use crate::value::{Map, Value};

/// Appends `{"Item":{...}}` (no newline).
pub fn write_export_line(out: &mut Vec<u8>, item: &Map<'_>) {
    out.extend_from_slice(b"{\"Item\":");
    write_map(out, item);
    out.push(b'}');
}

/// Appends `{"Item":{...}}` for an item given as (name, value) pairs (a transform's output).
pub fn write_export_line_attrs(out: &mut Vec<u8>, attrs: &[(&str, &Value<'_>)]) {
    out.extend_from_slice(b"{\"Item\":{");
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_value(out, v);
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

/// A JSON string literal. Fast path: copy runs of bytes that need no escape.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    let mut run = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&b[run..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(c >> 4) as usize]);
            out.push(HEX[(c & 15) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        run = i + 1;
    }
    out.extend_from_slice(&b[run..]);
    out.push(b'"');
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
}
