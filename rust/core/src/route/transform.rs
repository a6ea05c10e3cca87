//! Per-target reshaping of an item: `keep` (projection), `drop`, `rename`, and `set` (new
//! string attributes from templates such as `"USER#{user_id}"`).
//!
//! The output is a list of references into the input item plus the few values the templates
//! made, so reshaping copies no attribute values. Names in keep/drop/rename are input names.
//! When two output attributes would share a name, `set` wins over `rename`, and `rename` over
//! an original attribute of that name: an item never carries one name twice.

use std::borrow::Cow;

use crate::model::value::{Map, TypeTag, Value};
use crate::route::expr::DocPath;

/// What `Transform::project` makes: defined beside the serializer that writes it.
pub use crate::output::serialize::OutAttr;

/// Why a template could not be filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    Missing(String),
    Type(String, TypeTag),
}

#[derive(Debug)]
enum Part {
    Lit(String),
    Path { path: DocPath, text: String },
}

/// A string with `{path}` holes; `{{` and `}}` are literal braces.
#[derive(Debug)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(text: &str, names: &[(String, String)]) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let rest = &text[i + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(format!("unclosed '{{' at column {}", i + 1));
                    };
                    let inner = rest[..end].trim();
                    let path = DocPath::parse(inner, names)
                        .map_err(|e| format!("bad attribute path {inner:?}: {e}"))?;
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Path {
                        path,
                        text: inner.to_owned(),
                    });
                    for _ in 0..end + 1 {
                        chars.next();
                    }
                }
                '}' => return Err(format!("unmatched '}}' at column {}", i + 1)),
                _ => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// Fills the holes from `item`: strings as they are, numbers as written, binaries as
    /// base64 text, booleans as true/false. Other types cannot become part of a string key.
    pub fn render(&self, item: &Map<'_>, out: &mut String) -> Result<(), TemplateError> {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Path { path, text } => match path.resolve(item) {
                    None => return Err(TemplateError::Missing(text.clone())),
                    Some(Value::S(s) | Value::N(s) | Value::B(s)) => out.push_str(s),
                    Some(Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
                    Some(v) => return Err(TemplateError::Type(text.clone(), v.type_tag())),
                },
            }
        }
        Ok(())
    }
}

/// A set of names as one bit per (length, first byte, last byte) class: a name whose bit is
/// clear is surely not in the set.
#[derive(Default)]
struct NameMask(u64);

impl NameMask {
    fn bit(name: &str) -> u64 {
        let b = name.as_bytes();
        let (first, last) = (b.first().copied(), b.last().copied());
        let h = b.len() * 7 + usize::from(first.unwrap_or(0)) * 3 + usize::from(last.unwrap_or(0));
        1 << (h % 64)
    }

    fn add(&mut self, name: &str) {
        self.0 |= Self::bit(name);
    }

    fn may_hold(&self, name: &str) -> bool {
        self.0 & Self::bit(name) != 0
    }
}

#[derive(Debug, Default)]
pub struct Transform {
    pub keep: Option<Vec<String>>,
    pub drop: Vec<String>,
    pub rename: Vec<(String, String)>,
    pub set: Vec<(String, Template)>,
}

impl Transform {
    pub fn is_identity(&self) -> bool {
        self.keep.is_none() && self.drop.is_empty() && self.rename.is_empty() && self.set.is_empty()
    }

    /// Renders the `set` templates into `values` (one per template, in order). The strings of
    /// the previous item's values are rendered into again, so steady state allocates nothing.
    pub fn render_sets(
        &self,
        item: &Map<'_>,
        values: &mut Vec<Value<'static>>,
    ) -> Result<(), TemplateError> {
        values.resize_with(self.set.len(), || Value::S(Cow::Owned(String::new())));
        for ((_, t), value) in self.set.iter().zip(values.iter_mut()) {
            if !matches!(value, Value::S(_)) {
                *value = Value::S(Cow::Owned(String::new()));
            }
            if let Value::S(s) = value {
                t.render(item, s.to_mut())?;
            }
        }
        Ok(())
    }

    /// The output attributes: references into `item` and into the rendered `sets`.
    pub fn project<'m, 'a>(
        &'m self,
        item: &'m Map<'a>,
        sets: &'m [Value<'static>],
        out: &mut Vec<OutAttr<'m, 'a>>,
    ) {
        out.clear();
        let set_name = |n: &str| self.set.iter().any(|(s, _)| s == n);
        let kept = |n: &str| {
            self.keep
                .as_ref()
                .is_none_or(|keep| keep.iter().any(|k| k == n))
                && !self.drop.iter().any(|d| d == n)
        };
        // An original attribute gives way to a rename only when the rename actually happens
        // (its source is in this item and kept): otherwise nothing would take its name, and
        // dropping it would lose data without a trace.
        let renamed_to = |n: &str| {
            self.rename
                .iter()
                .any(|(from, to)| to == n && kept(from) && item.iter().any(|(k, _)| k == from))
        };
        // Most attributes are named by no rule here. A one-word summary of the names the
        // rules mention (`NameMask`) tells them apart without comparing any string. (Made
        // here from a handful of names, it costs less than keeping it beside the public fields.)
        let mut mentioned = NameMask::default();
        for n in self.drop.iter().chain(self.set.iter().map(|(n, _)| n)) {
            mentioned.add(n);
        }
        for (from, to) in &self.rename {
            mentioned.add(from);
            mentioned.add(to);
        }
        for (index, (name, value)) in item.iter().enumerate() {
            let name = name.as_ref();
            let (out_name, renamed) = if self.keep.is_none() && !mentioned.may_hold(name) {
                (name, false)
            } else {
                if !kept(name) {
                    continue;
                }
                let named = match self.rename.iter().find(|(from, _)| from == name) {
                    Some((_, to)) => (to.as_str(), true),
                    None if renamed_to(name) => continue,
                    None => (name, false),
                };
                if set_name(named.0) {
                    continue;
                }
                named
            };
            out.push(OutAttr {
                name: out_name,
                value,
                from_item: Some(index),
                renamed,
            });
        }
        for ((name, _), value) in self.set.iter().zip(sets) {
            out.push(OutAttr {
                name: name.as_str(),
                value,
                from_item: None,
                renamed: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_item, Shape};

    fn names(out: &[OutAttr<'_, '_>]) -> Vec<String> {
        out.iter().map(|a| a.name.to_string()).collect()
    }

    #[test]
    fn keep_drop_rename_set() {
        let item = parse_item(
            br#"{"pk":{"S":"1"},"user_id":{"S":"u7"},"created_at":{"S":"t"},"legacy":{"S":"x"},"n":{"N":"1.50"},"m":{"M":{"a":{"N":"2"}}}}"#,
            Shape::AttributeMap,
        )
        .unwrap();
        let t = Transform {
            keep: None,
            drop: vec!["legacy".into()],
            rename: vec![("created_at".into(), "createdAt".into())],
            set: vec![(
                "gsi1pk".into(),
                Template::parse("USER#{user_id}/{n}/{m.a}", &[]).unwrap(),
            )],
        };
        let mut sets = Vec::new();
        t.render_sets(&item, &mut sets).unwrap();
        let mut out = Vec::new();
        t.project(&item, &sets, &mut out);
        assert_eq!(
            names(&out),
            ["pk", "user_id", "createdAt", "n", "m", "gsi1pk"]
        );
        assert_eq!(out[5].value, &Value::S("USER#u7/1.50/2".into()));

        let keep = Transform {
            keep: Some(vec!["pk".into(), "n".into()]),
            ..Default::default()
        };
        keep.project(&item, &[], &mut out);
        assert_eq!(names(&out), ["pk", "n"]);
    }

    #[test]
    fn collisions_keep_names_unique() {
        let item = parse_item(
            br#"{"a":{"S":"1"},"b":{"S":"2"},"c":{"S":"3"}}"#,
            Shape::AttributeMap,
        )
        .unwrap();
        let t = Transform {
            rename: vec![("a".into(), "b".into())],
            set: vec![("c".into(), Template::parse("x{{y}}", &[]).unwrap())],
            ..Default::default()
        };
        let mut sets = Vec::new();
        t.render_sets(&item, &mut sets).unwrap();
        let mut out = Vec::new();
        t.project(&item, &sets, &mut out);
        assert_eq!(names(&out), ["b", "c"]);
        assert_eq!(out[0].value, &Value::S("1".into()));
        assert_eq!(out[1].value, &Value::S("x{y}".into()));
    }

    #[test]
    fn an_original_attribute_stays_when_nothing_is_renamed_onto_it() {
        let item = parse_item(br#"{"b":{"S":"orig"},"c":{"S":"3"}}"#, Shape::AttributeMap).unwrap();
        let t = Transform {
            rename: vec![("a".into(), "b".into())],
            ..Default::default()
        };
        let mut out = Vec::new();
        t.project(&item, &[], &mut out);
        assert_eq!(names(&out), ["b", "c"]);
        assert_eq!(out[0].value, &Value::S("orig".into()));
        // a dropped source is no rename either
        let t = Transform {
            drop: vec!["c".into()],
            rename: vec![("c".into(), "b".into())],
            ..Default::default()
        };
        t.project(&item, &[], &mut out);
        assert_eq!(names(&out), ["b"]);
        assert_eq!(out[0].value, &Value::S("orig".into()));
    }

    #[test]
    fn template_errors() {
        let item = parse_item(br#"{"l":{"L":[]}}"#, Shape::AttributeMap).unwrap();
        let mut s = String::new();
        let t = Template::parse("{missing}", &[]).unwrap();
        assert_eq!(
            t.render(&item, &mut s),
            Err(TemplateError::Missing("missing".into()))
        );
        let t = Template::parse("{l}", &[]).unwrap();
        assert_eq!(
            t.render(&item, &mut s),
            Err(TemplateError::Type("l".into(), TypeTag::L))
        );
        assert!(Template::parse("{open", &[]).is_err());
        assert!(Template::parse("close}", &[]).is_err());
    }
}
