//! Typed errors of the core. Each refusal of input carries where it happened (line, byte
//! offset) and a short excerpt, so a reject record or an exception can point at the bad bytes.

use std::fmt;

/// Why an input line was refused. The snake_case names are the reason codes written to the
/// rejects and counted in the summary: keep them stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    InvalidJson,
    InvalidUtf8,
    NotAnItem,
    UnknownType,
    WrongValueType,
    InvalidNumber,
    InvalidBase64,
    EmptySet,
    DuplicateSetMember,
    InvalidNull,
    TooDeep,
    ItemTooLarge,
    DuplicateAttribute,
    EmptyAttributeName,
    AttributeNameTooLong,
    LineTooLong,
    /// A DynamoDB Streams record without the envelope DynamoDB writes (no `dynamodb` object,
    /// an unknown `eventName`, a time that is not epoch seconds, milliseconds or microseconds).
    NotARecord,
    // Refusals by a target, after parsing: the item is valid DynamoDB but cannot be imported.
    Unmatched,
    MissingKey,
    WrongKeyType,
    EmptyKey,
    KeyTooLong,
    TemplateMissingAttribute,
    TemplateType,
}

impl Reason {
    pub const ALL: [Reason; 24] = [
        Reason::InvalidJson,
        Reason::InvalidUtf8,
        Reason::NotAnItem,
        Reason::UnknownType,
        Reason::WrongValueType,
        Reason::InvalidNumber,
        Reason::InvalidBase64,
        Reason::EmptySet,
        Reason::DuplicateSetMember,
        Reason::InvalidNull,
        Reason::TooDeep,
        Reason::ItemTooLarge,
        Reason::DuplicateAttribute,
        Reason::EmptyAttributeName,
        Reason::AttributeNameTooLong,
        Reason::LineTooLong,
        Reason::NotARecord,
        Reason::Unmatched,
        Reason::MissingKey,
        Reason::WrongKeyType,
        Reason::EmptyKey,
        Reason::KeyTooLong,
        Reason::TemplateMissingAttribute,
        Reason::TemplateType,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::InvalidJson => "invalid_json",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::NotAnItem => "not_an_item",
            Reason::UnknownType => "unknown_type",
            Reason::WrongValueType => "wrong_value_type",
            Reason::InvalidNumber => "invalid_number",
            Reason::InvalidBase64 => "invalid_base64",
            Reason::EmptySet => "empty_set",
            Reason::DuplicateSetMember => "duplicate_set_member",
            Reason::InvalidNull => "invalid_null",
            Reason::TooDeep => "too_deep",
            Reason::ItemTooLarge => "item_too_large",
            Reason::DuplicateAttribute => "duplicate_attribute",
            Reason::EmptyAttributeName => "empty_attribute_name",
            Reason::AttributeNameTooLong => "attribute_name_too_long",
            Reason::LineTooLong => "line_too_long",
            Reason::NotARecord => "not_a_record",
            Reason::Unmatched => "unmatched",
            Reason::MissingKey => "missing_key",
            Reason::WrongKeyType => "wrong_key_type",
            Reason::EmptyKey => "empty_key",
            Reason::KeyTooLong => "key_too_long",
            Reason::TemplateMissingAttribute => "template_missing_attribute",
            Reason::TemplateType => "template_type",
        }
    }
}

/// A refused line: the rule broken, where, and what the bytes there looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub reason: Reason,
    pub message: String,
    /// 1-based line number in the input stream (0 when parsing a lone value).
    pub line: u64,
    /// Byte offset within the line.
    pub offset: usize,
    /// Up to 40 bytes of the input around `offset`, lossily decoded.
    pub excerpt: String,
}

impl ParseError {
    #[cold]
    pub fn new(reason: Reason, message: impl Into<String>, input: &[u8], offset: usize) -> Self {
        ParseError {
            reason,
            message: message.into(),
            line: 0,
            offset,
            excerpt: excerpt(input, offset),
        }
    }

    pub fn at_line(mut self, line: u64) -> Self {
        self.line = line;
        self
    }
}

/// Up to 40 bytes starting a little before `offset`, never splitting the output string.
#[cold]
pub fn excerpt(input: &[u8], offset: usize) -> String {
    let start = offset.saturating_sub(10).min(input.len());
    let end = (start + 40).min(input.len());
    String::from_utf8_lossy(&input[start..end]).into_owned()
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}, ", self.line)?;
        }
        write!(
            f,
            "byte {}: {} ({}) near {:?}",
            self.offset,
            self.message,
            self.reason.code(),
            self.excerpt
        )
    }
}

impl std::error::Error for ParseError {}

/// Everything else that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("corrupt or truncated compressed input: {0}")]
    Decompress(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// `unmatched = "error"`: an item matched no target and the run must stop.
    #[error("{0}")]
    Unmatched(String),
}
