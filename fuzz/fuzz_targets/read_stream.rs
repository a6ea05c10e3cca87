//! Any bytes as a (possibly compressed) input stream, fed in uneven chunks: the reader must
//! report every line or refuse the stream, never panic.
#![no_main]

use ddbshard_core::input::reader::LineReader;
use ddbshard_core::Shape;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reader = LineReader::with_max_line(Shape::ExportLine, 4096);
    let mut lines = 0u64;
    let mut on_line = |_: ddbshard_core::input::reader::LineEvent<'_, '_>| lines += 1;
    let cut = data.first().map_or(1, |&b| b as usize + 1);
    for chunk in data.chunks(cut) {
        if reader.feed(chunk, &mut on_line).is_err() {
            return;
        }
    }
    let _ = reader.finish(&mut on_line);
});
