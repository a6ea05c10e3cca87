//! The attribute-value grammar: the export line around an item, attribute maps, typed values
//! `{"T": v}` with DynamoDB's nesting limit, lists and sets.

use std::borrow::Cow;

use crate::error::Reason;
use crate::model::value::{Map, TypeTag, Value};

use super::duplicates::{first_duplicate, set_duplicate};
use super::layout::Entry;
use super::scanner::{Failure, PResult, Parser};
use super::{MAX_ATTRIBUTE_NAME_BYTES, MAX_DEPTH};

impl<'a> Parser<'a> {
    pub(super) fn export_line(&mut self) -> PResult<Map<'a>> {
        self.expect(b'{')?;
        self.ws();
        let key_at = self.pos;
        if self.peek() != Some(b'"') {
            return Err(self.not_an_item(key_at));
        }
        let key = self.string()?;
        if key != "Item" {
            return Err(self.err_at(
                key_at,
                Reason::NotAnItem,
                format!("an export line holds one \"Item\" object; found key {key:?}"),
            ));
        }
        self.expect(b':')?;
        let map = self.attr_map(0, true)?;
        self.ws();
        if self.peek() == Some(b',') {
            return Err(self.err(
                Reason::NotAnItem,
                "an export line holds only the \"Item\" object; found another key",
            ));
        }
        self.expect(b'}')?;
        self.end()?;
        Ok(map)
    }

    #[cold]
    fn not_an_item(&self, at: usize) -> Failure {
        if self.peek() == Some(b'}') {
            self.err_at(at, Reason::NotAnItem, "empty object: no \"Item\"")
        } else {
            self.unexpected("'\"'")
        }
    }

    pub(super) fn bare_map(&mut self) -> PResult<Map<'a>> {
        let map = self.attr_map(0, true)?;
        self.end()?;
        Ok(map)
    }

    /// An attribute map whose values sit at nesting level `level + 1`.
    pub(super) fn attr_map(&mut self, level: usize, top: bool) -> PResult<Map<'a>> {
        self.ws();
        let open = self.pos;
        self.expect(b'{')?;
        let start = self.pos;
        // Items have tens of attributes: start the top-level map at a size that rarely has to
        // grow (each growth is a reallocation and a copy of every entry so far).
        let mut map: Map<'a> = Vec::with_capacity(if top { 16 } else { 0 });
        self.ws();
        if self.eat(b'}') {
            if top {
                self.map_span = open..self.pos;
            }
            return Ok(map);
        }
        loop {
            self.ws();
            let name_at = self.pos;
            if self.peek() != Some(b'"') {
                return Err(self.unexpected("an attribute name"));
            }
            let name = self.string()?;
            if top && name.is_empty() {
                return Err(self.err_at(
                    name_at,
                    Reason::EmptyAttributeName,
                    "attribute names must be at least one character",
                ));
            }
            if top && name.len() > MAX_ATTRIBUTE_NAME_BYTES {
                return Err(self.err_at(
                    name_at,
                    Reason::AttributeNameTooLong,
                    "attribute names must be less than 64 KB (65,535 bytes of UTF-8)",
                ));
            }
            self.expect(b':')?;
            self.ws();
            let value_at = self.pos;
            map.push((name, Value::Null));
            let (_, slot) = map.last_mut().expect("just pushed");
            self.value_into(level + 1, slot)?;
            if top {
                if let Some(entries) = &mut self.entries {
                    entries.push(Entry {
                        name_at,
                        value: value_at..self.pos,
                    });
                }
            }
            self.ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b'}') {
                break;
            }
            return Err(self.unexpected("',' or '}'"));
        }
        if let Some(dup) = first_duplicate(map.iter().map(|(k, _)| k.as_ref())) {
            return Err(self.err_at(
                start,
                Reason::DuplicateAttribute,
                format!("attribute {dup:?} appears twice in one map"),
            ));
        }
        if top {
            self.map_span = open..self.pos;
        }
        Ok(map)
    }

    /// One typed value `{"T": v}` at nesting `level` (1 for a top-level attribute).
    pub(super) fn value(&mut self, level: usize) -> PResult<Value<'a>> {
        let mut v = Value::Null;
        self.value_into(level, &mut v)?;
        Ok(v)
    }

    /// `value`, written into `out` where it is to stay (a map entry or list element). Values
    /// are returned through memory; moving one afterwards reads back, in wider loads, bytes
    /// just written in narrower stores, which stalls the CPU (no store-to-load forwarding),
    /// and this is the parser's most frequent call.
    fn value_into(&mut self, level: usize, out: &mut Value<'a>) -> PResult<()> {
        let open = self.pos;
        if level > MAX_DEPTH {
            return Err(self.err(
                Reason::TooDeep,
                "nesting levels have exceeded DynamoDB's limit of 32",
            ));
        }
        if !self.eat(b'{') {
            return Err(match self.peek() {
                Some(b'"' | b'[' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => self.err(
                    Reason::WrongValueType,
                    "an attribute value must be an object like {\"S\":\"...\"}",
                ),
                _ => self.unexpected("an attribute value object"),
            });
        }
        self.ws();
        if self.peek() == Some(b'}') {
            return Err(self.err_at(
                open,
                Reason::UnknownType,
                "empty attribute value: one type key (S, N, B, BOOL, NULL, M, L, SS, NS, BS) is required",
            ));
        }
        let tag = match self.plain_tag() {
            Some(tag) => tag,
            None => self.tag()?,
        };
        self.ws();
        let v = match tag {
            TypeTag::S => Value::S(self.typed_string(tag)?),
            TypeTag::N => Value::N(self.number()?),
            TypeTag::B => Value::B(self.base64()?),
            TypeTag::Bool => Value::Bool(self.boolean(tag)?),
            TypeTag::Null => {
                if !self.boolean(tag)? {
                    return Err(self.err(
                        Reason::InvalidNull,
                        "NULL must be true: DynamoDB refuses {\"NULL\":false}",
                    ));
                }
                Value::Null
            }
            TypeTag::M => {
                // Checked here so that `{"M":[]}` is a wrong value type, like `{"L":{}}`, not
                // invalid JSON (attr_map's own '{' check cannot tell the two apart).
                if self.peek() != Some(b'{') {
                    return Err(self.err(Reason::WrongValueType, "M must be a JSON object"));
                }
                Value::M(self.attr_map(level, false)?)
            }
            TypeTag::L => Value::L(self.list(level)?),
            TypeTag::Ss => Value::Ss(self.set(tag, Parser::typed_string)?),
            TypeTag::Ns => Value::Ns(self.set(tag, |p, _| p.number())?),
            TypeTag::Bs => Value::Bs(self.set(tag, |p, _| p.base64())?),
        };
        // `out` holds the placeholder `Value::Null`, which owns nothing: forgetting it skips
        // the call to the drop glue that `*out = v` would make for every value.
        debug_assert!(matches!(out, Value::Null));
        std::mem::forget(std::mem::replace(out, v));
        self.ws();
        if self.peek() == Some(b',') {
            return Err(self.err(
                Reason::WrongValueType,
                "an attribute value has exactly one type key; found more than one",
            ));
        }
        self.expect(b'}')
    }

    /// The usual spelling of a type key, `"S":` and the like with nothing between the
    /// tokens, read in one comparison; anything else is left to `tag`.
    #[inline]
    fn plain_tag(&mut self) -> Option<TypeTag> {
        let rest = &self.b[self.pos..];
        // Spelled out byte by byte: the compiler turns this into a few compares and jumps.
        let (tag, len) = match rest {
            [b'"', b'S', b'"', b':', ..] => (TypeTag::S, 4),
            [b'"', b'N', b'"', b':', ..] => (TypeTag::N, 4),
            [b'"', b'B', b'"', b':', ..] => (TypeTag::B, 4),
            [b'"', b'M', b'"', b':', ..] => (TypeTag::M, 4),
            [b'"', b'L', b'"', b':', ..] => (TypeTag::L, 4),
            [b'"', b'S', b'S', b'"', b':', ..] => (TypeTag::Ss, 5),
            [b'"', b'N', b'S', b'"', b':', ..] => (TypeTag::Ns, 5),
            [b'"', b'B', b'S', b'"', b':', ..] => (TypeTag::Bs, 5),
            [b'"', b'B', b'O', b'O', b'L', b'"', b':', ..] => (TypeTag::Bool, 7),
            [b'"', b'N', b'U', b'L', b'L', b'"', b':', ..] => (TypeTag::Null, 7),
            _ => return None,
        };
        self.pos += len;
        Some(tag)
    }

    /// A type key and its colon, in any spelling JSON allows (escapes, whitespace).
    fn tag(&mut self) -> PResult<TypeTag> {
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("a type key"));
        }
        let tag_at = self.pos;
        let tag_text = self.string()?;
        let Some(tag) = TypeTag::from_bytes(tag_text.as_bytes()) else {
            return Err(self.err_at(
                tag_at,
                Reason::UnknownType,
                format!("unknown type {tag_text:?}: DynamoDB types are S, N, B, BOOL, NULL, M, L, SS, NS, BS"),
            ));
        };
        self.expect(b':')?;
        Ok(tag)
    }

    fn list(&mut self, level: usize) -> PResult<Vec<Value<'a>>> {
        if !self.eat(b'[') {
            return Err(self.err(Reason::WrongValueType, "L must be a JSON array"));
        }
        let mut items = Vec::new();
        self.ws();
        if self.eat(b']') {
            return Ok(items);
        }
        loop {
            self.ws();
            items.push(Value::Null);
            self.value_into(level + 1, items.last_mut().expect("just pushed"))?;
            self.ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b']') {
                return Ok(items);
            }
            return Err(self.unexpected("',' or ']'"));
        }
    }

    /// A string, number set or binary set: non-empty, members valid, no two members equal.
    fn set(
        &mut self,
        tag: TypeTag,
        member: impl Fn(&mut Self, TypeTag) -> PResult<Cow<'a, str>>,
    ) -> PResult<Vec<Cow<'a, str>>> {
        let open = self.pos;
        if !self.eat(b'[') {
            return Err(self.err(
                Reason::WrongValueType,
                format!("{} must be a JSON array of strings", tag.as_str()),
            ));
        }
        let mut members = Vec::new();
        self.ws();
        if !self.eat(b']') {
            loop {
                self.ws();
                members.push(member(self, tag)?);
                self.ws();
                if self.eat(b',') {
                    continue;
                }
                if self.eat(b']') {
                    break;
                }
                return Err(self.unexpected("',' or ']'"));
            }
        }
        if members.is_empty() {
            return Err(self.err_at(
                open,
                Reason::EmptySet,
                format!(
                    "{} is empty: DynamoDB does not allow empty sets",
                    tag.as_str()
                ),
            ));
        }
        if let Some(dup) = set_duplicate(tag, &members) {
            return Err(self.err_at(
                open,
                Reason::DuplicateSetMember,
                format!(
                    "{} holds {dup:?} twice: set members must be unique",
                    tag.as_str()
                ),
            ));
        }
        Ok(members)
    }
}
