//! MD5 of many streams at once, for the MD5 of every shard the split driver writes.
//!
//! The driver appends each finished input file's output to a dozen or more shards, and each
//! shard's manifest entry carries the MD5 of its bytes. One MD5 stream cannot go faster than
//! one 64-byte block after the other (each block needs the state the previous one left), and
//! at about 5 cycles a byte it cost the driver a tenth of a core: CPU taken from the workers.
//! The shards are independent streams, though, so their blocks can go side by side in SIMD
//! lanes ("multi-buffer" MD5): 16 lanes with AVX-512, 8 with AVX2, 4 with SSE2 elsewhere on
//! x86-64, and one at a time on other machines. The lane code is written once, over arrays of
//! lanes, and the compiler vectorises it for the instruction set each entry point enables.
//!
//! The algorithm is RFC 1321's; `tests` check it against the RFC's vectors and the md-5 crate.

/// Per step: the additive constants floor(|sin(i + 1)| * 2^32) (RFC 1321, section 3.4).
const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

/// Per round: the left rotations of its four kinds of step.
const ROTATIONS: [[u32; 4]; 4] = [
    [7, 12, 17, 22],
    [5, 9, 14, 20],
    [4, 11, 16, 23],
    [6, 10, 15, 21],
];

const INITIAL: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

/// The running MD5 of one stream: chaining state, length so far and the bytes of a block not
/// yet complete.
#[derive(Clone, Debug)]
pub struct Md5 {
    state: [u32; 4],
    len: u64,
    pending: [u8; 64],
    pending_len: usize,
}

impl Default for Md5 {
    fn default() -> Self {
        Md5 {
            state: INITIAL,
            len: 0,
            pending: [0; 64],
            pending_len: 0,
        }
    }
}

impl Md5 {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        update_many(&mut [(self, &[data][..])]);
    }

    /// The digest of the bytes so far; the stream can go on after it.
    pub fn digest(&self) -> [u8; 16] {
        let mut last = self.clone();
        let bits = self.len.wrapping_mul(8);
        let zeros = (55usize.wrapping_sub(self.pending_len)) % 64; // 0x80 + zeros + 8 ≡ 0 mod 64
        let mut tail = [0u8; 72];
        tail[0] = 0x80;
        tail[1 + zeros..9 + zeros].copy_from_slice(&bits.to_le_bytes());
        last.update(&tail[..9 + zeros]);
        debug_assert_eq!(last.pending_len, 0);
        let mut out = [0u8; 16];
        for (o, w) in out.chunks_exact_mut(4).zip(last.state) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

/// Appends bytes to many streams: each entry is a stream and its chunks, in order. A stream
/// may appear only once (the borrow checker sees to it).
pub fn update_many(jobs: &mut [(&mut Md5, &[&[u8]])]) {
    let mut streams: Vec<Stream<'_, '_>> = jobs
        .iter_mut()
        .map(|(md5, chunks)| Stream::new(md5, chunks))
        .collect();
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the instructions the function is compiled for.
            return unsafe { run_avx512(&mut streams) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { run_avx2(&mut streams) };
        }
        run_lanes::<4>(&mut streams)
    }
    #[cfg(not(target_arch = "x86_64"))]
    run_lanes::<1>(&mut streams)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn run_avx512(streams: &mut [Stream<'_, '_>]) {
    run_lanes::<16>(streams)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn run_avx2(streams: &mut [Stream<'_, '_>]) {
    run_lanes::<8>(streams)
}

/// One stream's new bytes as a source of whole blocks: the stream's pending bytes first, then
/// its chunks. Bytes that do not fill a last block go back to pending at the end.
struct Stream<'m, 'c> {
    md5: &'m mut Md5,
    chunks: &'c [&'c [u8]],
    chunk: usize,
    offset: usize,
    blocks: u64, // whole blocks still to compress
}

impl<'m, 'c> Stream<'m, 'c> {
    fn new(md5: &'m mut Md5, chunks: &'c [&'c [u8]]) -> Self {
        let added: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        let blocks = (md5.pending_len as u64 + added) / 64;
        md5.len = md5.len.wrapping_add(added);
        Stream {
            md5,
            chunks,
            chunk: 0,
            offset: 0,
            blocks,
        }
    }

    /// Writes the next block's 16 little-endian words into lane `lane` of `words`.
    #[inline(always)]
    fn next_block<const L: usize>(&mut self, words: &mut [[u32; L]; 16], lane: usize) {
        self.blocks -= 1;
        if self.md5.pending_len == 0 {
            if let Some(block) = self.chunks[self.chunk].get(self.offset..self.offset + 64) {
                self.advance(64);
                return load_words(words, lane, block);
            }
        }
        // The block spans a chunk boundary or starts with pending bytes: assemble it.
        let mut block = [0u8; 64];
        let mut filled = self.take_pending(&mut block);
        while filled < 64 {
            filled += self.copy_from_chunks(&mut block[filled..]);
        }
        load_words(words, lane, &block);
    }

    fn take_pending(&mut self, out: &mut [u8; 64]) -> usize {
        let n = self.md5.pending_len;
        out[..n].copy_from_slice(&self.md5.pending[..n]);
        self.md5.pending_len = 0;
        n
    }

    /// Copies from the chunks into `out` up to its length or the current chunk's end.
    fn copy_from_chunks(&mut self, out: &mut [u8]) -> usize {
        let rest = &self.chunks[self.chunk][self.offset..];
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.advance(n);
        n
    }

    /// Moves past `n` bytes of the current chunk, to the next chunk at its end.
    #[inline(always)]
    fn advance(&mut self, n: usize) {
        self.offset += n;
        if self.offset == self.chunks[self.chunk].len() {
            (self.chunk, self.offset) = (self.chunk + 1, 0);
        }
    }

    /// After the last whole block: the bytes left (fewer than 64) become pending.
    fn keep_rest(&mut self) {
        let md5 = &mut *self.md5;
        for (i, chunk) in self.chunks.iter().enumerate().skip(self.chunk) {
            let rest = if i == self.chunk {
                &chunk[self.offset..]
            } else {
                chunk
            };
            md5.pending[md5.pending_len..md5.pending_len + rest.len()].copy_from_slice(rest);
            md5.pending_len += rest.len();
        }
        (self.chunk, self.offset) = (self.chunks.len(), 0);
    }
}

#[inline(always)]
fn load_words<const L: usize>(words: &mut [[u32; L]; 16], lane: usize, block: &[u8]) {
    for (w, bytes) in words.iter_mut().zip(block.chunks_exact(4)) {
        w[lane] = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
}

/// Deals the streams' blocks to L lanes: a lane takes the next stream as soon as its own has
/// no block left, so lanes stay busy until fewer streams than lanes remain.
#[inline(always)]
fn run_lanes<const L: usize>(streams: &mut [Stream<'_, '_>]) {
    let mut lanes: [Option<usize>; L] = [None; L];
    let mut state = [[0u32; L]; 4];
    let mut words = [[0u32; L]; 16]; // word w of every lane's block side by side
    let mut next = 0;
    loop {
        for lane in 0..L {
            if lanes[lane].is_some() {
                continue;
            }
            while next < streams.len() && streams[next].blocks == 0 {
                streams[next].keep_rest();
                next += 1;
            }
            if next < streams.len() {
                for (s, w) in state.iter_mut().zip(streams[next].md5.state) {
                    s[lane] = w;
                }
                lanes[lane] = Some(next);
                next += 1;
            }
        }
        let busy = lanes.iter().flatten().count();
        if busy == 0 {
            return;
        }
        if busy == 1 && L > 1 {
            // One stream left: its blocks go one lane at a time rather than L lanes wide.
            let lane = lanes.iter().position(Option::is_some).unwrap_or(0);
            let i = lanes[lane].take().unwrap_or(0);
            streams[i].md5.state = state.map(|s| s[lane]);
            run_lanes::<1>(std::slice::from_mut(&mut streams[i]));
            continue;
        }
        // As many rounds as the shortest busy stream has blocks; idle lanes hash stale words.
        let rounds = lanes
            .iter()
            .flatten()
            .map(|&i| streams[i].blocks)
            .min()
            .unwrap_or(0);
        for _ in 0..rounds {
            for (lane, slot) in lanes.iter().enumerate() {
                if let Some(i) = *slot {
                    streams[i].next_block(&mut words, lane);
                }
            }
            compress(&mut state, &words);
        }
        for (lane, slot) in lanes.iter_mut().enumerate() {
            if let Some(i) = *slot {
                if streams[i].blocks == 0 {
                    streams[i].md5.state = state.map(|s| s[lane]);
                    streams[i].keep_rest();
                    *slot = None;
                }
            }
        }
    }
}

#[inline(always)]
fn mix_f(x: u32, y: u32, z: u32) -> u32 {
    (x & y) | (!x & z)
}

#[inline(always)]
fn mix_g(x: u32, y: u32, z: u32) -> u32 {
    (x & z) | (y & !z)
}

#[inline(always)]
fn mix_h(x: u32, y: u32, z: u32) -> u32 {
    x ^ y ^ z
}

#[inline(always)]
fn mix_i(x: u32, y: u32, z: u32) -> u32 {
    y ^ (x | !z)
}

/// One block per lane: the 64 steps of RFC 1321 section 3.4, each done on every lane.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // lane loops index four arrays in step
fn compress<const L: usize>(state: &mut [[u32; L]; 4], m: &[[u32; L]; 16]) {
    let [mut a, mut b, mut c, mut d] = *state;
    macro_rules! step {
        ($a:ident, $b:ident, $c:ident, $d:ident, $i:expr, $mix:expr) => {{
            let i: usize = $i;
            let (round, word) = match i / 16 {
                0 => (0, i),
                1 => (1, (5 * i + 1) % 16),
                2 => (2, (3 * i + 5) % 16),
                _ => (3, (7 * i) % 16),
            };
            let rotation = ROTATIONS[round][i % 4];
            for l in 0..L {
                let sum = $a[l]
                    .wrapping_add($mix($b[l], $c[l], $d[l]))
                    .wrapping_add(K[i])
                    .wrapping_add(m[word][l]);
                $a[l] = $b[l].wrapping_add(sum.rotate_left(rotation));
            }
        }};
    }
    // Written out step by step (no loop), so every index and rotation is a constant.
    macro_rules! four_steps {
        ($i:expr, $mix:ident) => {
            step!(a, b, c, d, $i, $mix);
            step!(d, a, b, c, $i + 1, $mix);
            step!(c, d, a, b, $i + 2, $mix);
            step!(b, c, d, a, $i + 3, $mix);
        };
    }
    macro_rules! round {
        ($first:expr, $mix:ident) => {
            four_steps!($first, $mix);
            four_steps!($first + 4, $mix);
            four_steps!($first + 8, $mix);
            four_steps!($first + 12, $mix);
        };
    }
    round!(0, mix_f);
    round!(16, mix_g);
    round!(32, mix_h);
    round!(48, mix_i);
    for l in 0..L {
        state[0][l] = state[0][l].wrapping_add(a[l]);
        state[1][l] = state[1][l].wrapping_add(b[l]);
        state[2][l] = state[2][l].wrapping_add(c[l]);
        state[3][l] = state[3][l].wrapping_add(d[l]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5_reference::{Digest, Md5 as Reference};

    fn hex(d: [u8; 16]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn reference(data: &[u8]) -> [u8; 16] {
        Reference::digest(data).into()
    }

    #[test]
    fn rfc_1321_test_suite() {
        let cases = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (text, want) in cases {
            let mut md5 = Md5::new();
            md5.update(text.as_bytes());
            assert_eq!(hex(md5.digest()), want, "{text:?}");
        }
    }

    /// Deterministic bytes (xorshift), so a failure reproduces.
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Every length around block and padding boundaries, as one update.
    #[test]
    fn lengths_around_the_block_boundaries() {
        for len in 0..300 {
            let data = bytes(len as u64, len);
            let mut md5 = Md5::new();
            md5.update(&data);
            assert_eq!(md5.digest(), reference(&data), "length {len}");
        }
    }

    /// Streams of unequal lengths, fed in uneven chunks over several calls, in every lane
    /// width: each digest equals the reference of its stream's bytes.
    #[test]
    fn many_streams_in_chunks_match_the_reference_in_every_lane_width() {
        for width in [1usize, 4, 8, 16, 0] {
            let count = 37;
            let data: Vec<Vec<u8>> = (0..count)
                .map(|s| bytes(s as u64 + 1, (s * 997) % 20_000 + s))
                .collect();
            let mut md5s: Vec<Md5> = (0..count).map(|_| Md5::new()).collect();
            let mut fed = vec![0usize; count];
            for call in 0..5 {
                // Each call gives each stream a few chunks of odd sizes, some empty.
                let mut owned: Vec<Vec<&[u8]>> = Vec::new();
                for (s, d) in data.iter().enumerate() {
                    let mut chunks = Vec::new();
                    for k in 0..3 {
                        let want = if call == 4 {
                            d.len()
                        } else {
                            (s * 131 + k * 61 + call * 7) % 2_000
                        };
                        let end = (fed[s] + want).min(d.len());
                        chunks.push(&d[fed[s]..end]);
                        fed[s] = end;
                    }
                    owned.push(chunks);
                }
                let mut jobs: Vec<(&mut Md5, &[&[u8]])> = md5s
                    .iter_mut()
                    .zip(owned.iter())
                    .map(|(m, c)| (m, &c[..]))
                    .collect();
                if width == 0 {
                    update_many(&mut jobs); // what this CPU dispatches to
                    continue;
                }
                let mut streams: Vec<Stream<'_, '_>> =
                    jobs.iter_mut().map(|(m, c)| Stream::new(m, c)).collect();
                match width {
                    1 => run_lanes::<1>(&mut streams),
                    4 => run_lanes::<4>(&mut streams),
                    8 => run_lanes::<8>(&mut streams),
                    _ => run_lanes::<16>(&mut streams),
                }
            }
            for (s, d) in data.iter().enumerate() {
                assert_eq!(fed[s], d.len());
                assert_eq!(md5s[s].digest(), reference(d), "width {width}, stream {s}");
            }
        }
    }

    #[test]
    fn digest_leaves_the_stream_going() {
        let data = bytes(7, 1000);
        let mut md5 = Md5::new();
        md5.update(&data[..500]);
        assert_eq!(md5.digest(), reference(&data[..500]));
        md5.update(&data[500..]);
        assert_eq!(md5.digest(), reference(&data));
    }
}
