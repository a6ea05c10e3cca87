//! The front of the data path: compressed chunks in, parsed items (or refusals) out.
//! Ties `decode`, `lines` and `parse` together and numbers every line, so whatever consumes the
//! items (validation, split, Parquet) sees the same lines with the same line numbers.

use crate::error::{Error, ParseError, Reason};
use crate::input::decode::Decoder;
use crate::input::lines::{Line, LineSplitter};
use crate::model::value::Map;
use crate::parse::{parse_item_layout, Layout, Shape};

/// What the consumer is handed for each non-blank line.
pub struct LineEvent<'a, 'l> {
    /// 1-based physical line number in the decompressed stream.
    pub line_no: u64,
    /// The raw line (for an over-long line, only its first bytes).
    pub raw: &'l [u8],
    pub item: Result<Map<'a>, ParseError>,
    /// Where the item's parts sit in `raw`, and whether `raw` is canonical (see `Layout`).
    pub layout: &'l Layout,
}

pub struct LineReader {
    decoder: Decoder,
    splitter: LineSplitter,
    shape: Shape,
    bytes_out: u64,
    /// Reused for every line.
    layout: Layout,
}

impl LineReader {
    pub fn new(shape: Shape) -> Self {
        LineReader {
            decoder: Decoder::new(),
            splitter: LineSplitter::default(),
            shape,
            bytes_out: 0,
            layout: Layout::default(),
        }
    }

    pub fn with_max_line(shape: Shape, max_line: usize) -> Self {
        LineReader {
            splitter: LineSplitter::new(max_line),
            ..LineReader::new(shape)
        }
    }

    /// Compressed bytes fed so far.
    pub fn bytes_in(&self) -> u64 {
        self.decoder.bytes_in()
    }

    /// Decompressed bytes seen so far.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    pub fn lines_seen(&self) -> u64 {
        self.splitter.lines_seen()
    }

    pub fn feed(
        &mut self,
        data: &[u8],
        on_line: &mut impl FnMut(LineEvent<'_, '_>),
    ) -> Result<(), Error> {
        let shape = self.shape;
        let splitter = &mut self.splitter;
        let bytes_out = &mut self.bytes_out;
        let layout = &mut self.layout;
        self.decoder.feed(data, &mut |piece| {
            *bytes_out += piece.len() as u64;
            splitter.feed(piece, &mut |n, line| {
                dispatch(shape, n, line, layout, on_line)
            });
        })
    }

    /// Ends the input: flushes a last line without newline, and fails on a truncated stream.
    pub fn finish(&mut self, on_line: &mut impl FnMut(LineEvent<'_, '_>)) -> Result<(), Error> {
        let shape = self.shape;
        let splitter = &mut self.splitter;
        let bytes_out = &mut self.bytes_out;
        let layout = &mut self.layout;
        self.decoder.finish(&mut |piece| {
            *bytes_out += piece.len() as u64;
            splitter.feed(piece, &mut |n, line| {
                dispatch(shape, n, line, layout, on_line)
            });
        })?;
        splitter.finish(&mut |n, line| dispatch(shape, n, line, layout, on_line));
        Ok(())
    }
}

fn dispatch(
    shape: Shape,
    n: u64,
    line: Line<'_>,
    layout: &mut Layout,
    on_line: &mut impl FnMut(LineEvent<'_, '_>),
) {
    match line {
        Line::Text(raw) => {
            let item = parse_item_layout(raw, shape, layout).map_err(|e| e.at_line(n));
            on_line(LineEvent {
                line_no: n,
                raw,
                item,
                layout,
            });
        }
        Line::TooLong { head, len } => {
            let err = ParseError::new(
                Reason::LineTooLong,
                format!("line is {len} bytes, longer than any item DynamoDB can hold"),
                head,
                0,
            )
            .at_line(n);
            layout.canonical = false;
            on_line(LineEvent {
                line_no: n,
                raw: head,
                item: Err(err),
                layout,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_lines_and_reports_refusals() {
        let data = b"{\"Item\":{\"a\":{\"S\":\"x\"}}}\r\n\n{\"Item\":{\"a\":{\"N\":\"NaN\"}}}\n{\"Item\":{}}";
        let mut r = LineReader::new(Shape::ExportLine);
        let mut seen = Vec::new();
        let mut f = |e: LineEvent<'_, '_>| {
            seen.push((e.line_no, e.item.map(|m| m.len()).map_err(|e| e.reason)))
        };
        for c in data.chunks(5) {
            r.feed(c, &mut f).unwrap();
        }
        r.finish(&mut f).unwrap();
        assert_eq!(
            seen,
            vec![(1, Ok(1)), (3, Err(Reason::InvalidNumber)), (4, Ok(0))]
        );
    }
}
