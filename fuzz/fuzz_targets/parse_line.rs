//! Any bytes through the line parser: it must return an item or a refusal, never panic, and
//! what it accepts must serialize and parse back to the same item.
#![no_main]

use ddbshard_core::serialize::write_export_line;
use ddbshard_core::{parse_item, Shape};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for shape in [Shape::ExportLine, Shape::AttributeMap, Shape::Any] {
        if let Ok(item) = parse_item(data, shape) {
            let mut out = Vec::new();
            write_export_line(&mut out, &item);
            let again = parse_item(&out, Shape::ExportLine).expect("own output parses");
            assert_eq!(again, item);
        }
    }
});
