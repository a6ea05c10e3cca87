//! Shard writing: a target's items dealt round-robin over its shards, compressed in blocks.
//!
//! Each shard collects lines in an uncompressed block; a full block is compressed as one
//! independent zstd frame or gzip member and appended to the shard's ready bytes, which the
//! caller drains (to a file or an S3 multipart upload) after every input chunk. Frames and
//! members concatenate into a valid stream, so memory per shard is one block whatever the
//! shard's size, a single compression context serves every shard, and a resumed run can
//! append to what an earlier run wrote.

use std::io::Write as _;

use flate2::{Compress, Compression as Level, FlushCompress, Status};

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Zstd,
    Gzip,
    None,
}

impl Codec {
    pub fn extension(self) -> &'static str {
        match self {
            Codec::Zstd => ".json.zst",
            Codec::Gzip => ".json.gz",
            Codec::None => ".json",
        }
    }
}

/// The one compression context of a splitter, reused for every block of every shard.
pub struct Compressor {
    codec: Codec,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    deflate: Option<Compress>,
    /// One block's compressed bytes, reused for every block.
    scratch: Vec<u8>,
}

impl Compressor {
    pub fn new(codec: Codec, level: i32) -> Result<Self, Error> {
        let zstd = match codec {
            Codec::Zstd => Some(
                zstd::bulk::Compressor::new(level)
                    .map_err(|e| Error::Config(format!("zstd level {level}: {e}")))?,
            ),
            _ => None,
        };
        let deflate = match codec {
            Codec::Gzip => Some(Compress::new(Level::new(level.clamp(0, 9) as u32), false)),
            _ => None,
        };
        Ok(Compressor {
            codec,
            zstd,
            deflate,
            scratch: Vec::new(),
        })
    }

    /// Appends `block`, compressed as one self-contained frame or member, to `out`.
    fn compress(&mut self, block: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        match self.codec {
            Codec::None => out.extend_from_slice(block),
            Codec::Zstd => {
                let z = self.zstd.as_mut().expect("zstd context");
                // Into a buffer kept between blocks: a fresh worst-case-sized buffer per frame
                // (what `compress` makes) costs page faults on every block.
                self.scratch.clear();
                self.scratch
                    .reserve(zstd::zstd_safe::compress_bound(block.len()));
                z.compress_to_buffer(block, &mut self.scratch)
                    .map_err(|e| Error::Io(std::io::Error::other(format!("zstd: {e}"))))?;
                out.extend_from_slice(&self.scratch);
            }
            Codec::Gzip => {
                let d = self.deflate.as_mut().expect("deflate context");
                d.reset();
                // RFC 1952 header: magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
                out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
                self.scratch.clear();
                self.scratch.reserve(block.len() / 2 + 1024);
                let mut input = block;
                loop {
                    if self.scratch.capacity() - self.scratch.len() < 1024 {
                        self.scratch.reserve(64 << 10);
                    }
                    let before = d.total_in();
                    let status = d
                        .compress_vec(input, &mut self.scratch, FlushCompress::Finish)
                        .map_err(|e| Error::Io(std::io::Error::other(format!("deflate: {e}"))))?;
                    input = &input[(d.total_in() - before) as usize..];
                    if status == Status::StreamEnd {
                        break;
                    }
                }
                out.extend_from_slice(&self.scratch);
                let mut crc = flate2::Crc::new();
                crc.update(block);
                out.write_all(&crc.sum().to_le_bytes())?;
                out.write_all(&(block.len() as u32).to_le_bytes())?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Default, Clone)]
pub struct ShardStats {
    pub items: u64,
    /// Uncompressed bytes of the lines written.
    pub bytes: u64,
}

struct Shard {
    block: Vec<u8>,
    ready: Vec<u8>,
    stats: ShardStats,
}

/// The shards of one target.
pub struct ShardSet {
    shards: Vec<Shard>,
    next: usize,
    block_size: usize,
}

impl ShardSet {
    pub fn new(count: usize, block_size: usize) -> Self {
        let shards = (0..count.max(1))
            .map(|_| Shard {
                block: Vec::new(),
                ready: Vec::new(),
                stats: ShardStats::default(),
            })
            .collect();
        ShardSet {
            shards,
            next: 0,
            block_size: block_size.max(1),
        }
    }

    /// Round-robin position to start dealing from (a resumed or parallel run sets it).
    pub fn set_next(&mut self, next: usize) {
        self.next = next % self.shards.len();
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// Deals one line to the next shard: `write` appends it (newline included) straight to
    /// that shard's block, saving a copy of every line through a buffer of its own. A `write`
    /// that fails leaves the block as it was and the dealing where it was.
    pub fn push_with<R>(
        &mut self,
        comp: &mut Compressor,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), R>,
    ) -> Result<Result<(), R>, Error> {
        let n = self.shards.len();
        let shard = &mut self.shards[self.next];
        let start = shard.block.len();
        if let Err(e) = write(&mut shard.block) {
            shard.block.truncate(start);
            return Ok(Err(e));
        }
        self.next = (self.next + 1) % n;
        shard.stats.items += 1;
        shard.stats.bytes += (shard.block.len() - start) as u64;
        if shard.block.len() >= self.block_size {
            comp.compress(&shard.block, &mut shard.ready)?;
            shard.block.clear();
        }
        Ok(Ok(()))
    }

    /// Compresses every partly filled block (at the end of an input file or of the run).
    pub fn flush(&mut self, comp: &mut Compressor) -> Result<(), Error> {
        for shard in &mut self.shards {
            if !shard.block.is_empty() {
                comp.compress(&shard.block, &mut shard.ready)?;
                shard.block.clear();
            }
        }
        Ok(())
    }

    /// Hands out and clears the compressed bytes ready for each shard.
    pub fn drain(&mut self, mut f: impl FnMut(usize, &[u8])) {
        for (i, shard) in self.shards.iter_mut().enumerate() {
            if !shard.ready.is_empty() {
                f(i, &shard.ready);
                shard.ready.clear();
            }
        }
    }

    pub fn stats(&self) -> impl Iterator<Item = &ShardStats> {
        self.shards.iter().map(|s| &s.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::decode::Decoder;

    fn roundtrip(codec: Codec, level: i32) {
        let mut comp = Compressor::new(codec, level).unwrap();
        let mut set = ShardSet::new(3, 100);
        let mut files = vec![Vec::new(); 3];
        for i in 0..1000 {
            // A write that fails before each line must leave neither bytes behind nor a gap
            // in the dealing.
            let refused = set
                .push_with(&mut comp, |block| {
                    block.extend_from_slice(b"half a li");
                    Err::<(), _>("refused")
                })
                .unwrap();
            assert_eq!(refused, Err("refused"));
            set.push_with(&mut comp, |block| {
                block.extend_from_slice(format!("line {i}\n").as_bytes());
                Ok::<(), ()>(())
            })
            .unwrap()
            .unwrap();
            set.drain(|s, b| files[s].extend_from_slice(b));
        }
        set.flush(&mut comp).unwrap();
        set.drain(|s, b| files[s].extend_from_slice(b));
        let counts: Vec<u64> = set.stats().map(|s| s.items).collect();
        assert_eq!(counts, vec![334, 333, 333]);
        let mut all = Vec::new();
        for f in &files {
            let mut d = Decoder::new();
            let mut text = Vec::new();
            d.feed(f, &mut |b| text.extend_from_slice(b)).unwrap();
            d.finish(&mut |b| text.extend_from_slice(b)).unwrap();
            all.extend(String::from_utf8(text).unwrap().lines().map(str::to_owned));
        }
        all.sort();
        let mut want: Vec<String> = (0..1000).map(|i| format!("line {i}")).collect();
        want.sort();
        assert_eq!(all, want);
    }

    #[test]
    fn shards_decode_to_what_was_dealt() {
        roundtrip(Codec::Zstd, 3);
        roundtrip(Codec::Gzip, 6);
        roundtrip(Codec::None, 0);
    }
}
