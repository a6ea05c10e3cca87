//! The split job's per-worker engine: every line of the input goes to exactly one outcome:
//! written (to one target, or several with route "all"), unmatched, or rejected with a record.
//! The caller feeds input chunks file by file and drains shard bytes and reject records after
//! each chunk; counts are kept here so the invariant can be checked at the end.

use std::collections::BTreeMap;

use crate::error::{Error, ParseError, Reason};
use crate::input::reader::{LineEvent, LineReader};
use crate::model::value::{Map, Value};
use crate::output::rejects::RejectRecord;
use crate::output::shard::{Codec, Compressor, ShardSet};
use crate::parse::{RawLine, Shape};
use crate::route::source_key;
use crate::route::target::{Refusal, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// An item goes to the first target whose condition holds.
    First,
    /// An item goes to every target whose condition holds.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// Counted and written to the rejects with reason `unmatched`.
    Reject,
    /// Counted only.
    Drop,
    /// Stops the run.
    Error,
}

/// Counts of one worker; they add up: read = written + unmatched + rejected.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Non-blank lines read.
    pub read: u64,
    /// Items written to at least one target.
    pub written: u64,
    /// Items that matched no target.
    pub unmatched: u64,
    /// Items written nowhere because they were refused (by the parser, or by every target
    /// they matched).
    pub rejected: u64,
    /// Reject records by reason (one item refused by two targets with route "all" gives two).
    pub reject_records: BTreeMap<&'static str, u64>,
    /// Per target: items written, and refusals by reason.
    pub target_written: Vec<u64>,
    pub target_rejected: Vec<BTreeMap<&'static str, u64>>,
}

pub struct Splitter {
    targets: Vec<Target>,
    shards: Vec<ShardSet>,
    compressor: Compressor,
    route: Route,
    unmatched: Unmatched,
    reader: Option<LineReader>,
    file: String,
    counts: Counts,
    rejects: Vec<u8>,
    sets: Vec<Value<'static>>,
    stop: Option<String>,
    /// The source table's key attributes, when each written line's source key is kept.
    source_key: Option<Vec<String>>,
    /// Per target: the source key of each line written to it since the last drain, one per
    /// line and in the same order (`drain_source_keys`).
    source_keys: Vec<Vec<u8>>,
    /// The current item's source key (or why it has none), made once for all its targets.
    key_scratch: Vec<u8>,
}

/// Total uncompressed bytes held in shard blocks at once: 64 MiB split over all shards,
/// between 64 KiB (compression still works well) and 1 MiB per shard.
const BLOCK_BUDGET: usize = 64 << 20;

impl Splitter {
    pub fn new(
        targets: Vec<Target>,
        route: Route,
        unmatched: Unmatched,
        codec: Codec,
        level: i32,
    ) -> Result<Self, Error> {
        let total: usize = targets.iter().map(|t| t.shards.max(1)).sum();
        let block = (BLOCK_BUDGET / total.max(1)).clamp(64 << 10, 1 << 20);
        let shards = targets
            .iter()
            .map(|t| ShardSet::new(t.shards, block))
            .collect();
        let n = targets.len();
        Ok(Splitter {
            targets,
            shards,
            compressor: Compressor::new(codec, level)?,
            route,
            unmatched,
            reader: None,
            file: String::new(),
            counts: Counts {
                target_written: vec![0; n],
                target_rejected: vec![BTreeMap::new(); n],
                ..Counts::default()
            },
            rejects: Vec::new(),
            sets: Vec::new(),
            stop: None,
            source_key: None,
            source_keys: vec![Vec::new(); n],
            key_scratch: Vec::new(),
        })
    }

    /// Keeps the source key (`source_key::write`, attributes `names`, hash key first) of every
    /// line written, for `drain_source_keys`; an item without it is refused by each target it
    /// matches. For routed Parquet copies, which read a target's lines in the order they were
    /// written: so every target must have one shard (with several, lines are dealt round-robin
    /// and drained shard by shard, and the order is lost).
    pub fn keep_source_key(&mut self, names: Vec<String>) -> Result<(), Error> {
        if names.is_empty() || names.len() > 2 {
            return Err(Error::Config(
                "a source key is one or two attribute names, hash key first".into(),
            ));
        }
        if let Some(t) = self.targets.iter().find(|t| t.shards != 1) {
            return Err(Error::Config(format!(
                "target {}: source keys are kept only with one shard per target",
                t.name
            )));
        }
        self.source_key = Some(names);
        Ok(())
    }

    /// Hands out and clears, per target, the source keys of the lines written since the last
    /// call: one `{...}` JSON line per written line, in the order of the lines. Every key is
    /// made when its line is, so the keys drained are never behind the lines drained.
    pub fn drain_source_keys(&mut self, mut f: impl FnMut(usize, &[u8])) {
        for (t, keys) in self.source_keys.iter_mut().enumerate() {
            if !keys.is_empty() {
                f(t, keys);
                keys.clear();
            }
        }
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    pub fn shard_set(&self, target: usize) -> &ShardSet {
        &self.shards[target]
    }

    /// Sets where round-robin dealing starts for a target (see `ShardSet::set_next`).
    pub fn set_next_shard(&mut self, target: usize, next: usize) {
        self.shards[target].set_next(next);
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Starts reading a new input file; `name` goes into reject records.
    pub fn begin_file(&mut self, name: &str) {
        self.file = name.to_owned();
        self.reader = Some(LineReader::new(Shape::ExportLine));
    }

    /// Bytes read of the current file: (compressed, decompressed).
    pub fn file_bytes(&self) -> (u64, u64) {
        self.reader
            .as_ref()
            .map_or((0, 0), |r| (r.bytes_in(), r.bytes_out()))
    }

    pub fn feed(&mut self, data: &[u8]) -> Result<(), Error> {
        let mut reader = self
            .reader
            .take()
            .ok_or_else(|| Error::Config("feed before begin_file".into()))?;
        let result = reader.feed(data, &mut |e| self.on_line(e));
        self.reader = Some(reader);
        result?;
        self.check_stop()
    }

    /// Ends the current file (flushing shard blocks, so each file's output is complete).
    pub fn end_file(&mut self) -> Result<(), Error> {
        let mut reader = self
            .reader
            .take()
            .ok_or_else(|| Error::Config("end_file before begin_file".into()))?;
        let result = reader.finish(&mut |e| self.on_line(e));
        self.reader = Some(reader);
        result?;
        self.check_stop()?;
        for set in &mut self.shards {
            set.flush(&mut self.compressor)?;
        }
        Ok(())
    }

    fn check_stop(&mut self) -> Result<(), Error> {
        match self.stop.take() {
            Some(msg) => Err(Error::Unmatched(msg)),
            None => Ok(()),
        }
    }

    /// Hands out compressed shard bytes as (target, shard, bytes).
    pub fn drain_shards(&mut self, mut f: impl FnMut(usize, usize, &[u8])) {
        for (t, set) in self.shards.iter_mut().enumerate() {
            set.drain(|s, b| f(t, s, b));
        }
    }

    /// Hands out and clears the reject records written since the last call (JSON lines).
    pub fn take_rejects(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.rejects)
    }

    fn on_line(&mut self, e: LineEvent<'_, '_>) {
        if self.stop.is_some() {
            return; // the run is stopping; the rest of this chunk is not counted
        }
        self.counts.read += 1;
        match e.item {
            Err(err) => {
                self.counts.rejected += 1;
                self.record_parse_error(e.line_no, e.raw, &err);
            }
            Ok(item) => {
                let raw = e.layout.raw_line(e.raw);
                self.route(e.line_no, e.raw, &item, raw)
            }
        }
    }

    /// `copyable` is `raw` when it is in the serializer's form (see `Layout::canonical`).
    fn route(&mut self, line_no: u64, raw: &[u8], item: &Map<'_>, copyable: Option<RawLine<'_>>) {
        let mut matched = false;
        let mut written = false;
        // Made at the first target the item matches, then reused for the others.
        let mut source_key: Option<Result<(), Refusal>> = None;
        for t in 0..self.targets.len() {
            if !self.targets[t].matches(item) {
                continue;
            }
            matched = true;
            let target = &self.targets[t];
            let sets = &mut self.sets;
            let pushed = match &self.source_key {
                None => self.shards[t].push_with(&mut self.compressor, |block| {
                    target.write_line(item, copyable, sets, block)
                }),
                Some(names) => {
                    let made = source_key.get_or_insert_with(|| {
                        self.key_scratch.clear();
                        source_key::write(&mut self.key_scratch, item, names)
                    });
                    match made {
                        Err(refusal) => Ok(Err(refusal.clone())),
                        Ok(()) => {
                            let pushed = self.shards[t].push_with(&mut self.compressor, |block| {
                                target.write_line(item, copyable, sets, block)
                            });
                            if matches!(pushed, Ok(Ok(()))) {
                                let keys = &mut self.source_keys[t];
                                keys.extend_from_slice(&self.key_scratch);
                                keys.push(b'\n');
                            }
                            pushed
                        }
                    }
                }
            };
            match pushed {
                Ok(Ok(())) => {
                    self.counts.target_written[t] += 1;
                    written = true;
                }
                Ok(Err(Refusal { reason, message })) => {
                    *self.counts.target_rejected[t]
                        .entry(reason.code())
                        .or_default() += 1;
                    self.record(line_no, raw, reason, Some(t), &message, 0);
                }
                Err(err) => {
                    self.stop.get_or_insert_with(|| {
                        format!("writing target {}: {err}", self.targets[t].name)
                    });
                    return;
                }
            }
            if self.route == Route::First {
                break;
            }
        }
        if !matched {
            self.counts.unmatched += 1;
            match self.unmatched {
                Unmatched::Drop => {}
                Unmatched::Reject => self.record(
                    line_no,
                    raw,
                    Reason::Unmatched,
                    None,
                    "matches no target's condition",
                    0,
                ),
                Unmatched::Error => {
                    self.stop = Some(format!(
                        "{}: line {line_no} matches no target's condition (unmatched = \"error\")",
                        self.file
                    ));
                }
            }
        } else if written {
            self.counts.written += 1;
        } else {
            self.counts.rejected += 1;
        }
    }

    #[cold]
    fn record_parse_error(&mut self, line_no: u64, raw: &[u8], err: &ParseError) {
        self.record(line_no, raw, err.reason, None, &err.message, err.offset);
    }

    /// One reject record: {"file","line","reason","target","message","offset","raw"}. The raw
    /// line is kept as text when it is UTF-8, else as base64 under "raw_base64".
    #[cold]
    fn record(
        &mut self,
        line_no: u64,
        raw: &[u8],
        reason: Reason,
        target: Option<usize>,
        message: &str,
        offset: usize,
    ) {
        *self.counts.reject_records.entry(reason.code()).or_default() += 1;
        RejectRecord {
            file: &self.file,
            line: Some(line_no),
            reason,
            target: target.map(|t| self.targets[t].name.as_str()),
            message,
            offset,
            raw,
        }
        .write(&mut self.rejects);
    }
}
