//! Any bytes through the line parser: it must return an item or a refusal, never panic, and
//! what it accepts must serialize and parse back to the same item. When the parser reports the
//! line canonical, the bytes split copies instead of serializing (the attribute map and each
//! top-level value) must be exactly what the serializer writes.
#![no_main]

use ddbshard_core::output::serialize::{write_export_line, write_map, write_value};
use ddbshard_core::parse::{parse_item_layout, Layout};
use ddbshard_core::{parse_item, Shape};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut layout = Layout::default();
    for shape in [Shape::ExportLine, Shape::AttributeMap, Shape::Any] {
        let parsed = parse_item(data, shape);
        assert_eq!(parse_item_layout(data, shape, &mut layout), parsed);
        let Ok(item) = parsed else {
            assert!(!layout.canonical);
            continue;
        };
        let mut out = Vec::new();
        write_export_line(&mut out, &item);
        let again = parse_item(&out, Shape::ExportLine).expect("own output parses");
        assert_eq!(again, item);
        if let Some(raw) = layout.raw_line(data) {
            out.clear();
            write_map(&mut out, &item);
            assert_eq!(raw.map(), &out[..]);
            for (i, (_, v)) in item.iter().enumerate() {
                out.clear();
                write_value(&mut out, v);
                assert_eq!(raw.value(i), &out[..]);
            }
        }
    }
});
