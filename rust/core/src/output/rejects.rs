//! Reject records: one JSON line per refused input line, saying where it came from and why,
//! with the raw line kept whole. Written by split and by the Parquet copies' column builder.

use crate::error::Reason;
use crate::model::binary;
use crate::output::serialize::write_str;

/// Where a refused line came from and why, as one reject record.
pub struct RejectRecord<'r> {
    pub file: &'r str,
    /// None where line numbers mean nothing (a copy routed from several sources).
    pub line: Option<u64>,
    pub reason: Reason,
    pub target: Option<&'r str>,
    pub message: &'r str,
    pub offset: usize,
    pub raw: &'r [u8],
}

impl RejectRecord<'_> {
    /// Appends the record as one JSON line:
    /// {"file","line","reason","target","message","offset","raw"}. The raw line is kept as
    /// text when it is UTF-8, else as base64 under "raw_base64", so nothing of it is lost.
    #[cold]
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"file\":");
        write_str(out, self.file);
        out.extend_from_slice(b",\"line\":");
        match self.line {
            Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"reason\":");
        write_str(out, self.reason.code());
        out.extend_from_slice(b",\"target\":");
        match self.target {
            Some(t) => write_str(out, t),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"message\":");
        write_str(out, self.message);
        out.extend_from_slice(format!(",\"offset\":{},", self.offset).as_bytes());
        match std::str::from_utf8(self.raw) {
            Ok(text) => {
                out.extend_from_slice(b"\"raw\":");
                write_str(out, text);
            }
            Err(_) => {
                out.extend_from_slice(b"\"raw_base64\":");
                write_str(out, &binary::encode(self.raw));
            }
        }
        out.extend_from_slice(b"}\n");
    }
}
