//! DynamoDB Streams records, read in one pass over the event's JSON: a Lambda event
//! `{"Records": [...]}`, a GetRecords response (also `"Records"`), a bare list of records or
//! one record.
//!
//! The envelope (`eventName`, `eventID`, `dynamodb.SequenceNumber`, ...) is plain JSON; the
//! attribute maps inside it (`Keys`, `NewImage`, `OldImage`) are read by the same `attr_map`
//! as an export line's item, so an image is accepted or refused exactly as `parse_item`
//! accepts or refuses it, and its values borrow the event's text the same way.
//!
//! A bad record does not have to end the reading: with `skip_bad`, its JSON is skipped to the
//! record's end (the next record starts there) and the problem is returned beside the good
//! records. Only JSON that cannot be read past (a syntax error, invalid UTF-8) ends it.

use std::borrow::Cow;
use std::fmt;

use crate::error::{ParseError, Reason};
use crate::model::size;
use crate::model::value::{Map, Value};

use super::line::utf8;
use super::scanner::{Failure, PResult, Parser};

/// How deep the JSON of an event may nest where it is skipped rather than read: unknown
/// members, and a refused record skipped whole. A valid image takes up to 65 JSON levels (two
/// per DynamoDB level) under the record's four; well past that, so that a record refused as
/// too deep can still be skipped, and low enough that the recursive skip cannot exhaust the
/// stack on hostile input.
const MAX_ENVELOPE_DEPTH: usize = 256;

/// A record's time is epoch seconds (DynamoDB Streams), milliseconds or microseconds (Kinesis
/// Data Streams for DynamoDB, by `ApproximateCreationDateTimePrecision`), told apart by
/// magnitude as `catchup/changes.py` does: seconds stay below 1e11 and milliseconds below 1e14
/// for every date from 1973 to 5138, and a time outside those years is refused.
const SECONDS_BELOW: i128 = 100_000_000_000;
const MILLIS_BELOW: i128 = 100_000_000_000_000;
const EARLIEST: i128 = 100_000_000; // 1973-03-03 in seconds
const LATEST: i128 = 100_000_000_000_000_000; // 5138-11-16 in microseconds

/// `eventName`: what happened to the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    Insert,
    Modify,
    Remove,
}

impl EventName {
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Insert => "INSERT",
            EventName::Modify => "MODIFY",
            EventName::Remove => "REMOVE",
        }
    }

    fn from_str(s: &str) -> Option<EventName> {
        match s {
            "INSERT" => Some(EventName::Insert),
            "MODIFY" => Some(EventName::Modify),
            "REMOVE" => Some(EventName::Remove),
            _ => None,
        }
    }
}

/// One change record. An image is `None` when the record does not carry it: an INSERT has no
/// old image, a REMOVE no new one, and a KEYS_ONLY stream neither (see `view_type`).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord<'a> {
    /// Position of the record in the event (0 for a lone record).
    pub index: usize,
    pub name: EventName,
    pub keys: Map<'a>,
    pub new: Option<Map<'a>>,
    pub old: Option<Map<'a>>,
    /// `ApproximateCreationDateTime` in microseconds since the epoch.
    pub time_us: Option<i64>,
    pub sequence: Option<Cow<'a, str>>,
    pub event_id: Option<Cow<'a, str>>,
    pub source_arn: Option<Cow<'a, str>>,
    /// `tableName` (Kinesis records), else the table named in `eventSourceARN`.
    pub table: Option<Cow<'a, str>>,
    pub view_type: Option<Cow<'a, str>>,
}

/// A record that was refused, or an event that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordError {
    /// The record's position; `None` when the event itself is at fault.
    pub index: Option<usize>,
    /// Where, in the event: `Records[3].dynamodb.NewImage`.
    pub path: String,
    /// The record's SequenceNumber and eventID, when they could be read.
    pub sequence: Option<String>,
    pub event_id: Option<String>,
    /// The rule broken; its offset counts bytes from the start of the event.
    pub error: Box<ParseError>,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.error)
    }
}

impl std::error::Error for RecordError {}

/// The records of an event, in order, and the bad ones left out (only with `skip_bad`).
#[derive(Debug, Default)]
pub struct Records<'a> {
    pub records: Vec<StreamRecord<'a>>,
    pub problems: Vec<RecordError>,
}

/// Reads every record of `event` (JSON text). Without `skip_bad` the first bad record is the
/// error; with it, bad records are left out and listed in `problems`. Either way an event whose
/// JSON cannot be read to its end is an error.
pub fn parse_stream_records(event: &[u8], skip_bad: bool) -> Result<Records<'_>, RecordError> {
    let mut records = Vec::new();
    let problems = read_stream_records(event, skip_bad, &mut |r| {
        records.push(r);
        true
    })?;
    Ok(Records { records, problems })
}

/// `parse_stream_records`, handing each record to `each` as soon as it is read (so that it can
/// be used while its part of the event is still in the CPU's cache) instead of collecting
/// them. `each` returns false to stop the reading there. Returns the bad records skipped.
pub fn read_stream_records<'a>(
    event: &'a [u8],
    skip_bad: bool,
    each: &mut dyn FnMut(StreamRecord<'a>) -> bool,
) -> Result<Vec<RecordError>, RecordError> {
    let text = utf8(event).map_err(|e| event_error("event", Box::new(e)))?;
    let mut reader = Reader {
        p: Parser::new(text),
        skip_bad,
        each,
        stopped: false,
        problems: Vec::new(),
    };
    reader.event()?;
    Ok(reader.problems)
}

struct Reader<'a, 'r> {
    p: Parser<'a>,
    skip_bad: bool,
    each: &'r mut dyn FnMut(StreamRecord<'a>) -> bool,
    /// `each` asked to stop.
    stopped: bool,
    problems: Vec<RecordError>,
}

/// Where in a record an error happened, relative to the record ("dynamodb.NewImage").
type Where<'a> = Cow<'a, str>;

/// A record's known members as they are read; unknown members are skipped.
#[derive(Default)]
struct Fields<'a> {
    name: Option<EventName>,
    body: bool,
    keys: Option<Map<'a>>,
    new: Option<Map<'a>>,
    old: Option<Map<'a>>,
    time_us: Option<i64>,
    sequence: Option<Cow<'a, str>>,
    event_id: Option<Cow<'a, str>>,
    source_arn: Option<Cow<'a, str>>,
    table: Option<Cow<'a, str>>,
    view_type: Option<Cow<'a, str>>,
    /// Known members seen so far, one bit each, so that one named twice is refused (JSON
    /// readers disagree on which of the two counts; DynamoDB never writes such a record).
    seen: u32,
}

impl<'a> Reader<'a, '_> {
    /// Hands a record to `each`.
    fn take(&mut self, record: StreamRecord<'a>) {
        if !(self.each)(record) {
            self.stopped = true;
        }
    }

    fn event(&mut self) -> Result<(), RecordError> {
        let p = &mut self.p;
        p.ws();
        match p.peek() {
            Some(b'[') => self.record_list("")?,
            Some(b'{') => self.object_event()?,
            _ => {
                let e = p.unexpected(
                    "a Lambda event {\"Records\": [...]}, a list of records or a record",
                );
                return Err(event_error("event", e));
            }
        }
        if self.stopped {
            return Ok(());
        }
        self.p.end().map_err(|e| event_error("event", e))
    }

    /// `{"Records": [...], ...}`, or one record: which, is known once "Records" is met or the
    /// object ends without it. Until then the members are read as a lone record's.
    fn object_event(&mut self) -> Result<(), RecordError> {
        let start = self.p.pos;
        let mut fields = Fields::default();
        let mut failed: Option<(Where<'a>, Failure)> = None;
        let mut has_records = false;
        self.p.expect(b'{').map_err(|e| event_error("event", e))?;
        self.p.ws();
        if !self.p.eat(b'}') {
            loop {
                self.object_member(&mut fields, &mut failed, &mut has_records)?;
                if self.stopped {
                    return Ok(());
                }
                self.p.ws();
                if self.p.eat(b',') {
                    continue;
                }
                if self.p.eat(b'}') {
                    break;
                }
                return Err(event_error("event", self.p.unexpected("',' or '}'")));
            }
        }
        if has_records {
            return Ok(());
        }
        let end = self.p.pos;
        let result = match failed {
            Some((at, e)) => Err((at, e)),
            None => self
                .p
                .finish(fields, 0, start)
                .map_err(|e| (Cow::Borrowed(""), e)),
        };
        match result {
            Ok(record) => self.take(record),
            Err((at, e)) => {
                let err = self.record_error(None, 0, start, &at, e);
                self.p.pos = end;
                if !self.skip_bad {
                    return Err(err);
                }
                self.problems.push(err);
            }
        }
        Ok(())
    }

    /// One member of the event's object: "Records", or a member of the lone record it may be.
    /// The first of those to fail is kept in `failed`, and later members are only skipped.
    fn object_member(
        &mut self,
        fields: &mut Fields<'a>,
        failed: &mut Option<(Where<'a>, Failure)>,
        has_records: &mut bool,
    ) -> Result<(), RecordError> {
        let p = &mut self.p;
        p.ws();
        let key_at = p.pos;
        if p.peek() != Some(b'"') {
            return Err(event_error("event", p.unexpected("a member name")));
        }
        let key = p.string().map_err(|e| event_error("event", e))?;
        p.expect(b':').map_err(|e| event_error("event", e))?;
        p.ws();
        if key == "Records" {
            let problem = if *has_records {
                Some("\"Records\" appears twice in the event")
            } else if p.peek() != Some(b'[') {
                Some("\"Records\" must be a JSON array")
            } else {
                None
            };
            if let Some(problem) = problem {
                let e = p.err_at(key_at, Reason::NotARecord, problem);
                return Err(event_error("Records", e));
            }
            *has_records = true;
            return self.record_list("Records");
        }
        let value_at = p.pos;
        if failed.is_none() {
            let mut at: Where<'a> = Cow::Borrowed("");
            if let Err(e) = p.record_member(&key, key_at, fields, &mut at) {
                *failed = Some((at, e));
            }
        }
        if failed.is_some() {
            // Past the member, whatever it held: the object may yet turn out to be an event
            // whose "Records" come later, and this member none of its business.
            p.pos = value_at;
            p.skip_json(1).map_err(|e| event_error("event", e))?;
        }
        Ok(())
    }

    /// `[record, ...]`; `prefix` names the array in messages ("Records", or "" for a bare list).
    fn record_list(&mut self, prefix: &str) -> Result<(), RecordError> {
        let list_error = |e| event_error(if prefix.is_empty() { "event" } else { prefix }, e);
        self.p.expect(b'[').map_err(list_error)?;
        self.p.ws();
        if self.p.eat(b']') {
            return Ok(());
        }
        let mut index = 0;
        loop {
            self.p.ws();
            let start = self.p.pos;
            let mut at: Where<'a> = Cow::Borrowed("");
            match self.p.record(index, &mut at) {
                Ok(record) => {
                    self.take(record);
                    if self.stopped {
                        return Ok(());
                    }
                }
                Err(e) => {
                    let err = self.record_error(Some(prefix), index, start, &at, e);
                    if !self.skip_bad {
                        return Err(err);
                    }
                    // Skipped to the record's end, where the next one starts; JSON that
                    // cannot be read past ends the event (no later record can be found).
                    self.p.pos = start;
                    if let Err(e) = self.p.skip_json(1) {
                        return Err(self.record_error(Some(prefix), index, start, "", e));
                    }
                    self.problems.push(err);
                }
            }
            index += 1;
            self.p.ws();
            if self.p.eat(b',') {
                continue;
            }
            if self.p.eat(b']') {
                return Ok(());
            }
            return Err(list_error(self.p.unexpected("',' or ']'")));
        }
    }

    /// The error for the record at `start`, with its SequenceNumber and eventID when its JSON
    /// can be read that far. Leaves the cursor where it was.
    fn record_error(
        &mut self,
        prefix: Option<&str>,
        index: usize,
        start: usize,
        at: &str,
        e: Failure,
    ) -> RecordError {
        let pos = self.p.pos;
        self.p.pos = start;
        let (sequence, event_id) = self.p.record_ids().unwrap_or_default();
        self.p.pos = pos;
        let mut path = match prefix {
            None => String::new(),
            Some(array) => format!("{array}[{index}]"),
        };
        if !at.is_empty() {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(at);
        }
        if path.is_empty() {
            path = "record".to_owned();
        }
        RecordError {
            index: Some(index),
            path,
            sequence: sequence.map(Cow::into_owned),
            event_id: event_id.map(Cow::into_owned),
            error: e,
        }
    }
}

fn event_error(path: &str, e: Failure) -> RecordError {
    RecordError {
        index: None,
        path: path.to_owned(),
        sequence: None,
        event_id: None,
        error: e,
    }
}

/// A record's SequenceNumber and eventID.
type Ids<'a> = (Option<Cow<'a, str>>, Option<Cow<'a, str>>);

/// Bits of `Fields::seen`.
const EVENT_NAME: u32 = 1;
const EVENT_ID: u32 = 1 << 1;
const EVENT_SOURCE: u32 = 1 << 2;
const SOURCE_ARN: u32 = 1 << 3;
const TABLE_NAME: u32 = 1 << 4;
const RECORD_FORMAT: u32 = 1 << 5;
const BODY: u32 = 1 << 6;
const KEYS: u32 = 1 << 7;
const NEW_IMAGE: u32 = 1 << 8;
const OLD_IMAGE: u32 = 1 << 9;
const TIME: u32 = 1 << 10;
const SEQUENCE: u32 = 1 << 11;
const VIEW_TYPE: u32 = 1 << 12;

impl<'a> Parser<'a> {
    /// One record object at the cursor; `at` is set to the member being read, for messages.
    fn record(&mut self, index: usize, at: &mut Where<'a>) -> PResult<StreamRecord<'a>> {
        let start = self.pos;
        if self.peek() != Some(b'{') {
            return Err(self.err(Reason::NotARecord, "a record must be a JSON object"));
        }
        let mut fields = Fields::default();
        self.members(1, &mut |p, key, key_at, _| {
            p.record_member(key, key_at, &mut fields, at)
        })?;
        *at = Cow::Borrowed("");
        self.finish(fields, index, start)
    }

    /// The value of a record's member `key`, at the cursor, into `fields`.
    fn record_member(
        &mut self,
        key: &str,
        key_at: usize,
        fields: &mut Fields<'a>,
        at: &mut Where<'a>,
    ) -> PResult<()> {
        let (bit, name) = match key {
            "eventName" => (EVENT_NAME, "eventName"),
            "eventID" => (EVENT_ID, "eventID"),
            "eventSource" => (EVENT_SOURCE, "eventSource"),
            "eventSourceARN" => (SOURCE_ARN, "eventSourceARN"),
            "tableName" => (TABLE_NAME, "tableName"),
            "recordFormat" => (RECORD_FORMAT, "recordFormat"),
            "dynamodb" => (BODY, "dynamodb"),
            _ => return self.skip_json(1),
        };
        *at = Cow::Borrowed(name);
        self.once(&mut fields.seen, bit, key_at, key)?;
        match bit {
            EVENT_NAME => {
                let value_at = self.pos;
                let name = self.envelope_string(key)?;
                match name.as_deref().and_then(EventName::from_str) {
                    Some(n) => fields.name = Some(n),
                    None => {
                        return Err(self.err_at(
                            value_at,
                            Reason::NotARecord,
                            format!("eventName {name:?} is not INSERT, MODIFY or REMOVE"),
                        ))
                    }
                }
            }
            EVENT_ID => fields.event_id = self.envelope_string(key)?,
            SOURCE_ARN => fields.source_arn = self.envelope_string(key)?,
            TABLE_NAME => fields.table = self.envelope_string(key)?,
            EVENT_SOURCE | RECORD_FORMAT => {
                let value_at = self.pos;
                let want = if bit == EVENT_SOURCE {
                    "aws:dynamodb"
                } else {
                    "application/json"
                };
                let value = self.envelope_string(key)?;
                if value.as_deref().is_some_and(|v| v != want) {
                    return Err(self.err_at(
                        value_at,
                        Reason::NotARecord,
                        format!("{key} {value:?} is not {want}: not a DynamoDB change record"),
                    ));
                }
            }
            _ => self.body(fields, at)?,
        }
        Ok(())
    }

    /// The `dynamodb` object: the keys, images, time and sequence number.
    fn body(&mut self, fields: &mut Fields<'a>, at: &mut Where<'a>) -> PResult<()> {
        if self.peek() != Some(b'{') {
            return Err(self.err(Reason::NotARecord, "'dynamodb' must be a JSON object"));
        }
        fields.body = true;
        self.members(2, &mut |p, key, key_at, _| {
            let (bit, name) = match key {
                "Keys" => (KEYS, "dynamodb.Keys"),
                "NewImage" => (NEW_IMAGE, "dynamodb.NewImage"),
                "OldImage" => (OLD_IMAGE, "dynamodb.OldImage"),
                "ApproximateCreationDateTime" => (TIME, "dynamodb.ApproximateCreationDateTime"),
                "SequenceNumber" => (SEQUENCE, "dynamodb.SequenceNumber"),
                "StreamViewType" => (VIEW_TYPE, "dynamodb.StreamViewType"),
                _ => (0, ""),
            };
            if bit == 0 {
                return p.skip_json(2);
            }
            *at = Cow::Borrowed(name);
            p.once(&mut fields.seen, bit, key_at, name)?;
            match bit {
                KEYS => fields.keys = Some(p.keys()?),
                NEW_IMAGE => fields.new = p.image()?,
                OLD_IMAGE => fields.old = p.image()?,
                TIME => fields.time_us = p.time()?,
                SEQUENCE => fields.sequence = p.envelope_string(name)?,
                _ => fields.view_type = p.envelope_string(name)?,
            }
            Ok(())
        })
    }

    fn once(&self, seen: &mut u32, bit: u32, key_at: usize, name: &str) -> PResult<()> {
        if *seen & bit != 0 {
            return Err(self.err_at(
                key_at,
                Reason::NotARecord,
                format!("{name} appears twice in one record"),
            ));
        }
        *seen |= bit;
        Ok(())
    }

    /// A string member of the envelope, or null (taken as absent).
    fn envelope_string(&mut self, name: &str) -> PResult<Option<Cow<'a, str>>> {
        match self.peek() {
            Some(b'"') => Ok(Some(self.string()?)),
            Some(b'n') if self.b[self.pos..].starts_with(b"null") => {
                self.pos += 4;
                Ok(None)
            }
            _ => Err(self.err(Reason::NotARecord, format!("{name} must be a JSON string"))),
        }
    }

    /// An image: an attribute map checked as `parse_item` checks an item, or null (absent).
    fn image(&mut self) -> PResult<Option<Map<'a>>> {
        if self.b[self.pos..].starts_with(b"null") {
            self.pos += 4;
            return Ok(None);
        }
        if self.peek() != Some(b'{') {
            return Err(self.err(Reason::NotARecord, "an image must be an attribute map"));
        }
        let start = self.pos;
        let map = self.attr_map(0, true)?;
        // As in `parse_item`: the stored size never exceeds the JSON's length, so only a long
        // image needs the exact count.
        if self.pos - start > size::MAX_ITEM_BYTES {
            let n = size::item_size(&map);
            if n > size::MAX_ITEM_BYTES {
                return Err(self.err_at(
                    start,
                    Reason::ItemTooLarge,
                    format!("item is {n} bytes, over DynamoDB's 400 KB (409600 bytes) item limit"),
                ));
            }
        }
        Ok(Some(map))
    }

    /// `Keys`: a table's key, one or two S, N or B attributes, none empty.
    fn keys(&mut self) -> PResult<Map<'a>> {
        let start = self.pos;
        let Some(keys) = self.image()? else {
            return Err(self.err_at(start, Reason::NotARecord, "Keys is null"));
        };
        if keys.is_empty() || keys.len() > 2 {
            return Err(self.err_at(
                start,
                Reason::NotARecord,
                format!(
                    "Keys has {} attributes; a table key has one or two",
                    keys.len()
                ),
            ));
        }
        for (name, value) in &keys {
            let empty = match value {
                Value::S(s) | Value::N(s) | Value::B(s) => s.is_empty(),
                _ => {
                    return Err(self.err_at(
                        start,
                        Reason::WrongKeyType,
                        format!("key attribute {name:?} is not an S, N or B value"),
                    ))
                }
            };
            if empty {
                return Err(self.err_at(
                    start,
                    Reason::EmptyKey,
                    format!("key attribute {name:?} is empty (DynamoDB keys are not)"),
                ));
            }
        }
        Ok(keys)
    }

    /// `ApproximateCreationDateTime`: a JSON number, or a string of one, or null.
    fn time(&mut self) -> PResult<Option<i64>> {
        let at = self.pos;
        let text = match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.json_number()?,
            Some(b'"') => self.string()?,
            Some(b'n') if self.b[self.pos..].starts_with(b"null") => {
                self.pos += 4;
                return Ok(None);
            }
            _ => {
                return Err(self.err(
                    Reason::NotARecord,
                    "ApproximateCreationDateTime must be a JSON number of epoch time",
                ))
            }
        };
        match epoch_micros(&text) {
            Some(t) => Ok(Some(t)),
            None => Err(self.err_at(
                at,
                Reason::NotARecord,
                format!(
                    "ApproximateCreationDateTime {:?} is not a time in the years 1973-5138 (epoch \
                     seconds, milliseconds or microseconds, told apart by magnitude)",
                    text.chars().take(40).collect::<String>()
                ),
            )),
        }
    }

    /// The record, once its object has been read.
    fn finish(&self, f: Fields<'a>, index: usize, start: usize) -> PResult<StreamRecord<'a>> {
        let missing = |what: &str| self.err_at(start, Reason::NotARecord, format!("no {what}"));
        let name = f.name.ok_or_else(|| missing("eventName"))?;
        if !f.body {
            return Err(missing("'dynamodb' object"));
        }
        let keys = f.keys.ok_or_else(|| missing("dynamodb.Keys"))?;
        let table = f.table.or_else(|| {
            // arn:aws:dynamodb:region:account:table/NAME/stream/LABEL
            let arn = f.source_arn.as_deref()?;
            let rest = &arn[arn.find(":table/")? + 7..];
            let name = &rest[..rest.find('/').unwrap_or(rest.len())];
            match f.source_arn.as_ref()? {
                Cow::Borrowed(b) => {
                    let from = b.len() - rest.len();
                    Some(Cow::Borrowed(&b[from..from + name.len()]))
                }
                Cow::Owned(_) => Some(Cow::Owned(name.to_owned())),
            }
        });
        Ok(StreamRecord {
            index,
            name,
            keys,
            new: f.new,
            old: f.old,
            time_us: f.time_us,
            sequence: f.sequence,
            event_id: f.event_id,
            source_arn: f.source_arn,
            table,
            view_type: f.view_type,
        })
    }

    /// The eventID and SequenceNumber of the record at the cursor, read leniently (for the
    /// report of a record that was refused); an error only if its JSON cannot be read.
    fn record_ids(&mut self) -> PResult<Ids<'a>> {
        let (mut sequence, mut event_id) = (None, None);
        self.members(1, &mut |p, key, _, depth| {
            match key {
                "eventID" if p.peek() == Some(b'"') => event_id = Some(p.string()?),
                "dynamodb" if p.peek() == Some(b'{') => {
                    p.members(depth + 1, &mut |p, key, _, depth| {
                        if key == "SequenceNumber" && p.peek() == Some(b'"') {
                            sequence = Some(p.string()?);
                            Ok(())
                        } else {
                            p.skip_json(depth + 1)
                        }
                    })?;
                }
                _ => p.skip_json(depth + 1)?,
            }
            Ok(())
        })?;
        Ok((sequence, event_id))
    }

    /// The members of the object at the cursor, each value left to
    /// `each(parser, key, where the key starts, depth)`.
    fn members(
        &mut self,
        depth: usize,
        each: &mut dyn FnMut(&mut Self, &str, usize, usize) -> PResult<()>,
    ) -> PResult<()> {
        self.ws();
        self.expect(b'{')?;
        self.ws();
        if self.eat(b'}') {
            return Ok(());
        }
        loop {
            self.ws();
            let key_at = self.pos;
            if self.peek() != Some(b'"') {
                return Err(self.unexpected("a member name"));
            }
            let key = self.string()?;
            self.expect(b':')?;
            self.ws();
            each(self, &key, key_at, depth)?;
            self.ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b'}') {
                return Ok(());
            }
            return Err(self.unexpected("',' or '}'"));
        }
    }

    /// Skips one JSON value of any kind, checking its syntax.
    pub(super) fn skip_json(&mut self, depth: usize) -> PResult<()> {
        if depth > MAX_ENVELOPE_DEPTH {
            return Err(self.err(
                Reason::TooDeep,
                format!(
                    "the JSON around the records nests deeper than {MAX_ENVELOPE_DEPTH} levels"
                ),
            ));
        }
        self.ws();
        match self.peek() {
            Some(b'{') => self.members(depth, &mut |p, _, _, depth| p.skip_json(depth + 1)),
            Some(b'[') => {
                self.pos += 1;
                self.ws();
                if self.eat(b']') {
                    return Ok(());
                }
                loop {
                    self.skip_json(depth + 1)?;
                    self.ws();
                    if self.eat(b',') {
                        continue;
                    }
                    if self.eat(b']') {
                        return Ok(());
                    }
                    return Err(self.unexpected("',' or ']'"));
                }
            }
            Some(b'"') => self.string().map(drop),
            Some(b'-' | b'0'..=b'9') => self.json_number().map(drop),
            _ => {
                for word in [&b"true"[..], b"false", b"null"] {
                    if self.b[self.pos..].starts_with(word) {
                        self.pos += word.len();
                        return Ok(());
                    }
                }
                Err(self.unexpected("a JSON value"))
            }
        }
    }

    /// A JSON number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn json_number(&mut self) -> PResult<Cow<'a, str>> {
        let start = self.pos;
        let b = self.b;
        let digits = |mut i: usize| {
            let from = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            (i, i > from)
        };
        let mut i = start + usize::from(b.get(start) == Some(&b'-'));
        let (after, any) = digits(i);
        let bad = !any || (b[i] == b'0' && after > i + 1);
        i = after;
        let mut ok = !bad;
        if ok && b.get(i) == Some(&b'.') {
            let (after, any) = digits(i + 1);
            ok = any;
            i = after;
        }
        if ok && matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let (after, any) = digits(i);
            ok = any;
            i = after;
        }
        if !ok {
            return Err(self.err_at(start, Reason::InvalidJson, "invalid JSON number"));
        }
        self.pos = i;
        Ok(Cow::Borrowed(&self.text[start..i]))
    }
}

/// Microseconds since the epoch from decimal text of epoch seconds, milliseconds or
/// microseconds (by magnitude), truncated as `int()` does; `None` outside 1973-5138 or if the
/// text is no plain non-negative decimal number. Exact: no float is involved.
pub fn epoch_micros(text: &str) -> Option<i64> {
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // value = digits × 10^(exp - frac.len()); in millionths of the unit, shift by 6 more.
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let shift = i64::from(exp) - frac.len() as i64 + 6;
    // Above 1e23 millionths the value is past LATEST whatever its unit; below 1e14 it is
    // before EARLIEST. Checked on the length first, so 1E+999999999 is never expanded.
    let magnitude = digits.len() as i64 + shift; // value < 10^magnitude millionths
    if digits.is_empty() || !(14..=24).contains(&magnitude) {
        return None;
    }
    let millionths: i128 = if shift >= 0 {
        digits.parse::<i128>().ok()? * 10i128.pow(shift as u32)
    } else {
        let keep = digits.len() as i64 + shift; // digits before the point, at most 24
        if keep <= 0 {
            0
        } else {
            digits[..keep as usize].parse::<i128>().ok()?
        }
    };
    let value_floor = millionths / 1_000_000;
    if !(EARLIEST * 1_000_000..LATEST * 1_000_000).contains(&millionths) {
        return None;
    }
    let micros = if value_floor < SECONDS_BELOW {
        millionths
    } else if value_floor < MILLIS_BELOW {
        millionths / 1_000
    } else {
        value_floor
    };
    i64::try_from(micros).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_units_by_magnitude() {
        assert_eq!(epoch_micros("1479499740"), Some(1_479_499_740_000_000));
        assert_eq!(epoch_micros("1693997155.0"), Some(1_693_997_155_000_000));
        assert_eq!(
            epoch_micros("1693997155.1234567"),
            Some(1_693_997_155_123_456)
        );
        assert_eq!(epoch_micros("1.6E9"), Some(1_600_000_000_000_000));
        assert_eq!(epoch_micros("1719347890250"), Some(1_719_347_890_250_000));
        assert_eq!(epoch_micros("1719347890250.5"), Some(1_719_347_890_250_500));
        assert_eq!(
            epoch_micros("1719347890250647"),
            Some(1_719_347_890_250_647)
        );
        assert_eq!(epoch_micros("100000000"), Some(100_000_000_000_000));
        assert_eq!(epoch_micros("99999999.9"), None);
        assert_eq!(epoch_micros("1E+17"), None);
        assert_eq!(
            epoch_micros("99999999999999999"),
            Some(99_999_999_999_999_999)
        );
        assert_eq!(epoch_micros("1E+999999999"), None);
        assert_eq!(epoch_micros("1E-999999999"), None);
        assert_eq!(epoch_micros("-1479499740"), None);
        assert_eq!(epoch_micros(""), None);
        assert_eq!(epoch_micros("."), None);
        assert_eq!(epoch_micros("12a"), None);
        assert_eq!(
            epoch_micros("0001479499740.000"),
            Some(1_479_499_740_000_000)
        );
    }

    fn read(text: &str, skip: bool) -> Result<Records<'_>, RecordError> {
        parse_stream_records(text.as_bytes(), skip)
    }

    const INSERT: &str = r#"{"eventID":"a","eventName":"INSERT","eventSourceARN":"arn:aws:dynamodb:us-east-1:1:table/T/stream/x","dynamodb":{"ApproximateCreationDateTime":1479499740,"Keys":{"id":{"S":"1"}},"NewImage":{"id":{"S":"1"},"n":{"N":"2"}},"SequenceNumber":"100","StreamViewType":"NEW_IMAGE"}}"#;

    #[test]
    fn the_four_shapes_give_the_same_record() {
        let one = read(INSERT, false).unwrap().records;
        assert_eq!(one.len(), 1);
        let r = &one[0];
        assert_eq!(r.name, EventName::Insert);
        assert_eq!(r.table.as_deref(), Some("T"));
        assert_eq!(r.sequence.as_deref(), Some("100"));
        assert_eq!(r.time_us, Some(1_479_499_740_000_000));
        assert!(r.old.is_none());
        for shape in [
            format!("[{INSERT}]"),
            format!(r#"{{"Records":[{INSERT}]}}"#),
            format!(r#"{{"NextShardIterator":"x","Records":[{INSERT}],"x":{{"eventName":1}}}}"#),
        ] {
            assert_eq!(read(&shape, false).unwrap().records, one, "{shape}");
        }
    }

    #[test]
    fn bad_records_name_their_place_and_can_be_skipped() {
        let bad = INSERT.replace(r#""n":{"N":"2"}"#, r#""n":{"N":"2x"}"#);
        let event = format!(r#"{{"Records":[{INSERT}, {bad}, {INSERT}]}}"#);
        let e = read(&event, false).unwrap_err();
        assert_eq!(e.index, Some(1));
        assert_eq!(e.path, "Records[1].dynamodb.NewImage");
        assert_eq!(e.error.reason, Reason::InvalidNumber);
        assert_eq!(e.sequence.as_deref(), Some("100"));
        let got = read(&event, true).unwrap();
        assert_eq!(
            got.records.iter().map(|r| r.index).collect::<Vec<_>>(),
            [0, 2]
        );
        assert_eq!(got.problems, [e]);
    }

    #[test]
    fn envelope_rules() {
        for (text, reason, path) in [
            (
                INSERT.replace("INSERT", "UPSERT"),
                Reason::NotARecord,
                "eventName",
            ),
            (
                INSERT.replace(r#""dynamodb""#, r#""dynamo""#),
                Reason::NotARecord,
                "record",
            ),
            (
                INSERT.replace(r#""Keys":{"id":{"S":"1"}}"#, r#""Keys":{"id":{"S":""}}"#),
                Reason::EmptyKey,
                "dynamodb.Keys",
            ),
            (
                INSERT.replace("1479499740", "14794997"),
                Reason::NotARecord,
                "dynamodb.ApproximateCreationDateTime",
            ),
            (
                INSERT.replace(
                    r#""eventID":"a","#,
                    r#""eventID":"a","eventName":"MODIFY","#,
                ),
                Reason::NotARecord,
                "eventName",
            ),
            (format!("[{INSERT}, 3]"), Reason::NotARecord, "[1]"),
            (
                format!(r#"{{"Records":[{INSERT}],"Records":[]}}"#),
                Reason::NotARecord,
                "Records",
            ),
            (
                r#"{"Records":{}}"#.to_owned(),
                Reason::NotARecord,
                "Records",
            ),
        ] {
            let e = read(&text, false).unwrap_err();
            assert_eq!((e.error.reason, e.path.as_str()), (reason, path), "{text}");
        }
        let broken = format!(r#"{{"Records":[{INSERT}, {{"eventName": }}]}}"#);
        let e = read(&broken, true).unwrap_err();
        assert_eq!(e.error.reason, Reason::InvalidJson);
    }
}
