//! Splits a decompressed byte stream, arriving in chunks of any size, into lines.
//!
//! Complete lines inside a chunk are handed out as slices of the chunk (no copy); only a line
//! that straddles two chunks is assembled in a carry buffer. A line longer than `max_line` is
//! not buffered: its first bytes are kept for the reject record and the rest is skipped, so
//! memory stays bounded whatever the input. CRLF endings, blank lines and a missing final
//! newline are all accepted (ImportTable ignores blank lines too). A blank line holds only
//! JSON's whitespace (space, tab, CR; RFC 8259): a line of a form feed or other control
//! characters is a bad line like any other, refused with its number rather than skipped.

use memchr::memchr;

/// Longest line kept whole. A valid item is at most 400 KB stored; its JSON text can be a few
/// times that with escapes, so 8 MiB refuses nothing DynamoDB would accept.
pub const DEFAULT_MAX_LINE: usize = 8 << 20;
/// Bytes of an over-long line kept for the reject record.
const TOO_LONG_HEAD: usize = 256;

/// One line handed to the consumer.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A non-blank line without its terminator.
    Text(&'a [u8]),
    /// A line over the limit: its first bytes and its full length.
    TooLong { head: &'a [u8], len: u64 },
}

pub struct LineSplitter {
    carry: Vec<u8>,
    /// Set while skipping the rest of an over-long line; `carry` then holds its head.
    overflow_len: Option<u64>,
    line_no: u64,
    max_line: usize,
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LINE)
    }
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        LineSplitter {
            carry: Vec::new(),
            overflow_len: None,
            line_no: 0,
            max_line,
        }
    }

    /// Number of lines completed so far (blank ones included).
    pub fn lines_seen(&self) -> u64 {
        self.line_no
    }

    /// Feeds a chunk; `on_line` gets each completed non-blank line with its 1-based number.
    pub fn feed(&mut self, mut chunk: &[u8], on_line: &mut impl FnMut(u64, Line<'_>)) {
        while !chunk.is_empty() {
            match memchr(b'\n', chunk) {
                Some(i) => {
                    let part = &chunk[..i];
                    chunk = &chunk[i + 1..];
                    self.line_no += 1;
                    self.end_line(part, on_line);
                }
                None => {
                    self.keep_partial(chunk);
                    break;
                }
            }
        }
    }

    /// Ends the stream: a last line without a newline is handed out.
    pub fn finish(&mut self, on_line: &mut impl FnMut(u64, Line<'_>)) {
        if !self.carry.is_empty() || self.overflow_len.is_some() {
            self.line_no += 1;
            self.end_line(&[], on_line);
        }
    }

    fn keep_partial(&mut self, part: &[u8]) {
        if let Some(len) = self.overflow_len.as_mut() {
            *len += part.len() as u64;
        } else if self.carry.len() + part.len() > self.max_line {
            let len = (self.carry.len() + part.len()) as u64;
            let need = TOO_LONG_HEAD.saturating_sub(self.carry.len());
            self.carry.extend_from_slice(&part[..need.min(part.len())]);
            self.carry.truncate(TOO_LONG_HEAD);
            self.carry.shrink_to(TOO_LONG_HEAD);
            self.overflow_len = Some(len);
        } else {
            self.carry.extend_from_slice(part);
        }
    }

    fn end_line(&mut self, part: &[u8], on_line: &mut impl FnMut(u64, Line<'_>)) {
        let n = self.line_no;
        if let Some(len) = self.overflow_len.take() {
            let len = len + part.len() as u64;
            on_line(
                n,
                Line::TooLong {
                    head: &self.carry,
                    len,
                },
            );
            self.carry.clear();
        } else if self.carry.is_empty() {
            emit(n, part, self.max_line, on_line);
        } else {
            self.carry.extend_from_slice(part);
            emit(n, &self.carry, self.max_line, on_line);
            self.carry.clear();
        }
    }
}

fn emit(n: u64, line: &[u8], max: usize, on_line: &mut impl FnMut(u64, Line<'_>)) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > max {
        let head = &line[..TOO_LONG_HEAD.min(line.len())];
        on_line(
            n,
            Line::TooLong {
                head,
                len: line.len() as u64,
            },
        );
    } else if !line.iter().all(|&c| is_json_whitespace(c)) {
        on_line(n, Line::Text(line));
    }
}

/// Not `u8::is_ascii_whitespace`, which takes a form feed for whitespace too.
fn is_json_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<(u64, String)> {
        let mut s = LineSplitter::new(max);
        let mut got = Vec::new();
        let mut f = |n: u64, l: Line<'_>| {
            got.push((
                n,
                match l {
                    Line::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    Line::TooLong { head, len } => format!("LONG {len} {}", head.len()),
                },
            ))
        };
        for c in chunks {
            s.feed(c, &mut f);
        }
        s.finish(&mut f);
        got
    }

    #[test]
    fn splits_across_chunks_with_crlf_and_blanks() {
        let got = split(&[b"a\r\nb", b"c\n\n  \r\n", b"d"], 100);
        assert_eq!(
            got,
            vec![(1, "a".into()), (2, "bc".into()), (5, "d".into())]
        );
    }

    #[test]
    fn only_json_whitespace_makes_a_line_blank() {
        let got = split(&[b" \t\r\n\x0c\n \x0b \n\x00\n\t\x1c\r\nok"], 100);
        let want = [
            (2, "\x0c"),
            (3, " \x0b "),
            (4, "\x00"),
            (5, "\t\x1c"),
            (6, "ok"),
        ];
        assert_eq!(got, want.map(|(n, s)| (n, s.to_string())).to_vec());
    }

    #[test]
    fn every_chunking_gives_the_same_lines() {
        let data = b"one\r\ntwo\n\nthree\nfour";
        let whole = split(&[data], 100);
        for cut in 0..data.len() {
            let (a, b) = data.split_at(cut);
            assert_eq!(split(&[a, b], 100), whole, "cut at {cut}");
        }
    }

    #[test]
    fn over_long_lines_are_reported_not_buffered() {
        let long = vec![b'x'; 1000];
        let got = split(&[&long[..300], &long[300..], b"\nok\n"], 100);
        assert_eq!(got, vec![(1, "LONG 1000 256".into()), (2, "ok".into())]);
        let got = split(&[&long, b"\nok"], 100);
        assert_eq!(got, vec![(1, "LONG 1000 256".into()), (2, "ok".into())]);
    }
}
