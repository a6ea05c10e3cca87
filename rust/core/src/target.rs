//! One target table: its routing condition, its transform, and the key check that keeps
//! ImportTable from failing on an item (ImportTable skips and counts such items as errors and
//! marks the whole import FAILED, so they are refused here, before they are written).

use crate::binary;
use crate::error::Reason;
use crate::expr::Condition;
use crate::number;
use crate::serialize;
use crate::size;
use crate::transform::{TemplateError, Transform};
use crate::value::{Map, TypeTag, Value};

/// Key value limits (Developer Guide, "Constraints"): partition key 1..2048 bytes, sort key
/// 1..1024 bytes.
pub const MAX_HASH_KEY_BYTES: usize = 2048;
pub const MAX_RANGE_KEY_BYTES: usize = 1024;

#[derive(Debug)]
pub struct Target {
    pub name: String,
    pub condition: Option<Condition>,
    pub transform: Transform,
    pub hash_key: (String, TypeTag),
    pub range_key: Option<(String, TypeTag)>,
    /// GSI key attributes that are not table keys: optional per item, but when present they
    /// must have the declared type and not be empty (DynamoDB refuses empty index keys).
    pub index_keys: Vec<(String, TypeTag)>,
    pub shards: usize,
}

/// A target's refusal of an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub message: String,
}

#[cold]
fn refuse(reason: Reason, message: String) -> Refusal {
    Refusal { reason, message }
}

impl Target {
    pub fn matches(&self, item: &Map<'_>) -> bool {
        self.condition.as_ref().is_none_or(|c| c.eval(item))
    }

    /// Transforms `item`, checks the result, and appends its export line (with newline) to
    /// `out`. On refusal `out` is left as it was.
    pub fn write_line(
        &self,
        item: &Map<'_>,
        sets: &mut Vec<Value<'static>>,
        out: &mut Vec<u8>,
    ) -> Result<(), Refusal> {
        if self.transform.is_identity() {
            let attrs: Vec<(&str, &Value<'_>)> =
                item.iter().map(|(k, v)| (k.as_ref(), v)).collect();
            return self.check_and_write(&attrs, out);
        }
        self.transform
            .render_sets(item, sets)
            .map_err(|e| match e {
                TemplateError::Missing(p) => refuse(
                    Reason::TemplateMissingAttribute,
                    format!(
                        "target {}: template needs attribute {p:?}, which the item lacks",
                        self.name
                    ),
                ),
                TemplateError::Type(p, t) => refuse(
                    Reason::TemplateType,
                    format!(
                        "target {}: template attribute {p:?} is {}, not S, N, B or BOOL",
                        self.name,
                        t.as_str()
                    ),
                ),
            })?;
        let mut attrs = Vec::with_capacity(item.len() + self.transform.set.len());
        self.transform.project(item, sets, &mut attrs);
        self.check_and_write(&attrs, out)
    }

    fn check_and_write(
        &self,
        attrs: &[(&str, &Value<'_>)],
        out: &mut Vec<u8>,
    ) -> Result<(), Refusal> {
        let find = |n: &str| attrs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        let (hash, hash_type) = &self.hash_key;
        self.check_key(hash, *hash_type, find(hash), true, MAX_HASH_KEY_BYTES)?;
        if let Some((range, range_type)) = &self.range_key {
            self.check_key(range, *range_type, find(range), true, MAX_RANGE_KEY_BYTES)?;
        }
        for (name, t) in &self.index_keys {
            self.check_key(name, *t, find(name), false, MAX_HASH_KEY_BYTES)?;
        }
        let start = out.len();
        serialize::write_export_line_attrs(out, attrs);
        // The JSON text bounds the stored size from above; count exactly only when it might
        // be over the limit.
        if out.len() - start > size::MAX_ITEM_BYTES {
            let n: usize = attrs
                .iter()
                .map(|(k, v)| k.len() + size::value_size(v))
                .sum();
            if n > size::MAX_ITEM_BYTES {
                out.truncate(start);
                return Err(refuse(
                    Reason::ItemTooLarge,
                    format!(
                        "target {}: item is {n} bytes after transforms, over 400 KB",
                        self.name
                    ),
                ));
            }
        }
        out.push(b'\n');
        Ok(())
    }

    fn check_key(
        &self,
        name: &str,
        want: TypeTag,
        value: Option<&Value<'_>>,
        required: bool,
        max_bytes: usize,
    ) -> Result<(), Refusal> {
        let Some(value) = value else {
            if required {
                return Err(refuse(
                    Reason::MissingKey,
                    format!("target {}: key attribute {name:?} is missing", self.name),
                ));
            }
            return Ok(());
        };
        if value.type_tag() != want {
            return Err(refuse(
                Reason::WrongKeyType,
                format!(
                    "target {}: key attribute {name:?} is {}, the table declares {}",
                    self.name,
                    value.type_tag().as_str(),
                    want.as_str()
                ),
            ));
        }
        let len = match value {
            Value::S(s) => s.len(),
            Value::B(b) => binary::decoded_len(b).unwrap_or(0),
            Value::N(n) => number::check(n).map(|d| d.stored_size()).unwrap_or(0),
            _ => 0,
        };
        if len == 0 && !matches!(value, Value::N(_)) {
            return Err(refuse(
                Reason::EmptyKey,
                format!("target {}: key attribute {name:?} is empty", self.name),
            ));
        }
        if len > max_bytes {
            return Err(refuse(
                Reason::KeyTooLong,
                format!(
                    "target {}: key attribute {name:?} is {len} bytes, over DynamoDB's {max_bytes}",
                    self.name
                ),
            ));
        }
        Ok(())
    }
}
