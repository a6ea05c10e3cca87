//! What `stream_records` will make of each record, worked out without Python: a flat list of
//! steps (`Op`) that `build` turns into Python objects.
//!
//! Everything that needs no Python object is done here, so that it can run on a thread of its
//! own while the caller's thread builds the objects of the records before (see `records`):
//! deciding which texts are one shared `str` or `Decimal` (each distinct short text gets a
//! number the first time it is met; later uses name that number), which attribute maps have
//! the same names in the same order as one before (so that their names need no steps), which
//! numbers are plain integers, and base64 decoding.
//!
//! The steps are in postfix order: a value's parts come before the step that makes it from
//! them (a map's names and values, then `Map`), and a record's eight fields before `Record`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use ddbshard_core::model::binary;
use ddbshard_core::parse::{EventName, StreamRecord};
use ddbshard_core::{Map, Value};

use crate::model::{fx_hash, plain_int, SHARED_TEXT_BYTES};

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
    /// A dict of `len` values. `named`: the `len` names before them are its names, in order;
    /// otherwise its names are those of the first map of its `shape` (the number of its names
    /// in their order; `NO_SHAPE` when some name is not remembered, and then it is `named`).
    Map {
        len: u32,
        shape: u32,
        named: bool,
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
/// In a map's list of name numbers, a name that is not remembered (escaped, or long).
const NOT_REMEMBERED: u32 = u32::MAX;

/// The planner of one call: what it has numbered so far.
pub struct Plan<'a> {
    names: Numbered<'a>,
    texts: Numbered<'a>,
    numbers: Numbered<'a>,
    shapes: HashMap<Vec<u32>, u32, BuildHasherDefault<ShapeHasher>>,
    remembered: u32,
    /// The names of the maps being planned, innermost last (a stack of their numbers).
    shaping: Vec<u32>,
}

/// Texts are remembered in direct-mapped tables (`Numbered`): a lookup is a hash of a short
/// text and one comparison, hit or miss, and a text pushed out by another is only made again.
/// An event's records share their attribute names (a few dozen) and many values: room for a
/// few thousand distinct ones in a large event, and as many as its size suggests in a small
/// one, where clearing the tables would cost more than the lookups.
const NAME_SLOTS: usize = 256;
const TEXT_SLOTS: usize = 8192;
const NUMBER_SLOTS: usize = 4096;
/// JSON bytes per distinct text and per distinct map shape to expect (1.35 MB of synthetic
/// images: 6,700 texts, 449 shapes), so that the tables need not grow as they fill.
const BYTES_PER_TEXT: usize = 128;
const BYTES_PER_SHAPE: usize = 2048;

impl<'a> Plan<'a> {
    /// For an event of `len` bytes of JSON.
    pub fn new(len: usize) -> Self {
        let expect = len / BYTES_PER_TEXT;
        Plan {
            names: Numbered::new(expect.min(NAME_SLOTS)),
            texts: Numbered::new(expect.min(TEXT_SLOTS)),
            numbers: Numbered::new(expect.min(NUMBER_SLOTS)),
            shapes: HashMap::with_capacity_and_hasher(len / BYTES_PER_SHAPE, Default::default()),
            remembered: 0,
            shaping: Vec::new(),
        }
    }

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

    /// A remembered `str` of `s`.
    fn text(&mut self, s: &'a str, ops: &mut Vec<Op<'a>>) {
        let next = self.remembered;
        let n = self.texts.number(s, next);
        if n == next {
            self.remembered += 1;
            ops.push(Op::Str(s));
        } else {
            ops.push(Op::Seen(n));
        }
    }

    /// Only text borrowed from the input is shared: it outlives the call, where the text of a
    /// string with escapes is decoded into a buffer of its own. Long texts rarely recur, and
    /// hashing them would cost about what sharing saves.
    #[allow(clippy::ptr_arg)] // the Cow's variant is the point: only borrowed text is shared
    fn str(&mut self, s: &Cow<'a, str>, ops: &mut Vec<Op<'a>>) {
        match s {
            Cow::Borrowed(s) if s.len() <= SHARED_TEXT_BYTES => self.text(s, ops),
            _ => ops.push(Op::FreshStr(s.clone())),
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
        let next = self.remembered;
        let seen = self.numbers.number(text, next);
        if seen != next {
            ops.push(Op::Seen(seen));
            return;
        }
        self.remembered += 1;
        ops.push(match plain_int(text) {
            Some(i) => Op::Int(i),
            None => Op::Number(text),
        });
    }

    /// A map whose names, in order, were all met before in one map (its shape is known) is
    /// planned as its values alone: `build` has that map's names.
    /// Otherwise its names come first, then its values.
    fn map(&mut self, map: &Map<'a>, ops: &mut Vec<Op<'a>>) {
        let start = self.shaping.len();
        let first_new = self.remembered;
        let mut shaped = true;
        for (k, _) in map {
            match k {
                Cow::Borrowed(k) if k.len() <= SHARED_TEXT_BYTES => {
                    let next = self.remembered;
                    let n = self.names.number(k, next);
                    if n == next {
                        self.remembered += 1;
                    }
                    self.shaping.push(n);
                }
                _ => {
                    shaped = false;
                    self.shaping.push(NOT_REMEMBERED);
                }
            }
        }
        let end = self.shaping.len();
        let known = if shaped {
            self.shapes.get(&self.shaping[start..end]).copied()
        } else {
            None
        };
        if known.is_none() {
            for (i, (k, _)) in map.iter().enumerate() {
                let n = self.shaping[start + i];
                ops.push(match k {
                    Cow::Borrowed(k) if n >= first_new && n != NOT_REMEMBERED => Op::Str(k),
                    _ if n != NOT_REMEMBERED => Op::Seen(n),
                    _ => Op::FreshStr(k.clone()),
                });
            }
        }
        for (_, v) in map {
            self.value(v, ops);
        }
        let len = count(map.len());
        let op = match known {
            Some(shape) => Op::Map {
                len,
                shape,
                named: false,
            },
            // The shape is numbered only now, after the values: a map nested in this one
            // cannot be built from it before it exists. A nested map with the same names
            // (`{"a": {"M": {"a": ...}}}`) was built first and numbered the shape already;
            // this map then has its names made for it and numbers nothing, as `build` keeps
            // one list of names per number.
            None if shaped => {
                let names = &self.shaping[start..end];
                let shape = if self.shapes.contains_key(names) {
                    NO_SHAPE
                } else {
                    u32::try_from(self.shapes.len()).unwrap_or(NO_SHAPE)
                };
                if shape != NO_SHAPE {
                    self.shapes.insert(names.to_vec(), shape);
                }
                Op::Map {
                    len,
                    shape,
                    named: true,
                }
            }
            None => Op::Map {
                len,
                shape: NO_SHAPE,
                named: true,
            },
        };
        self.shaping.truncate(start);
        ops.push(op);
    }

    fn value(&mut self, v: &Value<'a>, ops: &mut Vec<Op<'a>>) {
        match v {
            Value::S(s) => self.str(s, ops),
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

/// A map's names in order (their numbers) hashed as FxHash would: they come from the call's
/// own input, so there is no flooding to guard against with SipHash.
#[derive(Default)]
struct ShapeHasher(u64);

const FX_K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for ShapeHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = self.0.rotate_left(5) ^ fx_hash(bytes);
    }

    fn finish(&self) -> u64 {
        // A multiply leaves the low bits of its product, which pick the map's bucket, made of
        // the low bits of its input alone; a name number in the high half of the last word
        // (the last of an even count) would not move them, and every shape differing only in
        // that name would land in one bucket, each lookup probing them all. Folding the high
        // half into the low one before a last multiply lets every name move them.
        (self.0 ^ (self.0 >> 32)).wrapping_mul(FX_K)
    }
}

/// The numbers given to recent texts: one slot per hash, a newer text taking the slot of an
/// older one. A slot holds the first 16 bytes of its text, so that telling a short text (most
/// names and values) from another needs no read of the event where the text was first met,
/// which is by now far out of the CPU's cache.
struct Numbered<'a> {
    slots: Vec<Slot<'a>>,
    shift: u32,
}

#[derive(Clone, Copy)]
struct Slot<'a> {
    text: &'a str,
    /// Two words rather than a u128, whose 16-byte alignment would make a slot 48 bytes.
    head: [u64; 2],
    number: u32,
}

const HEAD_BYTES: usize = 16;

impl<'a> Numbered<'a> {
    fn new(slots: usize) -> Self {
        let slots = slots.next_power_of_two().max(16);
        let empty = Slot {
            text: "",
            head: [0; 2],
            number: u32::MAX,
        };
        Numbered {
            slots: vec![empty; slots],
            shift: 64 - slots.trailing_zeros(),
        }
    }

    /// The number of `text`: the one it was given, or `next` if it is not in the table (or
    /// was pushed out), which it is given now.
    #[inline]
    fn number(&mut self, text: &'a str, next: u32) -> u32 {
        let bytes = text.as_bytes();
        let (hash, head) = hash_and_head(bytes);
        let slot = &mut self.slots[(hash >> self.shift) as usize];
        if slot.number != u32::MAX
            && slot.text.len() == bytes.len()
            && slot.head == head
            && (bytes.len() <= HEAD_BYTES
                || slot.text.as_bytes()[HEAD_BYTES..] == bytes[HEAD_BYTES..])
        {
            return slot.number;
        }
        *slot = Slot {
            text,
            head,
            number: next,
        };
        next
    }
}

/// A hash of `bytes` (FxHash's multiply and rotate, over eight bytes at a time) and two words
/// that tell apart any two texts of the same length up to 16 bytes: their bytes read
/// with overlapping loads (no copy into a buffer, no call to memcpy).
#[inline]
fn hash_and_head(bytes: &[u8]) -> (u64, [u64; 2]) {
    const K: u64 = FX_K;
    let len = bytes.len();
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| {
        u64::from(u32::from_le_bytes(
            bytes[at..at + 4].try_into().expect("4 bytes"),
        ))
    };
    let (lo, hi) = match len {
        0 => (0, 0),
        1..=3 => {
            let b = |at: usize| u64::from(bytes[at]);
            (b(0) | b(len / 2) << 8 | b(len - 1) << 16, 0)
        }
        4..=7 => (half(0) | half(len - 4) << 32, 0),
        8..=15 => (word(0), word(len - 8)),
        _ => (word(0), word(8)),
    };
    let mut h = ((len as u64) ^ lo).wrapping_mul(K);
    h = (h.rotate_left(5) ^ hi).wrapping_mul(K);
    if len > HEAD_BYTES {
        let mut at = HEAD_BYTES;
        while at + 8 <= len {
            h = (h.rotate_left(5) ^ word(at)).wrapping_mul(K);
            at += 8;
        }
        if at < len {
            h = (h.rotate_left(5) ^ word(len - 8)).wrapping_mul(K);
        }
    }
    (h, [lo, hi])
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
