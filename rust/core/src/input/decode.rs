//! Decompression of input streams pushed in chunks: gzip (any number of members, as AWS and
//! `cat a.gz b.gz` write), zstd (any number of frames) or plain text, told apart by their magic
//! bytes rather than by the file name. Other compressed formats are recognised by theirs too
//! and refused by name, so that a bzip2 file is reported as one rather than read as lines of
//! binary garbage (or, in an export, as a file whose line count is wrong).
//!
//! Output is handed to a sink in pieces of at most `OUT_PIECE` bytes, so a highly compressible
//! chunk never inflates into one huge buffer. A stream that ends inside a member or frame is
//! an error: a truncated file must never look like a short one.

use flate2::{Decompress, FlushDecompress, Status};

use crate::error::Error;

const OUT_PIECE: usize = 256 << 10;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Bytes `sniff` needs to tell every format apart: bzip2's is 4 bytes of header ("BZh" and the
/// block size) and then the 6-byte magic of its first block or of its end.
pub const SNIFF_LEN: usize = 10;

/// Compressed formats ddbshard does not read, by their magic bytes (each format's
/// specification; lz4 has a current and a legacy frame, zip an empty-archive form).
const UNSUPPORTED: [(&[u8], &str); 7] = [
    (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], "xz"),
    (&[0x04, 0x22, 0x4d, 0x18], "lz4"),
    (&[0x02, 0x21, 0x4c, 0x18], "lz4"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (&[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c], "7z"),
    (b"LZIP", "lzip"),
];
const BZIP2_BLOCK: [u8; 6] = [0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
const BZIP2_END: [u8; 6] = [0x17, 0x72, 0x45, 0x38, 0x50, 0x90];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// What a stream's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magic {
    /// One of the formats read here (`None`: no known magic, so text).
    Read(Compression),
    /// A compressed format that is not read, by name.
    Unsupported(&'static str),
}

/// The format of a stream from its first bytes (`SNIFF_LEN` of them tell every format apart;
/// fewer are taken as they are).
pub fn sniff(head: &[u8]) -> Magic {
    if head.starts_with(&GZIP_MAGIC) {
        return Magic::Read(Compression::Gzip);
    }
    if head.starts_with(&ZSTD_MAGIC) {
        return Magic::Read(Compression::Zstd);
    }
    // "BZh" alone could begin a line of text: the digit and the block magic make it bzip2.
    if head.len() >= SNIFF_LEN
        && head.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&head[3])
        && (head[4..10] == BZIP2_BLOCK || head[4..10] == BZIP2_END)
    {
        return Magic::Unsupported("bzip2");
    }
    for (magic, name) in UNSUPPORTED {
        if head.starts_with(magic) {
            return Magic::Unsupported(name);
        }
    }
    Magic::Read(Compression::None)
}

enum State {
    /// Fewer than `SNIFF_LEN` bytes seen: the format is not known yet.
    Sniffing(Vec<u8>),
    Plain,
    Gzip(GzipState),
    Zstd {
        dec: Box<zstd::stream::raw::Decoder<'static>>,
        in_frame: bool,
    },
}

pub struct Decoder {
    state: State,
    out: Vec<u8>,
    compressed_in: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            state: State::Sniffing(Vec::new()),
            out: vec![0; OUT_PIECE],
            compressed_in: 0,
        }
    }

    /// The format, once the first bytes have been seen.
    pub fn compression(&self) -> Option<Compression> {
        match self.state {
            State::Sniffing(_) => None,
            State::Plain => Some(Compression::None),
            State::Gzip(_) => Some(Compression::Gzip),
            State::Zstd { .. } => Some(Compression::Zstd),
        }
    }

    /// Bytes fed so far.
    pub fn bytes_in(&self) -> u64 {
        self.compressed_in
    }

    /// Feeds compressed bytes; decompressed pieces go to `sink`.
    pub fn feed(&mut self, data: &[u8], sink: &mut impl FnMut(&[u8])) -> Result<(), Error> {
        self.compressed_in += data.len() as u64;
        if let State::Sniffing(head) = &mut self.state {
            head.extend_from_slice(data);
            if head.len() < SNIFF_LEN {
                return Ok(());
            }
            let head = std::mem::take(head);
            self.state = start(&head)?;
            return self.run(&head, sink);
        }
        self.run(data, sink)
    }

    /// Ends the stream; fails if it stopped inside a gzip member or zstd frame.
    pub fn finish(&mut self, sink: &mut impl FnMut(&[u8])) -> Result<(), Error> {
        if let State::Sniffing(head) = &mut self.state {
            // Under `SNIFF_LEN` bytes in all: told apart by what there is (an empty zstd frame
            // is 9 bytes; a gzip header cut short fails below as a truncated member).
            let head = std::mem::take(head);
            self.state = start(&head)?;
            self.run(&head, sink)?;
        }
        match &self.state {
            State::Gzip(g) if !g.at_member_boundary() => Err(Error::Decompress(
                "gzip stream ends inside a member (truncated file?)".into(),
            )),
            State::Zstd { in_frame: true, .. } => Err(Error::Decompress(
                "zstd stream ends inside a frame (truncated file?)".into(),
            )),
            _ => Ok(()),
        }
    }

    fn run(&mut self, data: &[u8], sink: &mut impl FnMut(&[u8])) -> Result<(), Error> {
        match &mut self.state {
            State::Sniffing(_) => unreachable!("sniffed before run"),
            State::Plain => {
                sink(data);
                Ok(())
            }
            State::Gzip(g) => g.feed(data, &mut self.out, sink),
            State::Zstd { dec, in_frame } => {
                use zstd::stream::raw::Operation as _;
                let mut input = data;
                while !input.is_empty() {
                    let st = dec
                        .run_on_buffers(input, &mut self.out)
                        .map_err(|e| Error::Decompress(format!("zstd: {e}")))?;
                    input = &input[st.bytes_read..];
                    *in_frame = st.remaining != 0;
                    if st.bytes_written > 0 {
                        sink(&self.out[..st.bytes_written]);
                    }
                }
                // Flush what the decoder still holds for this input.
                loop {
                    let st = dec
                        .run_on_buffers(&[], &mut self.out)
                        .map_err(|e| Error::Decompress(format!("zstd: {e}")))?;
                    if st.bytes_written == 0 {
                        break;
                    }
                    sink(&self.out[..st.bytes_written]);
                }
                Ok(())
            }
        }
    }
}

/// The decoder for a stream starting with `head`.
fn start(head: &[u8]) -> Result<State, Error> {
    match sniff(head) {
        Magic::Read(Compression::Gzip) => Ok(State::Gzip(GzipState::new())),
        Magic::Read(Compression::Zstd) => {
            let dec = zstd::stream::raw::Decoder::new()
                .map_err(|e| Error::Decompress(format!("zstd: {e}")))?;
            Ok(State::Zstd {
                dec: Box::new(dec),
                in_frame: false,
            })
        }
        Magic::Read(Compression::None) => Ok(State::Plain),
        Magic::Unsupported(name) => Err(unsupported(name)),
    }
}

#[cold]
fn unsupported(name: &str) -> Error {
    Error::Decompress(format!(
        "unsupported compression ({name}): ddbshard reads gzip, zstd or uncompressed files"
    ))
}

/// Gzip members (RFC 1952): header, raw deflate body, CRC32 and length trailer, repeated.
/// flate2's push decoders cannot say whether a stream ended mid-member, so the framing is
/// handled here and only the deflate body goes to flate2 (zlib-rs backend).
struct GzipState {
    phase: Phase,
    /// Header or trailer bytes collected so far.
    pending: Vec<u8>,
    inflate: Decompress,
    crc: flate2::Crc,
}

#[derive(PartialEq, Eq)]
enum Phase {
    Header,
    Body,
    Trailer,
    /// Between members, or at the very start.
    Boundary,
}

impl GzipState {
    fn new() -> Self {
        GzipState {
            phase: Phase::Boundary,
            pending: Vec::new(),
            inflate: Decompress::new(false),
            crc: flate2::Crc::new(),
        }
    }

    fn at_member_boundary(&self) -> bool {
        self.phase == Phase::Boundary && self.pending.is_empty()
    }

    fn feed(
        &mut self,
        mut data: &[u8],
        out: &mut [u8],
        sink: &mut impl FnMut(&[u8]),
    ) -> Result<(), Error> {
        while !data.is_empty() {
            match self.phase {
                Phase::Boundary => {
                    self.phase = Phase::Header;
                }
                Phase::Header => {
                    self.pending.push(data[0]);
                    data = &data[1..];
                    if let Some(done) = header_len(&self.pending)? {
                        debug_assert_eq!(done, self.pending.len());
                        self.pending.clear();
                        self.inflate.reset(false);
                        self.crc.reset();
                        self.phase = Phase::Body;
                    }
                }
                Phase::Body => {
                    // Inflate until this input is used up and the output buffer was not filled
                    // (a full buffer may mean more output is waiting), or the member ends.
                    loop {
                        let before_in = self.inflate.total_in();
                        let before_out = self.inflate.total_out();
                        let status = self
                            .inflate
                            .decompress(data, out, FlushDecompress::None)
                            .map_err(|e| Error::Decompress(format!("gzip: {e}")))?;
                        let used = (self.inflate.total_in() - before_in) as usize;
                        let made = (self.inflate.total_out() - before_out) as usize;
                        data = &data[used..];
                        if made > 0 {
                            self.crc.update(&out[..made]);
                            sink(&out[..made]);
                        }
                        if status == Status::StreamEnd {
                            self.phase = Phase::Trailer;
                            break;
                        }
                        if made < out.len() && (data.is_empty() || used == 0) {
                            if used == 0 && made == 0 && !data.is_empty() {
                                return Err(Error::Decompress(
                                    "gzip: deflate stream makes no progress".into(),
                                ));
                            }
                            break;
                        }
                    }
                }
                Phase::Trailer => {
                    let need = 8 - self.pending.len();
                    let take = need.min(data.len());
                    self.pending.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.pending.len() == 8 {
                        let crc =
                            u32::from_le_bytes(self.pending[..4].try_into().expect("4 bytes"));
                        let len =
                            u32::from_le_bytes(self.pending[4..].try_into().expect("4 bytes"));
                        if crc != self.crc.sum() || len != self.crc.amount() {
                            return Err(Error::Decompress("gzip: CRC or length mismatch".into()));
                        }
                        self.pending.clear();
                        self.phase = Phase::Boundary;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Length of a complete gzip header at the start of `h`, `None` if more bytes are needed.
fn header_len(h: &[u8]) -> Result<Option<usize>, Error> {
    if h.len() >= 2 && h[..2] != GZIP_MAGIC {
        return Err(Error::Decompress(
            "gzip: bad magic at start of member".into(),
        ));
    }
    if h.len() < 10 {
        return Ok(None);
    }
    if h[2] != 8 {
        return Err(Error::Decompress("gzip: unknown compression method".into()));
    }
    let flags = h[3];
    let mut i = 10;
    if flags & 0x04 != 0 {
        // FEXTRA: two-byte length, then that many bytes.
        if h.len() < i + 2 {
            return Ok(None);
        }
        i += 2 + u16::from_le_bytes([h[i], h[i + 1]]) as usize;
        if h.len() < i {
            return Ok(None);
        }
    }
    for flag in [0x08, 0x10] {
        // FNAME, FCOMMENT: zero-terminated.
        if flags & flag != 0 {
            match h[i.min(h.len())..].iter().position(|&c| c == 0) {
                Some(z) => i += z + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & 0x02 != 0 {
        i += 2; // FHCRC
    }
    Ok(if h.len() >= i { Some(i) } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode_all(data: &[u8], chunk: usize) -> Result<Vec<u8>, Error> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut sink = |b: &[u8]| out.extend_from_slice(b);
        for c in data.chunks(chunk.max(1)) {
            d.feed(c, &mut sink)?;
        }
        d.finish(&mut sink)?;
        Ok(out)
    }

    #[test]
    fn gzip_members_and_zstd_frames_concatenate() {
        let a = b"hello\n".repeat(1000);
        let b = b"world\n".repeat(777);
        let mut both = a.clone();
        both.extend_from_slice(&b);
        let mut gzs = gz(&a);
        gzs.extend(gz(&b));
        let mut zs = zstd::encode_all(&a[..], 3).unwrap();
        zs.extend(zstd::encode_all(&b[..], 3).unwrap());
        for chunk in [1, 3, 7, 100, 1 << 20] {
            assert_eq!(decode_all(&gzs, chunk).unwrap(), both);
            assert_eq!(decode_all(&zs, chunk).unwrap(), both);
            assert_eq!(decode_all(&both, chunk).unwrap(), both);
        }
    }

    #[test]
    fn truncation_is_an_error() {
        let data = b"some line\n".repeat(5000);
        let g = gz(&data);
        let z = zstd::encode_all(&data[..], 3).unwrap();
        for cut in [3, 10, g.len() / 2, g.len() - 1] {
            assert!(decode_all(&g[..cut], 4096).is_err(), "gzip cut at {cut}");
        }
        for cut in [5, z.len() / 2, z.len() - 1] {
            assert!(decode_all(&z[..cut], 4096).is_err(), "zstd cut at {cut}");
        }
        let mut corrupt = g.clone();
        let n = corrupt.len();
        corrupt[n - 6] ^= 0xff;
        assert!(decode_all(&corrupt, 4096).is_err());
    }

    #[test]
    fn short_and_empty_inputs_are_plain() {
        assert_eq!(decode_all(b"", 10).unwrap(), b"");
        assert_eq!(decode_all(b"ab", 10).unwrap(), b"ab");
        assert_eq!(decode_all(b"{}\n", 1).unwrap(), b"{}\n");
        // text that merely starts like bzip2's header is text
        assert_eq!(decode_all(b"BZh9 is text\n", 3).unwrap(), b"BZh9 is text\n");
    }

    #[test]
    fn short_compressed_inputs_are_decoded_or_refused() {
        let empty_frame = zstd::encode_all(&b""[..], 3).unwrap();
        assert!(empty_frame.len() < SNIFF_LEN, "{}", empty_frame.len());
        assert_eq!(decode_all(&empty_frame, 1).unwrap(), b"");
        let g = gz(b"");
        for cut in 2..SNIFF_LEN {
            let e = decode_all(&g[..cut], 4096).unwrap_err().to_string();
            assert!(e.contains("truncated"), "{cut}: {e}");
        }
    }

    /// The start of each format as its own tool writes it (an empty stream, where that is
    /// how it begins; bzip2 of "x").
    const OTHER_FORMATS: [(&[u8], &str); 7] = [
        (b"BZh91AY&SY\x8d\x1d\xb6\x04", "bzip2"),
        (b"BZh9\x17rE8P\x90\x00\x00\x00\x00", "bzip2"),
        (b"\xfd7zXZ\x00\x00\x04\xe6\xd6\xb4F", "xz"),
        (b"\x04\x22\x4d\x18\x64\x40\xa7\x00\x00\x00\x00", "lz4"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "zip"),
        (b"PK\x05\x06\x00\x00\x00\x00\x00\x00", "zip"),
        (b"7z\xbc\xaf\x27\x1c\x00\x04\x00\x00", "7z"),
    ];

    #[test]
    fn other_compressed_formats_are_refused_by_name() {
        for (data, name) in OTHER_FORMATS {
            assert_eq!(sniff(data), Magic::Unsupported(name));
            for chunk in [1, 3, 4096] {
                let e = decode_all(data, chunk).unwrap_err().to_string();
                assert!(
                    e.contains(&format!("unsupported compression ({name})")),
                    "{name}: {e}"
                );
            }
        }
        assert_eq!(sniff(b"{\"Item\":{}}"), Magic::Read(Compression::None));
        assert_eq!(sniff(&gz(b"x")), Magic::Read(Compression::Gzip));
    }
}
