//! Columnar batches of items for Parquet copies, in Arrow's memory layout, straight from input
//! chunks: per item its key attributes as typed columns, its canonical form (`canonical`) and
//! that form's hash, and where it came from (file, line).
//!
//! The buffers are what Arrow arrays are made of (little-endian i64 offsets + data for strings
//! and binaries, LSB-first validity bitmaps, fixed-width values), so the binding hands them to
//! pyarrow as they are: no per-item object on the Python side, and no Arrow crate here.
//! Lines come through `reader::LineReader`, so decompression, line splitting, line numbers and
//! refusals are the ones `split` sees; a line that is refused, or whose key attributes are
//! missing or of another type, becomes a reject record in split's format, never a silent drop.

use std::collections::{BTreeMap, HashMap};

use crate::compare::canonical::{self, Canonicalizer};
use crate::error::{Error, Reason};
use crate::input::reader::{LineEvent, LineReader};
use crate::model::binary;
use crate::model::value::{map_get, Map, TypeTag, Value};
use crate::output::rejects::RejectRecord;
use crate::parse::Shape;

/// A string or binary column: `offsets` holds rows + 1 little-endian i64 (Arrow large_utf8 /
/// large_binary), `data` the bytes.
#[derive(Debug, Clone)]
pub struct VarColumn {
    pub offsets: Vec<u8>,
    pub data: Vec<u8>,
}

impl Default for VarColumn {
    fn default() -> Self {
        VarColumn {
            offsets: 0i64.to_le_bytes().to_vec(),
            data: Vec::new(),
        }
    }
}

impl VarColumn {
    /// The bytes written for the row not yet ended.
    fn last_value_so_far(&self) -> &[u8] {
        let start = self.offsets.len() - 8;
        let at = i64::from_le_bytes(self.offsets[start..].try_into().expect("8 bytes")) as usize;
        &self.data[at..]
    }

    /// Ends the current row at the end of `data`.
    fn end_row(&mut self) {
        self.offsets
            .extend_from_slice(&(self.data.len() as i64).to_le_bytes());
    }
}

/// An Arrow validity bitmap: bit i (LSB first) set when row i has a value.
#[derive(Debug, Clone, Default)]
pub struct Validity {
    pub bits: Vec<u8>,
    pub len: usize,
    pub nulls: usize,
}

impl Validity {
    pub(crate) fn push(&mut self, valid: bool) {
        if self.len.is_multiple_of(8) {
            self.bits.push(0);
        }
        if valid {
            *self.bits.last_mut().expect("pushed above") |= 1 << (self.len % 8);
        } else {
            self.nulls += 1;
        }
        self.len += 1;
    }
}

/// One key attribute's column(s). Key values are never null: an item without its key is
/// rejected, not written.
#[derive(Debug, Clone)]
pub enum KeyColumn {
    /// The string.
    S(VarColumn),
    /// The canonical decimal text, and the value as an f64 (little-endian) where a double holds
    /// it exactly, null elsewhere.
    N {
        text: VarColumn,
        float: Vec<u8>,
        valid: Validity,
    },
    /// The decoded bytes.
    B(VarColumn),
}

impl KeyColumn {
    fn new(tag: TypeTag) -> KeyColumn {
        match tag {
            TypeTag::N => KeyColumn::N {
                text: VarColumn::default(),
                float: Vec::new(),
                valid: Validity::default(),
            },
            TypeTag::B => KeyColumn::B(VarColumn::default()),
            _ => KeyColumn::S(VarColumn::default()),
        }
    }
}

/// Appends one key attribute's value to a row's key encoding: its type letter, the value's
/// length (u32 little-endian) and its bytes (S: UTF-8; N: canonical text; B: the decoded
/// bytes). XXH3-64 of a row's encoding is its `key_hash`: equal keys, equal hashes, whatever
/// the copy, so two copies can be joined on one integer column without decoding the keys.
pub fn key_encoding(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

/// Rows ready to become one Arrow record batch.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub rows: usize,
    /// In the order the key attributes were configured.
    pub keys: Vec<KeyColumn>,
    /// Canonical DynamoDB JSON of each item (UTF-8).
    pub item: VarColumn,
    /// `canonical::hash` of each item, u64 little-endian.
    pub hash: Vec<u8>,
    /// `key_hash` of each row's key, u64 little-endian; empty when there are no key columns.
    pub key_hash: Vec<u8>,
    /// Index into `files` of each row's file, i32 little-endian (an Arrow dictionary's indices).
    pub file_index: Vec<u8>,
    pub files: Vec<String>,
    /// 1-based line number in the decompressed file, i64 little-endian; null when the lines
    /// are not the source's own (items that came out of the routing engine).
    pub line: Vec<u8>,
    pub line_valid: Validity,
}

/// What happened to the lines fed so far.
#[derive(Debug, Clone, Default)]
pub struct ColumnCounts {
    /// Non-blank lines read.
    pub read: u64,
    /// Rows produced.
    pub items: u64,
    /// Lines refused (a reject record each).
    pub rejected: u64,
    pub reasons: BTreeMap<&'static str, u64>,
}

/// Which types each top-level attribute had, over every item: bit `i` is `TypeTag::ALL[i]`.
pub type AttributeTypes = HashMap<String, u16>;

pub struct ColumnBuilder {
    keys: Vec<(String, TypeTag)>,
    /// The target named in reject records for a missing or mistyped key.
    target: Option<String>,
    shape: Shape,
    reader: Option<LineReader>,
    file: String,
    /// The current file's index in `batch.files`, once one of its rows is in the batch.
    file_slot: Option<i32>,
    line_numbers: bool,
    canon: Canonicalizer,
    /// The current row's key, encoded for `key_hash`.
    key_bytes: Vec<u8>,
    batch: Batch,
    rejects: Vec<u8>,
    counts: ColumnCounts,
    types: Option<AttributeTypes>,
}

impl ColumnBuilder {
    /// `keys`: the key attributes and their types (S, N or B), hash key first. With
    /// `track_types`, the types of every top-level attribute are recorded (`attribute_types`).
    pub fn new(
        keys: Vec<(String, TypeTag)>,
        target: Option<String>,
        shape: Shape,
        track_types: bool,
    ) -> Result<Self, Error> {
        for (name, tag) in &keys {
            if !matches!(tag, TypeTag::S | TypeTag::N | TypeTag::B) {
                return Err(Error::Config(format!(
                    "key attribute {name:?} has type {}: keys are S, N or B",
                    tag.as_str()
                )));
            }
        }
        let batch = Batch {
            keys: keys.iter().map(|(_, t)| KeyColumn::new(*t)).collect(),
            ..Batch::default()
        };
        Ok(ColumnBuilder {
            keys,
            target,
            shape,
            reader: None,
            file: String::new(),
            file_slot: None,
            line_numbers: true,
            canon: Canonicalizer::new(),
            key_bytes: Vec::new(),
            batch,
            rejects: Vec::new(),
            counts: ColumnCounts::default(),
            types: track_types.then(HashMap::new),
        })
    }

    /// Starts a new input file. `line_numbers`: whether its lines are the source's own (false
    /// for the output of the routing engine, whose lines no longer match the source's).
    pub fn begin_file(&mut self, name: &str, line_numbers: bool) {
        self.file = name.to_owned();
        self.file_slot = None;
        self.line_numbers = line_numbers;
        self.reader = Some(LineReader::new(self.shape));
    }

    pub fn feed(&mut self, data: &[u8]) -> Result<(), Error> {
        let mut reader = self
            .reader
            .take()
            .ok_or_else(|| Error::Config("feed before begin_file".into()))?;
        let result = reader.feed(data, &mut |e| self.on_line(e));
        self.reader = Some(reader);
        result
    }

    /// Ends the current file: its last line, and the check for a truncated stream.
    pub fn end_file(&mut self) -> Result<(), Error> {
        let mut reader = self
            .reader
            .take()
            .ok_or_else(|| Error::Config("end_file before begin_file".into()))?;
        let result = reader.finish(&mut |e| self.on_line(e));
        self.reader = Some(reader);
        result
    }

    /// Bytes read of the current file: (compressed, decompressed).
    pub fn file_bytes(&self) -> (u64, u64) {
        self.reader
            .as_ref()
            .map_or((0, 0), |r| (r.bytes_in(), r.bytes_out()))
    }

    /// Rows in the batch being built.
    pub fn rows(&self) -> usize {
        self.batch.rows
    }

    /// Bytes held by the batch being built (item text and key data, the bulk of it).
    pub fn batch_bytes(&self) -> usize {
        let keys: usize = self
            .batch
            .keys
            .iter()
            .map(|k| match k {
                KeyColumn::S(c) | KeyColumn::B(c) => c.data.len(),
                KeyColumn::N { text, .. } => text.data.len(),
            })
            .sum();
        self.batch.item.data.len() + keys + self.batch.rows * 40
    }

    /// Hands out the rows built so far and starts an empty batch, its buffers sized like the
    /// last one's (batches are alike, and growing a 100 MB buffer by doubling copies it).
    pub fn take_batch(&mut self) -> Batch {
        let old = &self.batch;
        let like = |v: &Vec<u8>| Vec::with_capacity(v.len());
        let like_var = |c: &VarColumn| {
            let mut offsets = like(&c.offsets);
            offsets.extend_from_slice(&0i64.to_le_bytes());
            VarColumn {
                offsets,
                data: like(&c.data),
            }
        };
        let keys = old
            .keys
            .iter()
            .map(|k| match k {
                KeyColumn::S(c) => KeyColumn::S(like_var(c)),
                KeyColumn::B(c) => KeyColumn::B(like_var(c)),
                KeyColumn::N { text, float, valid } => KeyColumn::N {
                    text: like_var(text),
                    float: like(float),
                    valid: Validity {
                        bits: like(&valid.bits),
                        ..Validity::default()
                    },
                },
            })
            .collect();
        let fresh = Batch {
            rows: 0,
            keys,
            item: like_var(&old.item),
            hash: like(&old.hash),
            key_hash: like(&old.key_hash),
            file_index: like(&old.file_index),
            files: Vec::new(),
            line: like(&old.line),
            line_valid: Validity {
                bits: like(&old.line_valid.bits),
                ..Validity::default()
            },
        };
        self.file_slot = None;
        std::mem::replace(&mut self.batch, fresh)
    }

    /// Reject records (JSON lines, split's format) written since the last call.
    pub fn take_rejects(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.rejects)
    }

    pub fn counts(&self) -> &ColumnCounts {
        &self.counts
    }

    /// Per top-level attribute name, the types it had (bit i: `TypeTag::ALL[i]`), when built
    /// with `track_types`.
    pub fn attribute_types(&self) -> Option<&AttributeTypes> {
        self.types.as_ref()
    }

    fn on_line(&mut self, e: LineEvent<'_, '_>) {
        self.counts.read += 1;
        match e.item {
            Err(err) => self.reject(
                e.line_no,
                e.raw,
                err.reason,
                false,
                &err.message,
                err.offset,
            ),
            Ok(item) => self.push_item(e.line_no, e.raw, &item),
        }
    }

    fn push_item(&mut self, line_no: u64, raw: &[u8], item: &Map<'_>) {
        // Check every key before writing any column, so a refused item leaves no partial row.
        for k in 0..self.keys.len() {
            let (name, tag) = &self.keys[k];
            match map_get(item, name) {
                None => {
                    let msg = format!("key attribute {name:?} is missing");
                    return self.reject(line_no, raw, Reason::MissingKey, true, &msg, 0);
                }
                Some(v) if v.type_tag() != *tag => {
                    let msg = format!(
                        "key attribute {name:?} is {}, the key is declared {}",
                        v.type_tag().as_str(),
                        tag.as_str()
                    );
                    return self.reject(line_no, raw, Reason::WrongKeyType, true, &msg, 0);
                }
                Some(_) => {}
            }
        }
        self.key_bytes.clear();
        for (k, (name, _)) in self.keys.iter().enumerate() {
            let value = map_get(item, name).expect("checked above");
            let (col, tag) = match (&mut self.batch.keys[k], value) {
                (KeyColumn::S(col), Value::S(s)) => {
                    col.data.extend_from_slice(s.as_bytes());
                    (col, b'S')
                }
                (KeyColumn::N { text, float, valid }, Value::N(n)) => {
                    let start = text.data.len();
                    canonical::write_number(&mut text.data, n);
                    let exact = std::str::from_utf8(&text.data[start..])
                        .ok()
                        .and_then(canonical::exact_f64);
                    float.extend_from_slice(&exact.unwrap_or(0.0).to_le_bytes());
                    valid.push(exact.is_some());
                    (text, b'N')
                }
                (KeyColumn::B(col), Value::B(b)) => {
                    // Validated by the parser, so decoding cannot fail.
                    if let Ok(bytes) = binary::decode(b) {
                        col.data.extend_from_slice(&bytes);
                    }
                    (col, b'B')
                }
                _ => unreachable!("key types checked above"),
            };
            let value = col.last_value_so_far();
            key_encoding(&mut self.key_bytes, tag, value);
            col.end_row();
        }
        if !self.keys.is_empty() {
            let h = canonical::hash(&self.key_bytes);
            self.batch.key_hash.extend_from_slice(&h.to_le_bytes());
        }
        let item_col = &mut self.batch.item;
        let start = item_col.data.len();
        self.canon.write_item(&mut item_col.data, item);
        let h = canonical::hash(&item_col.data[start..]);
        item_col.end_row();
        self.batch.hash.extend_from_slice(&h.to_le_bytes());

        let slot = match self.file_slot {
            Some(s) => s,
            None => {
                self.batch.files.push(self.file.clone());
                let s = (self.batch.files.len() - 1) as i32;
                self.file_slot = Some(s);
                s
            }
        };
        self.batch.file_index.extend_from_slice(&slot.to_le_bytes());
        let line = if self.line_numbers { line_no as i64 } else { 0 };
        self.batch.line.extend_from_slice(&line.to_le_bytes());
        self.batch.line_valid.push(self.line_numbers);
        self.batch.rows += 1;
        self.counts.items += 1;

        if let Some(types) = self.types.as_mut() {
            for (name, v) in item {
                let bit = 1u16
                    << TypeTag::ALL
                        .iter()
                        .position(|t| *t == v.type_tag())
                        .unwrap_or(0);
                match types.get_mut(name.as_ref()) {
                    Some(mask) => *mask |= bit,
                    None => {
                        types.insert(name.to_string(), bit);
                    }
                }
            }
        }
    }

    /// One reject record: {"file","line","reason","target","message","offset","raw"}, as
    /// `split` writes them (`raw_base64` instead of `raw` for a line that is not UTF-8).
    #[cold]
    fn reject(
        &mut self,
        line_no: u64,
        raw: &[u8],
        reason: Reason,
        for_target: bool,
        message: &str,
        offset: usize,
    ) {
        self.counts.rejected += 1;
        *self.counts.reasons.entry(reason.code()).or_default() += 1;
        RejectRecord {
            file: &self.file,
            line: self.line_numbers.then_some(line_no),
            reason,
            target: self.target.as_deref().filter(|_| for_target),
            message,
            offset,
            raw,
        }
        .write(&mut self.rejects);
    }
}

impl VarColumn {
    /// Row `i` (for tests and callers that read a batch back).
    pub fn get(&self, i: usize) -> &[u8] {
        let at = |k: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&self.offsets[k * 8..k * 8 + 8]);
            i64::from_le_bytes(b) as usize
        };
        &self.data[at(i)..at(i + 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le_u64(b: &[u8], i: usize) -> u64 {
        u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap())
    }

    fn build(keys: &[(&str, TypeTag)], input: &[u8], chunk: usize) -> (ColumnBuilder, Batch) {
        let keys = keys.iter().map(|(n, t)| (n.to_string(), *t)).collect();
        let mut b = ColumnBuilder::new(keys, Some("T".into()), Shape::ExportLine, true).unwrap();
        b.begin_file("data/a.json", true);
        for c in input.chunks(chunk) {
            b.feed(c).unwrap();
        }
        b.end_file().unwrap();
        let batch = b.take_batch();
        (b, batch)
    }

    #[test]
    fn key_hash_is_xxh3_of_the_typed_key_and_ignores_how_it_was_written() {
        let input = concat!(
            r#"{"Item":{"pk":{"S":"a"},"n":{"N":"1.50"},"b":{"B":"AAE="},"v":{"S":"x"}}}"#,
            "\n",
            r#"{"Item":{"v":{"S":"y"},"b":{"B":"AAE="},"n":{"N":"15E-1"},"pk":{"S":"a"}}}"#,
            "\n",
            r#"{"Item":{"pk":{"S":"a"},"n":{"N":"1.5"},"b":{"B":"AAI="}}}"#,
            "\n",
        );
        let keys = [("pk", TypeTag::S), ("n", TypeTag::N), ("b", TypeTag::B)];
        let (_, batch) = build(&keys, input.as_bytes(), 7);
        assert_eq!(batch.key_hash.len(), 3 * 8);
        let mut want = Vec::new();
        key_encoding(&mut want, b'S', b"a");
        key_encoding(&mut want, b'N', b"1.5");
        key_encoding(&mut want, b'B', &[0, 1]);
        let spelled: &[&[u8]] = &[
            b"S\x01\x00\x00\x00a",
            b"N\x03\x00\x00\x001.5",
            b"B\x02\x00\x00\x00\x00\x01",
        ];
        assert_eq!(want, spelled.concat());
        assert_eq!(
            le_u64(&batch.key_hash, 0),
            xxhash_rust::xxh3::xxh3_64(&want)
        );
        assert_eq!(le_u64(&batch.key_hash, 1), le_u64(&batch.key_hash, 0));
        assert_ne!(le_u64(&batch.key_hash, 2), le_u64(&batch.key_hash, 0));
        // Without key columns there is no key hash.
        let (_, batch) = build(&[], input.as_bytes(), 64);
        assert!(batch.key_hash.is_empty());
    }

    #[test]
    fn builds_key_item_hash_file_and_line_columns() {
        let input = concat!(
            r#"{"Item":{"pk":{"S":"u#1"},"sk":{"N":"1.50"},"b":{"B":"AAE="},"x":{"SS":["b","a"]}}}"#,
            "\n\n",
            r#"{"Item":{"pk":{"S":"u#2"},"sk":{"N":"0.1"},"b":{"B":"/w=="}}}"#,
            "\n",
            r#"{"Item":{"pk":{"S":"u#3"}}}"#,
            "\n",
            r#"{"Item":{"pk":{"N":"3"},"sk":{"N":"1"},"b":{"B":"AA=="}}}"#,
            "\n",
            r#"{"Item":{"pk":{"S":"u#4"},"sk":{"N":"NaN"}}}"#,
            "\n",
        );
        let keys = [("pk", TypeTag::S), ("sk", TypeTag::N), ("b", TypeTag::B)];
        for chunk in [1, 7, 1 << 20] {
            let (mut b, batch) = build(&keys, input.as_bytes(), chunk);
            assert_eq!(batch.rows, 2);
            let KeyColumn::S(pk) = &batch.keys[0] else {
                panic!()
            };
            assert_eq!(pk.get(0), b"u#1");
            assert_eq!(pk.get(1), b"u#2");
            let KeyColumn::N { text, float, valid } = &batch.keys[1] else {
                panic!()
            };
            assert_eq!(text.get(0), b"1.5");
            assert_eq!(text.get(1), b"0.1");
            assert_eq!(f64::from_le_bytes(float[0..8].try_into().unwrap()), 1.5);
            assert_eq!((valid.bits[0], valid.nulls), (0b01, 1)); // 0.1 is no double
            let KeyColumn::B(bin) = &batch.keys[2] else {
                panic!()
            };
            assert_eq!(bin.get(0), &[0, 1]);
            assert_eq!(bin.get(1), &[255]);
            let item0 = batch.item.get(0);
            assert_eq!(
                item0,
                br#"{"b":{"B":"AAE="},"pk":{"S":"u#1"},"sk":{"N":"1.5"},"x":{"SS":["a","b"]}}"#
            );
            assert_eq!(le_u64(&batch.hash, 0), canonical::hash(item0));
            assert_eq!(batch.files, vec!["data/a.json".to_string()]);
            assert_eq!(batch.file_index, vec![0, 0, 0, 0, 0, 0, 0, 0]);
            assert_eq!(le_u64(&batch.line, 0), 1);
            assert_eq!(le_u64(&batch.line, 1), 3); // line 2 was blank
            assert_eq!(batch.line_valid.nulls, 0);

            let c = b.counts();
            assert_eq!((c.read, c.items, c.rejected), (5, 2, 3));
            let rejects = String::from_utf8(b.take_rejects()).unwrap();
            let lines: Vec<&str> = rejects.lines().collect();
            assert_eq!(lines.len(), 3);
            assert!(lines[0].starts_with(
                r#"{"file":"data/a.json","line":4,"reason":"missing_key","target":"T","#
            ));
            assert!(lines[1].contains(r#""line":5,"reason":"wrong_key_type""#));
            assert!(lines[2].contains(r#""line":6,"reason":"invalid_number","target":null"#));
            let types = b.attribute_types().unwrap();
            assert_eq!(types["pk"], 1 << 0); // S only: the N one was rejected
            assert_eq!(types["x"], 1 << 7); // SS
        }
    }

    #[test]
    fn batches_track_their_own_files() {
        let keys = vec![("k".to_string(), TypeTag::S)];
        let mut b = ColumnBuilder::new(keys, None, Shape::ExportLine, false).unwrap();
        b.begin_file("one", true);
        b.feed(b"{\"Item\":{\"k\":{\"S\":\"1\"}}}\n").unwrap();
        b.end_file().unwrap();
        b.begin_file("two", false);
        b.feed(b"{\"Item\":{\"k\":{\"S\":\"2\"}}}\n").unwrap();
        let first = b.take_batch();
        b.feed(b"{\"Item\":{\"k\":{\"S\":\"3\"}}}").unwrap();
        b.end_file().unwrap();
        let second = b.take_batch();
        assert_eq!(first.files, vec!["one", "two"]);
        assert_eq!(first.file_index, [0i32, 1].map(i32::to_le_bytes).concat());
        assert_eq!(
            (first.line_valid.bits[0], first.line_valid.nulls),
            (0b01, 1)
        );
        assert_eq!(second.files, vec!["two"]);
        assert_eq!(second.rows, 1);
        assert_eq!(second.item.get(0), br#"{"k":{"S":"3"}}"#);
    }

    #[test]
    fn refuses_non_scalar_key_types() {
        let keys = vec![("k".to_string(), TypeTag::Ss)];
        assert!(ColumnBuilder::new(keys, None, Shape::ExportLine, false).is_err());
    }
}
