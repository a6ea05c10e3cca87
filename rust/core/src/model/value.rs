//! The in-memory form of one DynamoDB item: attribute values borrowed from the input line.
//!
//! Strings are `Cow`: borrowed straight from the line when the JSON had no escapes (the usual
//! case), owned only when an escape had to be decoded. Numbers and binaries keep the text they
//! were written as (decimal text, base64 text): a number never goes through a float, and a binary
//! is re-emitted without a decode/encode round trip. Maps keep their input order.

use std::borrow::Cow;

/// Attribute name → value, in input order. Items have tens of attributes, so a Vec with linear
/// lookup beats a hash map and keeps the order the export wrote.
pub type Map<'a> = Vec<(Cow<'a, str>, Value<'a>)>;

/// The ten DynamoDB types.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    S(Cow<'a, str>),
    /// Decimal text exactly as written; validated against DynamoDB's number rules.
    N(Cow<'a, str>),
    /// Base64 text exactly as written; validated as standard padded base64.
    B(Cow<'a, str>),
    Bool(bool),
    Null,
    M(Map<'a>),
    L(Vec<Value<'a>>),
    Ss(Vec<Cow<'a, str>>),
    Ns(Vec<Cow<'a, str>>),
    Bs(Vec<Cow<'a, str>>),
}

/// The type tags as they appear on the wire, in `attribute_type` spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypeTag {
    S,
    N,
    B,
    Bool,
    Null,
    M,
    L,
    Ss,
    Ns,
    Bs,
}

impl TypeTag {
    pub const ALL: [TypeTag; 10] = [
        TypeTag::S,
        TypeTag::N,
        TypeTag::B,
        TypeTag::Bool,
        TypeTag::Null,
        TypeTag::M,
        TypeTag::L,
        TypeTag::Ss,
        TypeTag::Ns,
        TypeTag::Bs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TypeTag::S => "S",
            TypeTag::N => "N",
            TypeTag::B => "B",
            TypeTag::Bool => "BOOL",
            TypeTag::Null => "NULL",
            TypeTag::M => "M",
            TypeTag::L => "L",
            TypeTag::Ss => "SS",
            TypeTag::Ns => "NS",
            TypeTag::Bs => "BS",
        }
    }

    pub fn from_bytes(tag: &[u8]) -> Option<TypeTag> {
        Some(match tag {
            b"S" => TypeTag::S,
            b"N" => TypeTag::N,
            b"B" => TypeTag::B,
            b"BOOL" => TypeTag::Bool,
            b"NULL" => TypeTag::Null,
            b"M" => TypeTag::M,
            b"L" => TypeTag::L,
            b"SS" => TypeTag::Ss,
            b"NS" => TypeTag::Ns,
            b"BS" => TypeTag::Bs,
            _ => return None,
        })
    }
}

impl<'a> Value<'a> {
    pub fn type_tag(&self) -> TypeTag {
        match self {
            Value::S(_) => TypeTag::S,
            Value::N(_) => TypeTag::N,
            Value::B(_) => TypeTag::B,
            Value::Bool(_) => TypeTag::Bool,
            Value::Null => TypeTag::Null,
            Value::M(_) => TypeTag::M,
            Value::L(_) => TypeTag::L,
            Value::Ss(_) => TypeTag::Ss,
            Value::Ns(_) => TypeTag::Ns,
            Value::Bs(_) => TypeTag::Bs,
        }
    }

    /// A copy that owns all its text, for values that must outlive the input line.
    pub fn into_owned(self) -> Value<'static> {
        fn own(s: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(s.into_owned())
        }
        fn own_all(v: Vec<Cow<'_, str>>) -> Vec<Cow<'static, str>> {
            v.into_iter().map(own).collect()
        }
        match self {
            Value::S(s) => Value::S(own(s)),
            Value::N(s) => Value::N(own(s)),
            Value::B(s) => Value::B(own(s)),
            Value::Bool(b) => Value::Bool(b),
            Value::Null => Value::Null,
            Value::M(m) => Value::M(map_into_owned(m)),
            Value::L(l) => Value::L(l.into_iter().map(Value::into_owned).collect()),
            Value::Ss(v) => Value::Ss(own_all(v)),
            Value::Ns(v) => Value::Ns(own_all(v)),
            Value::Bs(v) => Value::Bs(own_all(v)),
        }
    }
}

/// A copy of a map that owns all its text.
pub fn map_into_owned(m: Map<'_>) -> Map<'static> {
    m.into_iter()
        .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
        .collect()
}

/// Looks up a top-level or nested map entry by name.
pub fn map_get<'m, 'a>(map: &'m Map<'a>, name: &str) -> Option<&'m Value<'a>> {
    map.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}
