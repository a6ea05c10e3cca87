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
//!
//! A routed copy also keeps each row's source key (`source_key` column): the routing engine
//! (`split::Splitter::keep_source_key`) makes one per line it writes, and they are fed here
//! beside the lines (`feed_source_keys`), taken one per line read, in order.

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
    /// The source key of each row (wire DynamoDB JSON, UTF-8), when built with source keys;
    /// else no rows.
    pub source_key: VarColumn,
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
    /// Source keys fed and not yet taken (one per line), when built with source keys.
    pending_keys: Option<PendingKeys>,
    /// A line came with no source key to take: the two inputs are out of step.
    keys_short: bool,
}

/// Source-key lines waiting for their item lines: `data[at..]` holds the ones not taken.
#[derive(Debug, Default)]
struct PendingKeys {
    data: Vec<u8>,
    at: usize,
}

impl PendingKeys {
    fn feed(&mut self, data: &[u8]) {
        // Drop what was taken before growing the buffer, so it holds only what is pending.
        if self.at > 0 {
            self.data.drain(..self.at);
            self.at = 0;
        }
        self.data.extend_from_slice(data);
    }

    /// The next key (without its newline), if one is fed.
    fn take(&mut self) -> Option<(usize, usize)> {
        let rest = &self.data[self.at..];
        let end = memchr::memchr(b'\n', rest)?;
        let span = (self.at, self.at + end);
        self.at += end + 1;
        Some(span)
    }

    fn is_empty(&self) -> bool {
        self.at == self.data.len()
    }
}

impl ColumnBuilder {
    /// `keys`: the key attributes and their types (S, N or B), hash key first. With
    /// `track_types`, the types of every top-level attribute are recorded (`attribute_types`).
    /// With `source_keys`, every line read takes the next source key fed
    /// (`feed_source_keys`) into the `source_key` column.
    pub fn new(
        keys: Vec<(String, TypeTag)>,
        target: Option<String>,
        shape: Shape,
        track_types: bool,
        source_keys: bool,
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
            pending_keys: source_keys.then(PendingKeys::default),
            keys_short: false,
        })
    }

    /// Source keys, one JSON line per item line to come, in the order of the lines (the
    /// routing engine's `drain_source_keys`). Feed them before the lines they belong to.
    pub fn feed_source_keys(&mut self, data: &[u8]) -> Result<(), Error> {
        match self.pending_keys.as_mut() {
            Some(p) => {
                p.feed(data);
                Ok(())
            }
            None => Err(Error::Config(
                "source keys fed to a builder made without them".into(),
            )),
        }
    }

    /// Refuses to go on once a line had no source key: every key after it would be another
    /// item's.
    fn check_keys_in_step(&self) -> Result<(), Error> {
        if self.keys_short {
            return Err(Error::Config(format!(
                "{}: a line came before its source key (source keys out of step with lines)",
                self.file
            )));
        }
        Ok(())
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
        result?;
        self.check_keys_in_step()
    }

    /// Ends the current file: its last line, and the check for a truncated stream.
    pub fn end_file(&mut self) -> Result<(), Error> {
        let mut reader = self
            .reader
            .take()
            .ok_or_else(|| Error::Config("end_file before begin_file".into()))?;
        let result = reader.finish(&mut |e| self.on_line(e));
        self.reader = Some(reader);
        result?;
        self.check_keys_in_step()?;
        if self.pending_keys.as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(Error::Config(format!(
                "{}: source keys left over at the end of the file (out of step with lines)",
                self.file
            )));
        }
        Ok(())
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
        self.batch.item.data.len() + self.batch.source_key.data.len() + keys + self.batch.rows * 40
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
            source_key: like_var(&old.source_key),
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
        // Every line takes its key, refused or not, so the next line gets its own.
        let key = match self.pending_keys.as_mut() {
            None => None,
            Some(p) => match p.take() {
                Some(span) => Some(span),
                None => {
                    self.keys_short = true;
                    return;
                }
            },
        };
        if self.keys_short {
            return;
        }
        let rows = self.batch.rows;
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
        if let (Some((from, to)), Some(p)) = (key, self.pending_keys.as_ref()) {
            if self.batch.rows > rows {
                let col = &mut self.batch.source_key;
                col.data.extend_from_slice(&p.data[from..to]);
                col.end_row();
            }
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
        let mut b =
            ColumnBuilder::new(keys, Some("T".into()), Shape::ExportLine, true, false).unwrap();
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
        let mut b = ColumnBuilder::new(keys, None, Shape::ExportLine, false, false).unwrap();
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
        assert!(ColumnBuilder::new(keys, None, Shape::ExportLine, false, false).is_err());
    }

    mod source_keys {
        use super::*;
        use crate::output::shard::Codec;
        use crate::route::expr::Condition;
        use crate::route::target::Target;
        use crate::route::transform::{Template, Transform};
        use crate::split::{Route, Splitter, Unmatched};

        fn target(name: &str, kind: &str, key: &[(&str, TypeTag)], set: &[(&str, &str)]) -> Target {
            let values = vec![(":k".to_string(), Value::S(kind.to_string().into()))];
            let set = set
                .iter()
                .map(|(a, t)| (a.to_string(), Template::parse(t, &[]).unwrap()))
                .collect();
            Target {
                name: name.into(),
                condition: Some(Condition::parse("begins_with(kind, :k)", &[], &values).unwrap()),
                transform: Transform {
                    keep: None,
                    drop: vec!["pk".into()],
                    rename: vec![],
                    set,
                },
                hash_key: (key[0].0.into(), key[0].1),
                range_key: key.get(1).map(|(n, t)| (n.to_string(), *t)),
                index_keys: vec![],
                shards: 1,
            }
        }

        /// Routes `input` through two targets keeping the source key (pk, sk) and builds each
        /// target's columns from the lines and keys drained, in chunks of `chunk` bytes.
        fn routed(route: Route, input: &str, chunk: usize) -> (Splitter, Vec<Batch>, Vec<u64>) {
            // A: keyed by a template over a non-key attribute and the range key.
            let a = target(
                "A",
                "a",
                &[("cid", TypeTag::S)],
                &[("cid", "C#{user}#{sk}")],
            );
            // B: keyed by the source's range key and a copy of the (binary) user attribute.
            let b = target("B", "", &[("user", TypeTag::B), ("sk", TypeTag::N)], &[]);
            let mut sp = Splitter::new(vec![a, b], route, Unmatched::Drop, Codec::None, 1).unwrap();
            sp.keep_source_key(vec!["pk".into(), "sk".into()]).unwrap();
            let keys = [
                vec![("cid".to_string(), TypeTag::S)],
                vec![
                    ("user".to_string(), TypeTag::B),
                    ("sk".to_string(), TypeTag::N),
                ],
            ];
            let mut builders: Vec<ColumnBuilder> = keys
                .iter()
                .map(|k| {
                    let mut b = ColumnBuilder::new(k.clone(), None, Shape::ExportLine, false, true)
                        .unwrap();
                    b.begin_file("f", false);
                    b
                })
                .collect();
            let pump = |sp: &mut Splitter, builders: &mut Vec<ColumnBuilder>| {
                let mut keys = vec![Vec::new(); 2];
                sp.drain_source_keys(|t, k| keys[t].extend_from_slice(k));
                let mut lines = vec![Vec::new(); 2];
                sp.drain_shards(|t, _, l| lines[t].extend_from_slice(l));
                for t in 0..2 {
                    builders[t].feed_source_keys(&keys[t]).unwrap();
                    builders[t].feed(&lines[t]).unwrap();
                }
            };
            sp.begin_file("src");
            for c in input.as_bytes().chunks(chunk) {
                sp.feed(c).unwrap();
                pump(&mut sp, &mut builders);
            }
            sp.end_file().unwrap();
            pump(&mut sp, &mut builders);
            let mut batches = Vec::new();
            let mut rows = Vec::new();
            for b in &mut builders {
                b.end_file().unwrap();
                rows.push(b.counts().items);
                batches.push(b.take_batch());
            }
            (sp, batches, rows)
        }

        fn keys_of(batch: &Batch) -> Vec<String> {
            (0..batch.rows)
                .map(|i| String::from_utf8(batch.source_key.get(i).to_vec()).unwrap())
                .collect()
        }

        const INPUT: &str = concat!(
            // To A only (its kind starts with "a", B takes every kind: with "all" also B).
            r#"{"Item":{"pk":{"S":"p1"},"sk":{"N":"1.50"},"kind":{"S":"a"},"user":{"B":"AAE="}}}"#,
            "\n",
            // B only, with route first (A's condition fails): a binary pk.
            r#"{"Item":{"pk":{"B":"/+8="},"sk":{"N":"-0.00012E+5"},"kind":{"S":"b"},"user":{"B":"Ag=="}}}"#,
            "\n",
            // Without sk: refused by every target it matches, with no row and no key taken.
            r#"{"Item":{"pk":{"S":"p3"},"kind":{"S":"a"},"user":{"B":"AAE="}}}"#,
            "\n",
            // A takes it; with route all B refuses it (its `user` key is declared B): the
            // key goes to A's rows only, and B's keys stay in step with B's lines.
            r#"{"Item":{"pk":{"S":"p4"},"sk":{"N":"7"},"kind":{"S":"a"},"user":{"S":"u"}}}"#,
            "\n",
        );

        #[test]
        fn route_first_keys_each_row_by_its_source_item_with_numbers_and_binaries_as_read() {
            for chunk in [1, 13, 1 << 20] {
                let (sp, batches, rows) = routed(Route::First, INPUT, chunk);
                assert_eq!(rows, vec![2, 1]);
                assert_eq!(
                    keys_of(&batches[0]),
                    vec![
                        r#"{"pk":{"S":"p1"},"sk":{"N":"1.50"}}"#,
                        r#"{"pk":{"S":"p4"},"sk":{"N":"7"}}"#
                    ]
                );
                let KeyColumn::S(cid) = &batches[0].keys[0] else {
                    panic!()
                };
                assert_eq!(cid.get(0), b"C#AAE=#1.50");
                assert_eq!(
                    keys_of(&batches[1]),
                    vec![r#"{"pk":{"B":"/+8="},"sk":{"N":"-0.00012E+5"}}"#]
                );
                let c = sp.counts();
                assert_eq!((c.read, c.written, c.rejected), (4, 3, 1));
                assert_eq!(c.target_rejected[0]["missing_key"], 1);
            }
        }

        #[test]
        fn route_all_gives_an_item_routed_to_two_targets_its_key_in_both() {
            let (sp, batches, rows) = routed(Route::All, INPUT, 7);
            assert_eq!(rows, vec![2, 2]);
            let a = keys_of(&batches[0]);
            let b = keys_of(&batches[1]);
            assert_eq!(a[0], b[0]); // p1 went to both
            assert_eq!(a[1], r#"{"pk":{"S":"p4"},"sk":{"N":"7"}}"#);
            let c = sp.counts();
            // p3 is refused by both targets it matches: one item, two records.
            assert_eq!(c.target_rejected[0]["missing_key"], 1);
            assert_eq!(c.target_rejected[1]["missing_key"], 1);
            assert_eq!(c.target_rejected[1]["wrong_key_type"], 1);
            assert_eq!((c.written, c.rejected), (3, 1));
            // The key goes with the row: p1's cid and user in the same rows as its key.
            let KeyColumn::B(user) = &batches[1].keys[0] else {
                panic!()
            };
            assert_eq!(user.get(1), &[2]);
            assert_eq!(b[1], r#"{"pk":{"B":"/+8="},"sk":{"N":"-0.00012E+5"}}"#);
        }

        #[test]
        fn keys_out_of_step_with_lines_are_an_error_not_a_shift() {
            let keys = vec![("k".to_string(), TypeTag::S)];
            let mut b =
                ColumnBuilder::new(keys.clone(), None, Shape::ExportLine, false, true).unwrap();
            b.begin_file("f", false);
            b.feed_source_keys(b"{\"pk\":{\"S\":\"1\"}}\n").unwrap();
            let two = b"{\"Item\":{\"k\":{\"S\":\"1\"}}}\n{\"Item\":{\"k\":{\"S\":\"2\"}}}\n";
            assert!(b.feed(two).is_err());
            let mut b =
                ColumnBuilder::new(keys.clone(), None, Shape::ExportLine, false, true).unwrap();
            b.begin_file("f", false);
            b.feed_source_keys(b"{\"pk\":{\"S\":\"1\"}}\n{\"pk\":{\"S\":\"2\"}}\n")
                .unwrap();
            b.feed(&two[..25]).unwrap();
            assert!(b.end_file().is_err()); // one key left over
            let mut plain =
                ColumnBuilder::new(keys, None, Shape::ExportLine, false, false).unwrap();
            assert!(plain.feed_source_keys(b"{}\n").is_err());
        }

        #[test]
        fn several_shards_cannot_keep_source_keys() {
            let mut t = target("A", "a", &[("cid", TypeTag::S)], &[]);
            t.shards = 2;
            let mut sp =
                Splitter::new(vec![t], Route::First, Unmatched::Drop, Codec::None, 1).unwrap();
            assert!(sp.keep_source_key(vec!["pk".into()]).is_err());
        }
    }
}
