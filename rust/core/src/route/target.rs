//! One target table: its routing condition, its transform, and the key check that keeps
//! ImportTable from failing on an item (ImportTable skips and counts such items as errors and
//! marks the whole import FAILED, so they are refused here, before they are written).

use crate::error::Reason;
use crate::model::binary;
use crate::model::number;
use crate::model::size;
use crate::model::value::{map_get, Map, TypeTag, Value};
use crate::output::serialize;
use crate::parse::{RawLine, MAX_ATTRIBUTE_NAME_BYTES};
use crate::route::expr::Condition;
use crate::route::transform::{TemplateError, Transform};

/// Key value limits (Developer Guide, "Constraints"): partition key 1..2048 bytes, sort key
/// 1..1024 bytes.
pub const MAX_HASH_KEY_BYTES: usize = 2048;
pub const MAX_RANGE_KEY_BYTES: usize = 1024;
/// Key attribute names (of the table and of its indexes) are 1..255 bytes
/// (KeySchemaElement.AttributeName in the DynamoDB API).
pub const MAX_KEY_NAME_BYTES: usize = 255;

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
    /// Refuses a target that would write attribute names DynamoDB refuses. An output item's
    /// names are the input item's (the parser refuses bad ones) or the ones `set` and `rename`
    /// write, which are fixed: so one check here, when the target is built, covers every item.
    /// (The config refuses them first, with its own message; this guards other callers.)
    pub fn check_names(&self) -> Result<(), String> {
        let written = self.transform.set.iter().map(|(n, _)| n.as_str());
        let renamed = self.transform.rename.iter().map(|(_, to)| to.as_str());
        for name in written.chain(renamed) {
            check_name(name, MAX_ATTRIBUTE_NAME_BYTES, "attribute")?;
        }
        let keys = std::iter::once(&self.hash_key)
            .chain(&self.range_key)
            .chain(&self.index_keys);
        for (name, _) in keys {
            check_name(name, MAX_KEY_NAME_BYTES, "key attribute")?;
        }
        Ok(())
    }

    pub fn matches(&self, item: &Map<'_>) -> bool {
        self.condition.as_ref().is_none_or(|c| c.eval(item))
    }

    /// Transforms `item`, checks the result, and appends its export line (with newline) to
    /// `out`. On refusal `out` is left as it was. `raw` is the input line when it is in
    /// canonical form: whatever the item keeps unchanged is then copied from it.
    pub fn write_line(
        &self,
        item: &Map<'_>,
        raw: Option<RawLine<'_>>,
        sets: &mut Vec<Value<'static>>,
        out: &mut Vec<u8>,
    ) -> Result<(), Refusal> {
        let start = out.len();
        if self.transform.is_identity() {
            self.check_keys(|name| map_get(item, name))?;
            match raw {
                // The line itself, unless it has whitespace or escapes of its own.
                Some(raw) => {
                    out.extend_from_slice(b"{\"Item\":");
                    out.extend_from_slice(raw.map());
                    out.push(b'}');
                }
                None => serialize::write_export_line(out, item),
            }
            return self.check_size(out, start, || size::item_size(item));
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
        self.check_keys(|name| attrs.iter().find(|a| a.name == name).map(|a| a.value))?;
        serialize::write_export_line_attrs(out, &attrs, raw);
        self.check_size(out, start, || {
            attrs
                .iter()
                .map(|a| a.name.len() + size::value_size(a.value))
                .sum()
        })
    }

    /// The table's key attributes and the index keys, looked up in the output item by `find`.
    fn check_keys<'v>(&self, find: impl Fn(&str) -> Option<&'v Value<'v>>) -> Result<(), Refusal> {
        let (hash, hash_type) = &self.hash_key;
        self.check_key(hash, *hash_type, find(hash), true, MAX_HASH_KEY_BYTES)?;
        if let Some((range, range_type)) = &self.range_key {
            self.check_key(range, *range_type, find(range), true, MAX_RANGE_KEY_BYTES)?;
        }
        for (name, t) in &self.index_keys {
            self.check_key(name, *t, find(name), false, MAX_HASH_KEY_BYTES)?;
        }
        Ok(())
    }

    /// Refuses the item written at `out[start..]` if it is over DynamoDB's item size limit
    /// (`stored_size` counts it exactly); otherwise ends the line.
    fn check_size(
        &self,
        out: &mut Vec<u8>,
        start: usize,
        stored_size: impl FnOnce() -> usize,
    ) -> Result<(), Refusal> {
        // The JSON text bounds the stored size from above; count exactly only when it might
        // be over the limit.
        if out.len() - start > size::MAX_ITEM_BYTES {
            let n = stored_size();
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

fn check_name(name: &str, max: usize, what: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > max {
        let shown: String = name.chars().take(20).collect();
        return Err(format!(
            "{what} name {shown:?}{} is {} bytes; DynamoDB allows 1 to {max}",
            if shown.len() < name.len() { "..." } else { "" },
            name.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_item_layout, Layout, Shape};
    use crate::route::transform::Template;

    fn target(transform: Transform) -> Target {
        Target {
            name: "T".into(),
            condition: None,
            transform,
            hash_key: ("pk".into(), TypeTag::S),
            range_key: None,
            index_keys: vec![],
            shards: 1,
        }
    }

    #[test]
    fn copying_a_canonical_line_writes_what_serializing_writes() {
        let targets = [
            target(Transform::default()),
            target(Transform {
                drop: vec!["n".into()],
                rename: vec![("m".into(), "renamed \"m\"".into())],
                set: vec![("gsi".into(), Template::parse("K#{pk}", &[]).unwrap())],
                ..Transform::default()
            }),
            target(Transform {
                keep: Some(vec!["pk".into(), "s".into()]),
                ..Transform::default()
            }),
        ];
        let lines = [
            r#"{"Item":{"pk":{"S":"a\"b"},"n":{"N":"1.50"},"m":{"M":{"x":{"L":[{"S":"\u0001"},{"NULL":true}]}}},"s":{"SS":["z","y\\"]}}}"#,
            r#"{"Item":{"pk":{"S":"é😀"},"b":{"BS":["AA=="]},"m":{"M":{}}}}"#,
            // Runs of attributes copied whole, broken by a dropped and a renamed one.
            r#"{"Item":{"pk":{"S":"k"},"a":{"N":"1"},"n":{"N":"2"},"b":{"BOOL":true},"c":{"L":[]},"m":{"NULL":true},"d":{"S":"\""},"s":{"S":""}}}"#,
            // Not canonical: written by the serializer instead, the same either way.
            r#"{"Item": {"pk":{"S":"\u00e9"},"s":{"S":"\/"}}}"#,
        ];
        let mut layout = Layout::default();
        let mut sets = Vec::new();
        for line in lines {
            let item = parse_item_layout(line.as_bytes(), Shape::ExportLine, &mut layout).unwrap();
            for t in &targets {
                let (mut copied, mut serialized) = (Vec::new(), Vec::new());
                let raw = layout.raw_line(line.as_bytes());
                assert_eq!(raw.is_some(), !line.contains(' '), "{line}");
                t.write_line(&item, raw, &mut sets, &mut copied).unwrap();
                t.write_line(&item, None, &mut sets, &mut serialized)
                    .unwrap();
                assert_eq!(
                    String::from_utf8(copied).unwrap(),
                    String::from_utf8(serialized).unwrap()
                );
            }
        }
        // An identity target copies a canonical line as it is.
        let mut out = Vec::new();
        let item = parse_item_layout(lines[0].as_bytes(), Shape::ExportLine, &mut layout).unwrap();
        let raw = layout.raw_line(lines[0].as_bytes());
        assert!(raw.is_some());
        targets[0]
            .write_line(&item, raw, &mut sets, &mut out)
            .unwrap();
        assert_eq!(out, format!("{}\n", lines[0]).as_bytes());
    }

    #[test]
    fn names_dynamodb_refuses_are_refused_when_the_target_is_built() {
        let set = |name: &str| Transform {
            set: vec![(name.into(), Template::parse("x", &[]).unwrap())],
            ..Transform::default()
        };
        let rename = |to: String| Transform {
            rename: vec![("a".into(), to)],
            ..Transform::default()
        };
        assert!(target(set("")).check_names().is_err());
        assert!(target(rename("n".repeat(65_536))).check_names().is_err());
        assert!(target(rename("n".repeat(65_535))).check_names().is_ok());
        assert!(target(set(&"é".repeat(32_768))).check_names().is_err());
        let mut t = target(Transform::default());
        t.hash_key.0 = "k".repeat(256);
        let e = t.check_names().unwrap_err();
        assert!(e.contains("256 bytes") && e.contains("1 to 255"), "{e}");
        t.hash_key.0 = "k".repeat(255);
        t.index_keys = vec![(String::new(), TypeTag::S)];
        assert!(t.check_names().is_err());
        t.index_keys.clear();
        assert!(t.check_names().is_ok());
    }

    #[test]
    fn key_checks_apply_to_copied_lines() {
        let line = r#"{"Item":{"pk":{"N":"1"}}}"#;
        let mut layout = Layout::default();
        let item = parse_item_layout(line.as_bytes(), Shape::ExportLine, &mut layout).unwrap();
        let raw = layout.raw_line(line.as_bytes());
        assert!(raw.is_some());
        let mut out = Vec::new();
        let err = target(Transform::default())
            .write_line(&item, raw, &mut Vec::new(), &mut out)
            .unwrap_err();
        assert_eq!(err.reason, Reason::WrongKeyType);
        assert!(out.is_empty());
    }
}
