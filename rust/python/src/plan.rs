//! What `stream_records` will make of each record, worked out without Python: a flat list of
//! steps (`Op`) that `build` turns into Python objects.
//!
//! Everything that needs no Python object is done here, so that it can run on a thread of its
//! own while the caller's thread builds the objects of the records before (see `records`):
//! deciding which texts are one shared `str` or `Decimal` (each distinct short text gets a
//! number the first time it is met; later uses name that number), which attribute maps have
//! the same names in the same order (so that `build` can copy a finished dict of that shape
//! instead of growing a new one), which numbers are plain integers, and base64 decoding.
//!
//! The steps are in postfix order: a value's parts come before the step that makes it from
//! them (a map's names and values, then `Map`), and a record's eight fields before `Record`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use ddbshard_core::model::binary;
use ddbshard_core::parse::{EventName, StreamRecord};
use ddbshard_core::{Map, Value};

use crate::model::{plain_int, SHARED_TEXT_BYTES};

/// One step of building. "Remembered" objects are numbered in the order they are made, from
/// 0, texts and numbers alike; `Seen(n)` is the object remembered n-th.
pub enum Op<'a> {
    /// A `str` of this text, remembered.
    Str(&'a str),
    /// A `str` of this text, made for this one place.
    FreshStr(Cow<'a, str>),
    /// `Decimal(int)`, remembered.
    Int(i64),
    /// `Decimal(text)`, remembered.
    Number(&'a str),
    /// A `Decimal` of this text, made for this one place.
    FreshNumber(Cow<'a, str>),
    Seen(u32),
    Bytes(Vec<u8>),
    Bool(bool),
    /// `None`: a NULL value, or a record's field that is absent.
    None,
    /// A dict of the `len` name, value pairs before it. `shape` numbers its names in their
    /// order (`NO_SHAPE` when some name is not remembered).
    Map {
        len: u32,
        shape: u32,
    },
    List(u32),
    /// A set of the `len` members before it.
    Set(u32),
    /// A `StreamRecord` of the eight values before it: keys, new, old, sequence, event_id,
    /// source_arn, table, view_type.
    Record {
        index: usize,
        name: EventName,
        time_us: Option<i64>,
    },
    /// A binary that would not decode: the call fails here with this message.
    Fail(&'static str),
}

pub const NO_SHAPE: u32 = u32::MAX;

/// FxHash (rustc's): the texts are short and come from the call's own input.
#[derive(Default)]
pub struct FxHasher(u64);

const FX_K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_K);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The planner of one call: what it has numbered so far.
#[derive(Default)]
pub struct Plan<'a> {
    texts: FxMap<&'a str, u32>,
    numbers: FxMap<&'a str, u32>,
    shapes: FxMap<Vec<u32>, u32>,
    remembered: u32,
    /// The names of the maps being planned, innermost last (a stack of their numbers).
    names: Vec<u32>,
}

impl<'a> Plan<'a> {
    /// Appends the steps that make `r`.
    pub fn record(&mut self, r: &StreamRecord<'a>, ops: &mut Vec<Op<'a>>) {
        self.map(&r.keys, ops);
        for image in [&r.new, &r.old] {
            match image {
                Some(m) => self.map(m, ops),
                None => ops.push(Op::None),
            }
        }
        // A record's own id and sequence number are unique to it; its stream, table and view
        // type are the same for every record of an event, however long.
        for unique in [&r.sequence, &r.event_id] {
            ops.push(match unique {
                Some(s) => Op::FreshStr(s.clone()),
                None => Op::None,
            });
        }
        for shared in [&r.source_arn, &r.table, &r.view_type] {
            match shared {
                Some(Cow::Borrowed(s)) => {
                    self.text(s, ops);
                }
                Some(owned) => ops.push(Op::FreshStr(owned.clone())),
                None => ops.push(Op::None),
            }
        }
        ops.push(Op::Record {
            index: r.index,
            name: r.name,
            time_us: r.time_us,
        });
    }

    /// The number of the next object remembered.
    fn remember(&mut self) -> u32 {
        let n = self.remembered;
        self.remembered += 1;
        n
    }

    /// A remembered `str` of `s`; returns its number.
    fn text(&mut self, s: &'a str, ops: &mut Vec<Op<'a>>) -> u32 {
        if let Some(&n) = self.texts.get(s) {
            ops.push(Op::Seen(n));
            return n;
        }
        let n = self.remember();
        self.texts.insert(s, n);
        ops.push(Op::Str(s));
        n
    }

    /// Only text borrowed from the input is shared: it outlives the call, where the text of a
    /// string with escapes is decoded into a buffer of its own. Long texts rarely recur, and
    /// hashing them would cost about what sharing saves.
    #[allow(clippy::ptr_arg)] // the Cow's variant is the point: only borrowed text is shared
    fn str(&mut self, s: &Cow<'a, str>, ops: &mut Vec<Op<'a>>) -> Option<u32> {
        match s {
            Cow::Borrowed(s) if s.len() <= SHARED_TEXT_BYTES => Some(self.text(s, ops)),
            _ => {
                ops.push(Op::FreshStr(s.clone()));
                None
            }
        }
    }

    #[allow(clippy::ptr_arg)] // as for `str`
    fn number(&mut self, n: &Cow<'a, str>, ops: &mut Vec<Op<'a>>) {
        let Cow::Borrowed(text) = n else {
            ops.push(Op::FreshNumber(n.clone()));
            return;
        };
        if text.len() > SHARED_TEXT_BYTES {
            ops.push(Op::FreshNumber(n.clone()));
            return;
        }
        if let Some(&seen) = self.numbers.get(text) {
            ops.push(Op::Seen(seen));
            return;
        }
        let seen = self.remember();
        self.numbers.insert(text, seen);
        ops.push(match plain_int(text) {
            Some(i) => Op::Int(i),
            None => Op::Number(text),
        });
    }

    fn map(&mut self, map: &Map<'a>, ops: &mut Vec<Op<'a>>) {
        let start = self.names.len();
        let mut shaped = true;
        for (k, v) in map {
            match self.str(k, ops) {
                Some(n) => self.names.push(n),
                None => shaped = false,
            }
            self.value(v, ops);
        }
        let shape = if shaped {
            let names = &self.names[start..];
            match self.shapes.get(names) {
                Some(&shape) => shape,
                None => {
                    let shape = u32::try_from(self.shapes.len()).unwrap_or(NO_SHAPE);
                    self.shapes.insert(names.to_vec(), shape);
                    shape
                }
            }
        } else {
            NO_SHAPE
        };
        self.names.truncate(start);
        ops.push(Op::Map {
            len: count(map.len()),
            shape,
        });
    }

    fn value(&mut self, v: &Value<'a>, ops: &mut Vec<Op<'a>>) {
        match v {
            Value::S(s) => {
                self.str(s, ops);
            }
            Value::N(n) => self.number(n, ops),
            Value::B(b) => ops.push(bytes(b)),
            Value::Bool(b) => ops.push(Op::Bool(*b)),
            Value::Null => ops.push(Op::None),
            Value::M(m) => self.map(m, ops),
            Value::L(l) => {
                for e in l {
                    self.value(e, ops);
                }
                ops.push(Op::List(count(l.len())));
            }
            Value::Ss(s) => {
                for m in s {
                    self.str(m, ops);
                }
                ops.push(Op::Set(count(s.len())));
            }
            Value::Ns(s) => {
                for m in s {
                    self.number(m, ops);
                }
                ops.push(Op::Set(count(s.len())));
            }
            Value::Bs(s) => {
                for m in s {
                    ops.push(bytes(m));
                }
                ops.push(Op::Set(count(s.len())));
            }
        }
    }
}

fn bytes<'a>(b64: &str) -> Op<'a> {
    match binary::decode(b64) {
        Ok(raw) => Op::Bytes(raw),
        Err(e) => Op::Fail(e),
    }
}

/// A container's length: an item is at most 400 KB, so far below u32's range.
fn count(n: usize) -> u32 {
    u32::try_from(n).expect("a DynamoDB container holds fewer than 2^32 values")
}
