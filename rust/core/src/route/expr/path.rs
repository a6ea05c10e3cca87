//! Document paths (`a.b[2].c`, `#n.x[1]`): parsing with `#name` placeholders resolved, and
//! lookup in an item without copying.
//!
//! A placeholder stands for exactly one attribute name, dots and all: with `#n` = `a.b`, the
//! path `#n` names the top-level attribute called `a.b`, never `b` inside `a` (AWS Developer
//! Guide, "Expression attribute names": placeholders are how names containing dots are written).

use crate::model::value::{map_get, Map, Value};

use super::lexer::{tokenize, Tok, Token};
use super::ExprError;

/// One step of a document path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathElem {
    /// A map key (top-level attribute or nested map entry).
    Attr(String),
    /// A list element, zero-based.
    Index(usize),
}

/// A path from the item's top level down to one nested value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocPath(pub Vec<PathElem>);

impl DocPath {
    /// Parses "a.b[0].c", with "#name" placeholders resolved from `names`. Keywords such as
    /// `in` are accepted as names here, since a lone path has nothing they could be confused
    /// with; inside a condition they need a placeholder.
    pub fn parse(text: &str, names: &[(String, String)]) -> Result<DocPath, ExprError> {
        let tokens = tokenize(text)?;
        let mut cursor = PathCursor {
            text,
            tokens: &tokens,
            pos: 0,
        };
        let path = cursor.path(names, true)?;
        match cursor.peek() {
            Token { tok: Tok::Eof, .. } => Ok(path),
            t => Err(ExprError::at(
                text,
                t.start,
                format!(
                    "expected '.', '[' or end of path, found {}",
                    t.tok.describe()
                ),
            )),
        }
    }

    /// The value this path names in `item`, or `None` when any step is missing: an absent key,
    /// an index past the end of the list, or a step into a value of the wrong type (a key into
    /// a list, an index into a map). DynamoDB treats all of these as "attribute does not
    /// exist" rather than as errors.
    pub fn resolve<'m, 'a>(&self, item: &'m Map<'a>) -> Option<&'m Value<'a>> {
        let (first, rest) = self.0.split_first()?;
        let mut cur = match first {
            PathElem::Attr(name) => map_get(item, name)?,
            PathElem::Index(_) => return None,
        };
        for step in rest {
            cur = match (step, cur) {
                (PathElem::Attr(name), Value::M(m)) => map_get(m, name)?,
                (PathElem::Index(i), Value::L(l)) => l.get(*i)?,
                _ => return None,
            };
        }
        Some(cur)
    }
}

/// Reads a path from a token stream; shared by `DocPath::parse` and the condition parser.
pub(crate) struct PathCursor<'s, 't> {
    pub text: &'t str,
    pub tokens: &'s [Token<'t>],
    pub pos: usize,
}

/// Words the condition grammar gives a meaning to; as path components they need a `#name`.
const KEYWORDS: [&str; 5] = ["and", "or", "not", "between", "in"];

impl<'t> PathCursor<'_, 't> {
    pub fn peek(&self) -> Token<'t> {
        self.tokens[self.pos]
    }

    /// `component ('.' component | '[' digits ']')*`, where a component is a bare name or a
    /// `#name` placeholder.
    pub fn path(
        &mut self,
        names: &[(String, String)],
        allow_keywords: bool,
    ) -> Result<DocPath, ExprError> {
        let mut elems = vec![PathElem::Attr(self.component(names, allow_keywords)?)];
        loop {
            match self.peek().tok {
                Tok::Dot => {
                    self.pos += 1;
                    elems.push(PathElem::Attr(self.component(names, allow_keywords)?));
                }
                Tok::LBracket => {
                    self.pos += 1;
                    elems.push(PathElem::Index(self.index()?));
                }
                _ => return Ok(DocPath(elems)),
            }
        }
    }

    fn component(
        &mut self,
        names: &[(String, String)],
        allow_keywords: bool,
    ) -> Result<String, ExprError> {
        let t = self.peek();
        let name = match t.tok {
            Tok::Name(n) if !allow_keywords && KEYWORDS.iter().any(|k| t.tok.is_keyword(k)) => {
                return Err(ExprError::at(
                    self.text,
                    t.start,
                    format!("'{n}' is a keyword; write it as a #name placeholder"),
                ))
            }
            Tok::Name(n) => n.to_owned(),
            Tok::NameRef(r) => lookup_name(self.text, t.start, r, names)?,
            other => {
                return Err(ExprError::at(
                    self.text,
                    t.start,
                    format!(
                        "expected an attribute name or #name, found {}",
                        other.describe()
                    ),
                ))
            }
        };
        self.pos += 1;
        Ok(name)
    }

    fn index(&mut self) -> Result<usize, ExprError> {
        let t = self.peek();
        let Tok::Int(digits) = t.tok else {
            return Err(ExprError::at(
                self.text,
                t.start,
                format!("expected a list index, found {}", t.tok.describe()),
            ));
        };
        let i = digits.parse::<usize>().map_err(|_| {
            ExprError::at(
                self.text,
                t.start,
                format!("list index {digits} is too large"),
            )
        })?;
        self.pos += 1;
        let close = self.peek();
        if close.tok != Tok::RBracket {
            return Err(ExprError::at(
                self.text,
                close.start,
                format!("expected ']', found {}", close.tok.describe()),
            ));
        }
        self.pos += 1;
        Ok(i)
    }
}

/// Resolves a `#name` placeholder; an undefined one is an error, as in DynamoDB ("An
/// expression attribute name used in the document path is not defined").
pub(crate) fn lookup_name(
    text: &str,
    at: usize,
    placeholder: &str,
    names: &[(String, String)],
) -> Result<String, ExprError> {
    names
        .iter()
        .find(|(k, _)| k == placeholder)
        .map(|(_, v)| v.clone())
        .ok_or_else(|| {
            ExprError::at(
                text,
                at,
                format!("expression attribute name {placeholder} is not defined"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_item, Shape};

    fn names(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn attr(s: &str) -> PathElem {
        PathElem::Attr(s.to_owned())
    }

    #[test]
    fn parses_nested_paths_and_placeholders() {
        let n = names(&[("#ts", "created.at"), ("#x", "in")]);
        assert_eq!(
            DocPath::parse("a.b[2].c", &n).unwrap(),
            DocPath(vec![attr("a"), attr("b"), PathElem::Index(2), attr("c")])
        );
        assert_eq!(
            DocPath::parse(" #ts[0][1] . #x ", &n).unwrap(),
            DocPath(vec![
                attr("created.at"),
                PathElem::Index(0),
                PathElem::Index(1),
                attr("in")
            ])
        );
        // A lone path may use keywords as names.
        assert_eq!(
            DocPath::parse("in.not", &n).unwrap(),
            DocPath(vec![attr("in"), attr("not")])
        );
    }

    #[test]
    fn refuses_bad_paths_with_columns() {
        let n = names(&[("#a", "a")]);
        for (text, column) in [
            ("", 1),
            ("a.", 3),
            ("a..b", 3),
            ("a[x]", 3),
            ("a[1", 4),
            ("a[]", 3),
            ("[0]", 1),
            ("#b.c", 1),
            ("a.#zz", 3),
            ("a b", 3),
            ("a[99999999999999999999999]", 3),
            ("a = :v", 3),
        ] {
            let e = DocPath::parse(text, &n).unwrap_err();
            assert_eq!(e.column, column, "{text:?}: {e}");
        }
    }

    #[test]
    fn resolves_through_maps_and_lists() {
        let item = parse_item(
            br#"{"a":{"M":{"b":{"L":[{"S":"x"},{"M":{"c":{"N":"7"}}}]}}},"d.e":{"S":"dotted"}}"#,
            Shape::AttributeMap,
        )
        .unwrap();
        let n = names(&[("#de", "d.e")]);
        let get = |p: &str| DocPath::parse(p, &n).unwrap().resolve(&item).cloned();
        assert_eq!(get("a.b[1].c"), Some(Value::N("7".into())));
        assert_eq!(get("a.b[0]"), Some(Value::S("x".into())));
        assert_eq!(get("#de"), Some(Value::S("dotted".into())));
        for missing in [
            "a.b[2]",   // past the end of the list
            "a.b[0].c", // a key into a string
            "a.b.c",    // a key into a list
            "a[0]",     // an index into a map
            "d.e",      // the dotted name is one attribute, not a path
            "z",
        ] {
            assert_eq!(get(missing), None, "{missing}");
        }
        assert_eq!(DocPath(vec![PathElem::Index(0)]).resolve(&item), None);
        assert_eq!(DocPath(vec![]).resolve(&item), None);
    }
}
