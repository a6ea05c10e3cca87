//! Where the parts of a parsed line sit, and the line in the serializer's own form (`RawLine`)
//! that split copies from instead of serializing the parsed item again.

use std::ops::Range;

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

#[cfg(test)]
mod tests {
    use crate::output::serialize::{write_export_line, write_map, write_str, write_value};
    use crate::parse::{parse_item, parse_item_layout, Layout, Shape};

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
}
