//! The payloads of scalar values: S text, N numbers and B base64 (checked against the model's
//! rules), and the true/false of BOOL and NULL.

use std::borrow::Cow;

use crate::error::Reason;
use crate::model::value::TypeTag;
use crate::model::{binary, number};

use super::scanner::{PResult, Parser};

impl<'a> Parser<'a> {
    pub(super) fn typed_string(&mut self, tag: TypeTag) -> PResult<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            return Err(self.err(
                Reason::WrongValueType,
                format!("{} values must be JSON strings", tag.as_str()),
            ));
        }
        self.string()
    }

    pub(super) fn number(&mut self) -> PResult<Cow<'a, str>> {
        let at = self.pos;
        if self.peek() != Some(b'"') {
            return Err(self.err(
                Reason::WrongValueType,
                "numbers are written as strings in DynamoDB JSON, like {\"N\":\"42\"}",
            ));
        }
        let text = self.string()?;
        if let Err(e) = number::validate(&text) {
            return Err(self.err_at(
                at,
                Reason::InvalidNumber,
                format!("invalid number {:?}: {}", truncate(&text), e.message()),
            ));
        }
        Ok(text)
    }

    pub(super) fn base64(&mut self) -> PResult<Cow<'a, str>> {
        let at = self.pos;
        if self.peek() != Some(b'"') {
            return Err(self.err(Reason::WrongValueType, "binary values are base64 strings"));
        }
        let text = self.string()?;
        if let Err(e) = binary::decoded_len(&text) {
            return Err(self.err_at(at, Reason::InvalidBase64, e));
        }
        Ok(text)
    }

    pub(super) fn boolean(&mut self, tag: TypeTag) -> PResult<bool> {
        let rest = &self.b[self.pos..];
        if rest.starts_with(b"true") {
            self.pos += 4;
            Ok(true)
        } else if rest.starts_with(b"false") {
            self.pos += 5;
            Ok(false)
        } else {
            Err(self.err(
                Reason::WrongValueType,
                format!("{} takes a JSON true or false", tag.as_str()),
            ))
        }
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(48) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
