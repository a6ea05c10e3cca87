//! JSON strings: borrowed from the line when they have no escapes, decoded when they do, with
//! `\uXXXX` surrogate pairs; an escape the serializer would not write makes the line
//! non-canonical.

use std::borrow::Cow;

use crate::error::Reason;
use crate::model::escape::{escape_bytes, find_special, is_special};

use super::scanner::{Failure, PResult, Parser};

impl<'a> Parser<'a> {
    /// A JSON string at `pos` (which holds the opening quote). Borrowed when it has no escapes.
    pub(super) fn string(&mut self) -> PResult<Cow<'a, str>> {
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
