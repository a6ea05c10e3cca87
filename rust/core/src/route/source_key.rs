//! The source key of an item, as the `Keys` of a keys-file line: the source table's key
//! attributes as wire DynamoDB JSON (`{"pk":{"S":"u#1"},"sk":{"N":"1.50"}}`), taken from the
//! item before any transform. A routed Parquet copy carries it beside each target row, so
//! `diff` can name the source item behind a missing or changed target item whatever the
//! target's key is made of (kept, renamed, or a template over other attributes).

use crate::error::Reason;
use crate::model::value::{map_get, Map, TypeTag};
use crate::output::serialize;
use crate::route::target::Refusal;

/// Appends the item's source key (no newline). `names`: the source table's key attributes,
/// hash key first. Values are written as they were read (a number keeps its spelling, a
/// binary its base64), which is exactly the key GetItem is given. On refusal `out` is left as
/// it was: an item without one of the attributes, or with it of a type no key can have, is
/// not an item of a table with that key.
pub fn write(out: &mut Vec<u8>, item: &Map<'_>, names: &[String]) -> Result<(), Refusal> {
    for name in names {
        match map_get(item, name) {
            None => {
                return Err(refusal(
                    Reason::MissingKey,
                    format!(
                        "source key attribute {name:?} is missing (the source key is {})",
                        names.join(", ")
                    ),
                ))
            }
            Some(v) if !matches!(v.type_tag(), TypeTag::S | TypeTag::N | TypeTag::B) => {
                return Err(refusal(
                    Reason::WrongKeyType,
                    format!(
                        "source key attribute {name:?} is {}: a key is S, N or B",
                        v.type_tag().as_str()
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    out.push(b'{');
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serialize::write_str(out, name);
        out.push(b':');
        serialize::write_value(out, map_get(item, name).expect("checked above"));
    }
    out.push(b'}');
    Ok(())
}

#[cold]
fn refusal(reason: Reason, message: String) -> Refusal {
    Refusal { reason, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_item, Shape};

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn writes_the_key_attributes_in_key_order_as_read() {
        let line =
            br#"{"Item":{"x":{"S":"v"},"sk":{"N":"1.50E3"},"pk":{"B":"AAE/"},"q\"":{"S":"\n"}}}"#;
        let item = parse_item(line, Shape::ExportLine).unwrap();
        let mut out = b"before".to_vec();
        write(&mut out, &item, &names(&["pk", "sk"])).unwrap();
        assert_eq!(out, br#"before{"pk":{"B":"AAE/"},"sk":{"N":"1.50E3"}}"#);
        out.clear();
        write(&mut out, &item, &names(&["q\""])).unwrap();
        assert_eq!(out, br#"{"q\"":{"S":"\n"}}"#);
    }

    #[test]
    fn refuses_an_item_without_the_key_or_with_a_non_key_type() {
        let item = parse_item(br#"{"pk":{"S":"a"},"sk":{"SS":["b"]}}"#, Shape::Any).unwrap();
        let mut out = b"x".to_vec();
        let e = write(&mut out, &item, &names(&["pk", "other"])).unwrap_err();
        assert_eq!(e.reason, Reason::MissingKey);
        assert!(e.message.contains("\"other\" is missing"), "{}", e.message);
        let e = write(&mut out, &item, &names(&["pk", "sk"])).unwrap_err();
        assert_eq!(e.reason, Reason::WrongKeyType);
        assert_eq!(out, b"x");
    }
}
