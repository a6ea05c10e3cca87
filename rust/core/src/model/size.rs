//! Item size as DynamoDB counts it against the 400 KB limit (Developer Guide, "Item sizes and
//! formats"): attribute-name UTF-8 bytes plus value bytes, where a number takes one byte per
//! two significant digits plus one, a binary its decoded bytes, BOOL and NULL one byte, and a
//! list or map three bytes plus one per element on top of its elements.

use crate::model::binary;
use crate::model::number;
use crate::model::value::{Map, Value};

/// 400 KB, with 1 KB = 1024 bytes.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

pub fn item_size(item: &Map<'_>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

pub fn value_size(v: &Value<'_>) -> usize {
    match v {
        Value::S(s) => s.len(),
        Value::N(n) => number_size(n),
        Value::B(b) => binary::decoded_len(b).unwrap_or(b.len()),
        Value::Bool(_) | Value::Null => 1,
        Value::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        Value::L(l) => 3 + l.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        Value::Ss(s) => s.iter().map(|m| m.len()).sum(),
        Value::Ns(s) => s.iter().map(|m| number_size(m)).sum(),
        Value::Bs(s) => s
            .iter()
            .map(|m| binary::decoded_len(m).unwrap_or(m.len()))
            .sum(),
    }
}

fn number_size(text: &str) -> usize {
    number::check(text)
        .map(|d| d.stored_size())
        .unwrap_or(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_item, Shape};

    #[test]
    fn follows_the_developer_guide() {
        // Developer Guide example: shirt-color = "R", shirt-size = "M" is 23 bytes.
        let m = parse_item(
            br#"{"shirt-color":{"S":"R"},"shirt-size":{"S":"M"}}"#,
            Shape::AttributeMap,
        )
        .unwrap();
        assert_eq!(item_size(&m), 23);
        let m = parse_item(
            br#"{"id":{"S":"abc"},"n":{"N":"12345"},"flag":{"BOOL":true},"l":{"L":[{"S":"xy"}]}}"#,
            Shape::AttributeMap,
        )
        .unwrap();
        assert_eq!(item_size(&m), 5 + 5 + 5 + 7);
    }
}
