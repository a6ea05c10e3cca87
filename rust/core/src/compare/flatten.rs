//! Flat columns for `parquet --flatten`: one Arrow column per top-level attribute, for ad-hoc
//! analysis in polars or DuckDB, built from the canonical items of a Parquet copy.
//!
//! Only attributes whose type is the same in every item are flattened (the caller picks them
//! from `ColumnBuilder::attribute_types`); a NULL value, or an item without the attribute,
//! is a null in the column. Types map to Arrow as:
//! S → large_utf8; N → float64 (the nearest double: the exact text stays in `item`);
//! B → large_binary (decoded); BOOL → boolean; M and L → large_utf8 holding the value's
//! canonical DynamoDB JSON; SS → large_list<large_utf8>; NS → large_list<float64>;
//! BS → large_list<large_binary>.

use crate::compare::canonical::Canonicalizer;
use crate::compare::columns::Validity;
use crate::error::Error;
use crate::model::binary;
use crate::model::value::{map_get, TypeTag, Value};
use crate::parse::{parse_item, Shape};

/// One flattened column in Arrow layout. `offsets` (i64 LE, rows + 1) is used by string,
/// binary and list columns; `values` holds the bytes of strings and binaries, the f64s of N,
/// or the bits of BOOL; a list's members are in `child_offsets` / `child_values` the same way.
#[derive(Debug, Clone)]
pub struct FlatColumn {
    pub tag: TypeTag,
    pub offsets: Vec<u8>,
    pub values: Vec<u8>,
    pub validity: Validity,
    pub child_offsets: Vec<u8>,
    pub child_values: Vec<u8>,
    pub child_len: usize,
}

impl FlatColumn {
    fn new(tag: TypeTag) -> FlatColumn {
        FlatColumn {
            tag,
            offsets: 0i64.to_le_bytes().to_vec(),
            values: Vec::new(),
            validity: Validity::default(),
            child_offsets: 0i64.to_le_bytes().to_vec(),
            child_values: Vec::new(),
            child_len: 0,
        }
    }

    fn push_null(&mut self) {
        match self.tag {
            TypeTag::N => self.values.extend_from_slice(&0f64.to_le_bytes()),
            TypeTag::Bool => push_bit(&mut self.values, self.validity.len, false),
            _ => {}
        }
        self.end_row(false);
    }

    fn end_row(&mut self, valid: bool) {
        if !matches!(self.tag, TypeTag::N | TypeTag::Bool) {
            let end = if matches!(self.tag, TypeTag::Ss | TypeTag::Ns | TypeTag::Bs) {
                self.child_len
            } else {
                self.values.len()
            };
            self.offsets.extend_from_slice(&(end as i64).to_le_bytes());
        }
        self.validity.push(valid);
    }

    fn push(&mut self, v: &Value<'_>, canon: &mut Canonicalizer) {
        match v {
            Value::S(s) => self.values.extend_from_slice(s.as_bytes()),
            Value::N(n) => self
                .values
                .extend_from_slice(&n.parse::<f64>().unwrap_or(f64::NAN).to_le_bytes()),
            Value::B(b) => self
                .values
                .extend_from_slice(&binary::decode(b).unwrap_or_default()),
            Value::Bool(b) => push_bit(&mut self.values, self.validity.len, *b),
            Value::M(_) | Value::L(_) => canon.write_value(&mut self.values, v),
            Value::Ss(members) | Value::Bs(members) => {
                for m in members {
                    if self.tag == TypeTag::Ss {
                        self.child_values.extend_from_slice(m.as_bytes());
                    } else {
                        self.child_values
                            .extend_from_slice(&binary::decode(m).unwrap_or_default());
                    }
                    self.child_offsets
                        .extend_from_slice(&(self.child_values.len() as i64).to_le_bytes());
                    self.child_len += 1;
                }
            }
            Value::Ns(members) => {
                for m in members {
                    let f = m.parse::<f64>().unwrap_or(f64::NAN);
                    self.child_values.extend_from_slice(&f.to_le_bytes());
                    self.child_len += 1;
                }
            }
            Value::Null => {}
        }
        self.end_row(true);
    }
}

fn push_bit(bits: &mut Vec<u8>, at: usize, value: bool) {
    if at.is_multiple_of(8) {
        bits.push(0);
    }
    if value {
        *bits.last_mut().expect("pushed above") |= 1 << (at % 8);
    }
}

/// The flat columns of `columns` (attribute name and its one type) for a run of canonical
/// items given as Arrow string buffers: `offsets` (rows + 1 little-endian i64) into `data`.
/// Items are the `item` column of a Parquet copy, so they parse; one that does not is an error.
pub fn flatten(
    offsets: &[u8],
    data: &[u8],
    columns: &[(String, TypeTag)],
) -> Result<Vec<FlatColumn>, Error> {
    let mut out: Vec<FlatColumn> = columns.iter().map(|(_, t)| FlatColumn::new(*t)).collect();
    let at = |k: usize| -> usize {
        let mut b = [0u8; 8];
        b.copy_from_slice(&offsets[k * 8..k * 8 + 8]);
        i64::from_le_bytes(b) as usize
    };
    let rows = (offsets.len() / 8).saturating_sub(1);
    let mut canon = Canonicalizer::new();
    for r in 0..rows {
        let (start, end) = (at(r), at(r + 1));
        if start > end || end > data.len() {
            return Err(Error::Config(format!("item {r}: offsets out of range")));
        }
        let item = parse_item(&data[start..end], Shape::AttributeMap)?;
        for (col, (name, tag)) in out.iter_mut().zip(columns) {
            match map_get(&item, name) {
                Some(v) if v.type_tag() == *tag => col.push(v, &mut canon),
                _ => col.push_null(),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(items: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let mut off = 0i64.to_le_bytes().to_vec();
        let mut data = Vec::new();
        for i in items {
            data.extend_from_slice(i.as_bytes());
            off.extend_from_slice(&(data.len() as i64).to_le_bytes());
        }
        (off, data)
    }

    fn i64s(b: &[u8]) -> Vec<i64> {
        b.chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn flattens_each_type() {
        let items = [
            r#"{"b":{"B":"AAE="},"f":{"BOOL":true},"m":{"M":{"x":{"N":"1"}}},"n":{"N":"1.5"},"s":{"S":"x"},"ss":{"SS":["a","b"]},"ns":{"NS":["2","3.5"]}}"#,
            r#"{"n":{"NULL":true},"s":{"S":"y"},"f":{"BOOL":false}}"#,
        ];
        let (off, data) = offsets(&items);
        let cols: Vec<(String, TypeTag)> = [
            ("s", TypeTag::S),
            ("n", TypeTag::N),
            ("b", TypeTag::B),
            ("f", TypeTag::Bool),
            ("m", TypeTag::M),
            ("ss", TypeTag::Ss),
            ("ns", TypeTag::Ns),
        ]
        .iter()
        .map(|(n, t)| (n.to_string(), *t))
        .collect();
        let out = flatten(&off, &data, &cols).unwrap();
        assert_eq!(out[0].values, b"xy");
        assert_eq!(i64s(&out[0].offsets), vec![0, 1, 2]);
        assert_eq!(out[1].values[..8], 1.5f64.to_le_bytes());
        assert_eq!((out[1].validity.bits[0], out[1].validity.nulls), (0b01, 1));
        assert_eq!(out[2].values, vec![0, 1]);
        assert_eq!(out[3].values, vec![0b01]);
        assert_eq!(out[3].validity.nulls, 0);
        assert_eq!(out[4].values, br#"{"M":{"x":{"N":"1"}}}"#);
        assert_eq!(out[5].child_values, b"ab");
        assert_eq!(i64s(&out[5].offsets), vec![0, 2, 2]);
        assert_eq!(i64s(&out[5].child_offsets), vec![0, 1, 2]);
        assert_eq!(out[6].child_len, 2);
        assert_eq!(out[6].child_values[8..], 3.5f64.to_le_bytes());
    }
}
