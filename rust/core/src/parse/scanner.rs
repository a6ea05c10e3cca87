//! The parser's cursor over one line: position, whitespace, punctuation, and the errors that
//! point at a byte of the line.

use std::ops::Range;

use crate::error::{ParseError, Reason};

use super::layout::Entry;

/// The parser's error: boxed, so that the `Result`s passed up through every value of every
/// item are no bigger than the values themselves (errors are rare, values are not).
pub(super) type Failure = Box<ParseError>;
pub(super) type PResult<T> = Result<T, Failure>;

pub(super) struct Parser<'a> {
    pub(super) text: &'a str,
    pub(super) b: &'a [u8],
    pub(super) pos: usize,
    /// No whitespace skipped and no escape unlike `serialize`'s so far (see `Layout`).
    pub(super) canonical: bool,
    /// Where top-level values are recorded, when a layout is wanted.
    pub(super) entries: Option<Vec<Entry>>,
    /// The top-level attribute map, once read.
    pub(super) map_span: Range<usize>,
}

impl<'a> Parser<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Parser {
            text,
            b: text.as_bytes(),
            pos: 0,
            canonical: true,
            entries: None,
            map_span: 0..0,
        }
    }

    #[cold]
    pub(super) fn err(&self, reason: Reason, msg: impl Into<String>) -> Failure {
        Box::new(ParseError::new(reason, msg, self.b, self.pos))
    }

    #[cold]
    pub(super) fn err_at(&self, pos: usize, reason: Reason, msg: impl Into<String>) -> Failure {
        Box::new(ParseError::new(reason, msg, self.b, pos))
    }

    #[inline]
    pub(super) fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[inline]
    pub(super) fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
            self.canonical = false;
        }
    }

    #[inline]
    pub(super) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// `c`, after optional whitespace. Inlined for the usual case of `c` right here.
    #[inline]
    pub(super) fn expect(&mut self, c: u8) -> PResult<()> {
        if self.eat(c) {
            return Ok(());
        }
        self.ws();
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{}'", c as char)))
        }
    }

    #[cold]
    pub(super) fn unexpected(&self, wanted: &str) -> Failure {
        match self.peek() {
            None => self.err(
                Reason::InvalidJson,
                format!("line ends where {wanted} was expected"),
            ),
            Some(c) => self.err(
                Reason::InvalidJson,
                format!("expected {wanted}, found '{}'", c.escape_ascii()),
            ),
        }
    }

    pub(super) fn end(&mut self) -> PResult<()> {
        self.ws();
        if self.pos == self.b.len() {
            Ok(())
        } else {
            Err(self.err(Reason::InvalidJson, "unexpected characters after the item"))
        }
    }
}
