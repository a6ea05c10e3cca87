//! DynamoDB's condition-expression language (ConditionExpression / FilterExpression syntax),
//! used to route items: parse once with the `#name` and `:value` maps, then evaluate per item.
//!
//! lexer (tokens) → path (document paths) → parser (the `ast`, parse-time checks) → eval (per
//! item).

mod ast;
mod eval;
mod lexer;
mod parser;
mod path;

pub use path::{DocPath, PathElem};

use crate::model::value::{Map, Value};

/// A refused expression: what is wrong and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ExprError {
    pub message: String,
    /// 1-based character column in the expression text
    pub column: usize,
}

impl ExprError {
    /// An error at byte offset `offset` of `text`, reported as the character column an editor
    /// shows (the two differ once a non-ASCII character precedes the error).
    #[cold]
    pub(crate) fn at(text: &str, offset: usize, message: impl Into<String>) -> ExprError {
        let column = text.get(..offset).map_or(offset, |s| s.chars().count()) + 1;
        ExprError {
            message: message.into(),
            column,
        }
    }
}

/// A parsed condition, ready to evaluate against items.
#[derive(Debug, Clone)]
pub struct Condition {
    root: ast::Node,
}

impl Condition {
    /// names: "#n" -> attribute name; values: ":v" -> value (already validated DynamoDB values).
    ///
    /// Placeholders that are defined but unused are accepted (DynamoDB refuses them, but a
    /// routing config may share one map between several expressions).
    pub fn parse(
        text: &str,
        names: &[(String, String)],
        values: &[(String, Value<'static>)],
    ) -> Result<Condition, ExprError> {
        Ok(Condition {
            root: parser::parse(text, names, values)?,
        })
    }

    /// Whether `item` satisfies the condition.
    pub fn eval(&self, item: &Map<'_>) -> bool {
        eval::eval(&self.root, item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::value::TypeTag;
    use crate::parse::{parse_item, parse_value, Shape};

    const ITEM: &str = r#"{
        "kind": {"S": "post"}, "n": {"N": "1.50"}, "big": {"N": "1E+2"}, "neg": {"N": "-3"},
        "s": {"S": "cat"}, "uni": {"S": "é𝄞"}, "b": {"B": "Y2F0"}, "hi": {"B": "gA=="},
        "lo": {"B": "fw=="}, "t": {"BOOL": true}, "nul": {"NULL": true},
        "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["2", "4.0", "7"]}, "bs": {"BS": ["YQ==", "Yg=="]},
        "l": {"L": [{"N": "2"}, {"S": "dog"}, {"NS": ["1", "2"]}, {"L": [{"N": "3"}]}]},
        "m": {"M": {"x": {"N": "1"}, "y": {"L": [{"N": "-1"}, {"N": "2"}]},
                    "z": {"M": {"deep": {"S": "yes"}}}}},
        "a.b": {"S": "dotted"}, "and": {"N": "5"}, "size": {"N": "9"},
        "weird name-with ünïcode": {"S": "odd"}
    }"#;

    fn names() -> Vec<(String, String)> {
        [
            ("#ts", "a.b"),
            ("#and", "and"),
            ("#m", "m"),
            ("#odd", "weird name-with ünïcode"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn values() -> Vec<(String, Value<'static>)> {
        [
            (":post", r#"{"S":"post"}"#),
            (":one5", r#"{"N":"1.5"}"#),
            (":n150", r#"{"N":"1.50"}"#),
            (":n0", r#"{"N":"0"}"#),
            (":n2", r#"{"N":"2"}"#),
            (":n3", r#"{"N":"3"}"#),
            (":n5", r#"{"N":"5"}"#),
            (":n100", r#"{"N":"100"}"#),
            (":s1_5", r#"{"S":"1.5"}"#),
            (":cat", r#"{"S":"cat"}"#),
            (":ca", r#"{"S":"ca"}"#),
            (":at", r#"{"S":"at"}"#),
            (":dog", r#"{"S":"dog"}"#),
            (":a", r#"{"S":"a"}"#),
            (":empty", r#"{"S":""}"#),
            (":bcat", r#"{"B":"Y2F0"}"#),
            (":bca", r#"{"B":"Y2E="}"#),
            (":bat", r#"{"B":"YXQ="}"#),
            (":bdog", r#"{"B":"ZG9n"}"#),
            (":b80", r#"{"B":"gA=="}"#),
            (":b7f", r#"{"B":"fw=="}"#),
            (":ba", r#"{"B":"YQ=="}"#),
            (":true", r#"{"BOOL":true}"#),
            (":false", r#"{"BOOL":false}"#),
            (":null", r#"{"NULL":true}"#),
            (":ss_ba", r#"{"SS":["b","a"]}"#),
            (":ss_a", r#"{"SS":["a"]}"#),
            (":ns", r#"{"NS":["7.00","2","4"]}"#),
            (":ns12", r#"{"NS":["2","1"]}"#),
            (":bs", r#"{"BS":["Yg==","YQ=="]}"#),
            (":l3", r#"{"L":[{"N":"3"}]}"#),
            (":l", r#"{"L":[{"N":"2.0"},{"S":"dog"},{"NS":["2","1"]},{"L":[{"N":"3"}]}]}"#),
            (":m", r#"{"M":{"z":{"M":{"deep":{"S":"yes"}}},"y":{"L":[{"N":"-1"},{"N":"2"}]},"x":{"N":"1.0"}}}"#),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), parse_value(v).unwrap().into_owned()))
        // ":tS" → "S" and so on for the ten type names, plus one that is no type.
        .chain(TypeTag::ALL.iter().map(|t| t.as_str()).chain(["DOG"]).map(|t| {
            (format!(":t{t}"), Value::S(t.to_owned().into()))
        }))
        .collect()
    }

    fn check(cases: &[(&str, bool)]) {
        let item = parse_item(ITEM.as_bytes(), Shape::AttributeMap).unwrap();
        let (n, v) = (names(), values());
        for (text, want) in cases {
            let c = Condition::parse(text, &n, &v).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(c.eval(&item), *want, "{text}");
        }
    }

    fn error(text: &str) -> ExprError {
        match Condition::parse(text, &names(), &values()) {
            Ok(c) => panic!("{text}: parsed as {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn routes_the_documented_example() {
        check(&[
            ("kind = :post AND attribute_exists(#ts)", true),
            ("kind = :post AND attribute_exists(#and.x)", false),
        ]);
    }

    #[test]
    fn compares_numbers_by_value() {
        check(&[
            ("n = :one5", true),
            ("n = :n150", true),
            ("n <> :one5", false),
            ("n < :n2", true),
            ("n <= :one5", true),
            ("n > :one5", false),
            ("n >= :one5", true),
            ("big = :n100", true),
            ("neg < :n0", true),
            (":n2 > n", true),
            ("n < big", true),
            // N against S never matches, even when the text looks alike.
            ("n = :s1_5", false),
            ("n <> :s1_5", true),
            ("n < :s1_5", false),
            ("n >= :s1_5", false),
        ]);
    }

    #[test]
    fn compares_strings_and_binaries_bytewise() {
        check(&[
            ("s = :cat", true),
            ("s < :dog", true),
            ("s <= :cat", true),
            ("s > :ca", true),
            ("s >= :dog", false),
            ("s <> :dog", true),
            ("uni > :dog", true), // UTF-8 bytes: é (0xC3) sorts after ASCII
            ("b = :bcat", true),
            ("b < :bdog", true),
            ("b > :bca", true),
            ("b <> :bcat", false),
            // Unsigned bytes: 0x80 sorts after 0x7f.
            ("hi > :b7f", true),
            ("lo < :b80", true),
            ("hi > lo", true),
            // Cross-type: S against B, B against N, BOOL ordered.
            ("s = :bcat", false),
            ("s < :bdog", false),
            ("b > :n0", false),
            ("t = :true", true),
            ("t = :false", false),
            ("nul = :null", true),
            ("t = :null", false),
        ]);
    }

    #[test]
    fn missing_attributes_compare_false_except_not_equal() {
        check(&[
            ("zz = :n2", false),
            ("zz < :n2", false),
            ("zz >= :n2", false),
            ("zz BETWEEN :n0 AND :n5", false),
            ("zz IN (:n2, :cat)", false),
            // DynamoDB: a missing attribute is "not equal" to anything, even another missing one.
            ("zz <> :n2", true),
            ("zz <> yy", true),
            ("zz = yy", false),
            ("NOT zz < :n2", true),
            ("NOT zz = :n2", true),
        ]);
    }

    #[test]
    fn equality_is_deep_and_order_free_for_sets_and_maps() {
        check(&[
            ("ss = :ss_ba", true),
            ("ss = :ss_a", false),
            ("ns = :ns", true),
            ("bs = :bs", true),
            ("l = :l", true),
            ("m = :m", true),
            ("#m = :m", true),
            ("m.z <> :m", true),
            ("l IN (:cat, :l)", true),
            ("ss = :ns", false),
            ("l[3] = :l3", true),
        ]);
    }

    #[test]
    fn between_is_inclusive_and_in_matches_any() {
        check(&[
            ("n BETWEEN :one5 AND :n2", true),
            ("n BETWEEN :n0 AND :one5", true),
            ("n BETWEEN :n2 AND :n5", false),
            ("s BETWEEN :ca AND :cat", true),
            ("s between :dog and :dog", false),
            ("b BETWEEN :bca AND :bdog", true),
            ("n BETWEEN :ca AND :dog", false),
            ("n BETWEEN neg AND big", true),
            ("big BETWEEN n AND neg", false), // reversed item bounds: just false
            ("n IN (:n2, :one5)", true),
            ("n in (:n2)", false),
            ("s IN (:n2, :cat, :true)", true),
            ("b IN (:bcat)", true),
            ("size(s) IN (:n2, :n3)", true),
        ]);
    }

    #[test]
    fn functions() {
        check(&[
            ("attribute_exists(kind)", true),
            ("attribute_exists(m.z.deep)", true),
            ("attribute_exists(m.y[1])", true),
            ("attribute_exists(m.y[2])", false),
            ("attribute_not_exists(m.y[2])", true),
            ("attribute_not_exists(kind)", false),
            ("attribute_exists(#odd)", true),
            ("attribute_exists(#and)", true),
            ("attribute_type(s, :tS)", true),
            ("attribute_type(n, :tN)", true),
            ("attribute_type(b, :tB)", true),
            ("attribute_type(t, :tBOOL)", true),
            ("attribute_type(nul, :tNULL)", true),
            ("attribute_type(ss, :tSS)", true),
            ("attribute_type(ns, :tNS)", true),
            ("attribute_type(bs, :tBS)", true),
            ("attribute_type(l, :tL)", true),
            ("attribute_type(m, :tM)", true),
            ("attribute_type(m, :tL)", false),
            ("attribute_type(zz, :tS)", false),
            ("attribute_type(:n2, :tN)", true),
            ("begins_with(s, :ca)", true),
            ("begins_with(s, :at)", false),
            ("begins_with(s, :empty)", true),
            ("begins_with(b, :bca)", true),
            ("begins_with(b, :bat)", false),
            ("begins_with(s, :bca)", false),
            ("begins_with(n, :s1_5)", false),
            ("begins_with(zz, :ca)", false),
            ("begins_with(:ca, s)", false),
            ("contains(s, :at)", true),
            ("contains(s, :dog)", false),
            ("contains(b, :bat)", true),
            ("contains(b, :bdog)", false),
            ("contains(ss, :a)", true),
            ("contains(ss, :dog)", false),
            ("contains(ns, :n2)", true),
            ("contains(ns, :n5)", false),
            ("contains(bs, :ba)", true),
            ("contains(bs, :a)", false), // S is not a member of a BS
            ("contains(l, :n2)", true),
            ("contains(l, :dog)", true),
            ("contains(l, :ns12)", true),
            ("contains(l, :l3)", true),
            ("contains(l, :n5)", false),
            ("contains(m, :n2)", false),
            ("contains(zz, :a)", false),
            ("size(s) = :n3", true),
            ("size(uni) = :n3", true),
            ("size(b) = :n3", true),
            ("size(ss) = :n2", true),
            ("size(ns) = :n3", true),
            ("size(l) > :n3", true),
            ("size(l) > :n5", false),
            ("size(m) = :n3", true),
            ("size(m.y) = :n2", true),
            ("size(n) = :n2", false),
            ("size(zz) = :n0", false),
            ("size(s) = :s1_5", false),
            ("size(s) < size(l)", true),
            ("size(ss) = m.y[1]", true),
            ("size(s) BETWEEN :n2 AND :n5", true),
        ]);
    }

    #[test]
    fn precedence_and_parentheses() {
        // a = true, b = false, c = false
        let (a, b, c) = ("s = :cat", "s = :dog", "n = :n5");
        check(&[
            (&format!("{a} OR {b} AND {c}"), true), // a OR (b AND c)
            (&format!("({a} OR {b}) AND {c}"), false),
            (&format!("NOT {a} AND {b}"), false), // (NOT a) AND b
            (&format!("NOT ({b} AND {a})"), true),
            (&format!("NOT {b} OR {c}"), true),
            (&format!("NOT {b} OR {a}"), true), // (NOT b) OR a
            (&format!("NOT NOT NOT NOT {a}"), true),
            (&format!("nOt {b} oR {a}"), true),
            (&format!("{b} OR {c} OR {a}"), true),
            (&format!("{a} AND ({b} OR ({c} OR {a}))"), true),
            ("n BETWEEN :n0 AND :n2 AND s = :dog", false), // BETWEEN binds before AND
            ("n BETWEEN :n0 AND :n2 aNd s = :cat", true),
            ("NOT n BETWEEN :n0 AND :n2 OR s = :dog", false),
            ("((((s = :cat))))", true),
        ]);
    }

    #[test]
    fn paths_reach_into_maps_lists_and_placeholders() {
        check(&[
            ("m.x = :one5", false),
            ("m.x < m.y[1]", true),
            ("m.x < m.y[0]", false),
            ("m.y[100] = :n2", false),
            ("m.x.y = :n2", false),
            ("l[2] = :ns12", true),
            ("l[3][0] = :n3", true),
            ("#m.z.deep = #m.z.deep", true),
            ("#ts = :cat", false),
            ("attribute_exists(#ts)", true),
            ("#and = :n5", true),
            ("size = :n5", false), // `size` without parentheses is an attribute
            (" s\t=\n:cat ", true),
        ]);
    }

    #[test]
    fn errors_point_at_the_column() {
        for (text, column, fragment) in [
            ("", 1, "empty"),
            ("   ", 1, "empty"),
            ("s = ", 5, "expected an attribute path"),
            ("s", 2, "comparator"),
            ("s == :cat", 4, "expected an attribute path"),
            ("s = :cat AND", 13, "expected an attribute path"),
            ("s = :cat :dog", 10, "AND, OR or end"),
            ("(s = :cat", 10, "')'"),
            ("s = :nope", 5, ":nope is not defined"),
            ("#nope = :cat", 1, "#nope is not defined"),
            ("s = :cat OR m.#nope = :cat", 15, "#nope is not defined"),
            ("and = :cat", 1, "keyword"),
            ("m.in = :cat", 3, "keyword"),
            ("s BETWEEN :n0 :n5", 15, "AND in BETWEEN"),
            ("s IN ()", 3, "at least one value"),
            ("s IN :cat", 6, "'('"),
            ("s < :l3", 5, "only N, S or B values can be used with <"),
            ("s BETWEEN :n0 AND :m", 19, "only N, S or B"),
            ("s BETWEEN :n5 AND :n0", 11, "lower bound"),
            ("s BETWEEN :n0 AND :cat", 19, "same type"),
            ("Attribute_Exists(s)", 1, "case-sensitive"),
            ("dog(s) = :n2", 1, "unknown function"),
            ("if_not_exists(s, :n2) = :n2", 1, "unknown function"),
            ("attribute_exists(:cat)", 18, "must be an attribute path"),
            ("attribute_exists(s, n)", 1, "exactly 1 argument"),
            ("attribute_exists()", 1, "exactly 1 argument"),
            ("contains(s)", 1, "exactly 2 arguments"),
            ("begins_with(s, :n2)", 16, "only S or B values"),
            ("begins_with(s, :a, :a)", 1, "exactly 2 arguments"),
            ("attribute_type(s, :tDOG)", 19, "\"DOG\" is not a type"),
            ("attribute_type(s, :n2)", 19, "must be S, not N"),
            ("attribute_type(s, t)", 19, "must be a :value"),
            (
                "attribute_exists(s) = :n2",
                21,
                "only size(path) can be compared",
            ),
            ("size(s)", 8, "comparator"),
            ("size(s, n) = :n2", 1, "exactly 1 argument"),
            ("size(:cat) = :n2", 6, "attribute path"),
            ("s = contains(s, :a)", 5, "cannot be used as an operand"),
            ("contains(size(s), :n2)", 10, "paths or :values"),
            ("m.y[x] = :n2", 5, "list index"),
            ("s = :cat AND é = :cat", 14, "unexpected character"),
        ] {
            let e = error(text);
            assert_eq!(e.column, column, "{text:?}: {e}");
            assert!(e.message.contains(fragment), "{text:?}: {e}");
            assert_eq!(e.to_string(), format!("column {column}: {}", e.message));
        }
    }

    #[test]
    fn in_takes_at_most_100_values() {
        let item = parse_item(ITEM.as_bytes(), Shape::AttributeMap).unwrap();
        let values: Vec<(String, Value<'static>)> = (0..101)
            .map(|i| {
                let v = parse_value(&format!(r#"{{"N":"{i}"}}"#))
                    .unwrap()
                    .into_owned();
                (format!(":v{i}"), v)
            })
            .collect();
        let list = |n: usize| {
            (0..n)
                .map(|i| format!(":v{i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let c = Condition::parse(&format!("size(s) IN ({})", list(100)), &[], &values).unwrap();
        assert!(c.eval(&item));
        let e = Condition::parse(&format!("size(s) IN ({})", list(101)), &[], &values);
        assert!(e.unwrap_err().message.contains("at most 100"));
    }

    #[test]
    fn refuses_oversized_and_overnested_conditions() {
        let long = format!("s = :cat{}", " ".repeat(4090));
        assert!(error(&long).message.contains("DynamoDB allows 4096"));
        let deep = format!("{}s = :cat{}", "(".repeat(101), ")".repeat(101));
        assert_eq!(error(&deep).column, 101);
        let nots = format!("{}s = :cat", "NOT ".repeat(101));
        assert_eq!(error(&nots).column, 401);
        check(&[(
            &format!("{}s = :cat{}", "(".repeat(100), ")".repeat(100)),
            true,
        )]);
        check(&[(&format!("{}s = :cat", "NOT ".repeat(100)), true)]);
    }

    #[test]
    fn conditions_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Condition>();
    }

    #[test]
    fn unused_placeholders_are_fine() {
        let item = parse_item(ITEM.as_bytes(), Shape::AttributeMap).unwrap();
        let c = Condition::parse("s = :cat", &names(), &values()).unwrap();
        assert!(c.eval(&item));
    }
}
