//! The first step of `diff`: compare two sides' (key hash, item hash) pairs and keep the rows
//! that are not matches, as a full outer join on the key hash would give them.
//!
//! Each side is 16 bytes per item. Both sides are scattered into buckets by the top bits of
//! the key hash (XXH3, so the buckets come out even), small enough that a bucket of both sides
//! and a hash table of its expected keys stay in the CPU's cache; then each actual pair is
//! looked up in that table. The buckets are independent, so they are shared out between
//! threads. Only two integers per item are ever touched, and no table outgrows the cache: at
//! 10M items a side this takes a fraction of what a general-purpose join needs.
//!
//! A key hash may appear more than once on a side (two keys with one hash, or a key twice):
//! then every pair of its expected and actual rows is one row of the result, as in a full
//! join, and the caller sorts such groups out by the real keys. A bucket whose expected side
//! repeats a key hash is sorted and walked as a merge join instead, which gives those pairs.

use std::num::NonZeroUsize;
use std::thread;

/// Items per bucket aimed at: 16 bytes each, so a bucket of both sides (2 x 128 KiB) and its
/// table (4 bytes a slot, at most half full: 64 KiB) fit in a core's 512 KiB of L2 cache.
const BUCKET_ITEMS: usize = 8192;
/// At most 2^16 buckets: past that the scatter writes to too many places at once.
const MAX_BUCKET_BITS: u32 = 16;

/// Why a row of the join is not a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// On the expected side only.
    Missing = 0,
    /// On the actual side only.
    Unexpected = 1,
    /// On both sides under one key hash, with different item hashes.
    Changed = 2,
}

/// The rows of the join that are not matches, column by column.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PairDiff {
    /// Rows of the join whose two item hashes are equal.
    pub matched: u64,
    pub key: Vec<u64>,
    /// The expected side's item hash (0 where `kind` is `Unexpected`).
    pub expected: Vec<u64>,
    /// The actual side's item hash (0 where `kind` is `Missing`).
    pub actual: Vec<u64>,
    pub kind: Vec<Kind>,
}

impl PairDiff {
    fn push(&mut self, key: u64, expected: u64, actual: u64, kind: Kind) {
        self.key.push(key);
        self.expected.push(expected);
        self.actual.push(actual);
        self.kind.push(kind);
    }

    fn append(&mut self, mut other: PairDiff) {
        self.matched += other.matched;
        self.key.append(&mut other.key);
        self.expected.append(&mut other.expected);
        self.actual.append(&mut other.actual);
        self.kind.append(&mut other.kind);
    }
}

/// One side's pairs grouped into buckets: bucket `b` is `pairs[starts[b]..starts[b + 1]]`.
struct Buckets {
    pairs: Vec<(u64, u64)>,
    starts: Vec<usize>,
}

/// Little-endian u64 values out of a byte chunk (Arrow buffers hold them so).
fn values(chunk: &[u8]) -> impl Iterator<Item = u64> + '_ {
    chunk
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8-byte chunk")))
}

/// The (key hash, item hash) pairs of a side given as two lists of chunks, which may be cut
/// at different places.
fn side_pairs<'a>(
    keys: &'a [&'a [u8]],
    items: &'a [&'a [u8]],
) -> impl Iterator<Item = (u64, u64)> + 'a {
    let keys = keys.iter().flat_map(|c| values(c));
    keys.zip(items.iter().flat_map(|c| values(c)))
}

fn count(chunks: &[&[u8]]) -> usize {
    chunks.iter().map(|c| c.len() / 8).sum()
}

impl Buckets {
    /// Two passes over the side: count per bucket, then place each pair.
    fn scatter(keys: &[&[u8]], items: &[&[u8]], bits: u32) -> Buckets {
        let bucket = |k: u64| {
            if bits == 0 {
                0
            } else {
                (k >> (64 - bits)) as usize
            }
        };
        let mut starts = vec![0usize; (1 << bits) + 1];
        for chunk in keys {
            for k in values(chunk) {
                starts[bucket(k) + 1] += 1;
            }
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        let n = starts[starts.len() - 1];
        let mut pairs = vec![(0u64, 0u64); n];
        let mut next = starts.clone();
        for (k, h) in side_pairs(keys, items) {
            let slot = &mut next[bucket(k)];
            pairs[*slot] = (k, h);
            *slot += 1;
        }
        Buckets { pairs, starts }
    }

    /// The side cut where buckets `cuts` begin, as separate mutable slices.
    fn split_at_buckets(&mut self, cuts: &[usize]) -> Vec<&mut [(u64, u64)]> {
        let mut out = Vec::with_capacity(cuts.len() + 1);
        let mut rest: &mut [(u64, u64)] = &mut self.pairs;
        let mut taken = 0;
        for &b in cuts {
            let (head, tail) = rest.split_at_mut(self.starts[b] - taken);
            taken = self.starts[b];
            out.push(head);
            rest = tail;
        }
        out.push(rest);
        out
    }
}

/// Compares the expected side's pairs with the actual side's. Each side is given as its key
/// hashes and item hashes, each a list of chunks of little-endian u64 values (both lists hold
/// the same number of values in all). Uses up to `threads` threads (0: one per CPU).
pub fn diff_pairs(
    expected_keys: &[&[u8]],
    expected_items: &[&[u8]],
    actual_keys: &[&[u8]],
    actual_items: &[&[u8]],
    threads: usize,
) -> PairDiff {
    let n = count(expected_keys).max(count(actual_keys));
    let mut bits = 0;
    while bits < MAX_BUCKET_BITS && (n >> bits) > BUCKET_ITEMS {
        bits += 1;
    }
    let buckets = 1usize << bits;
    let threads = if threads == 0 {
        thread::available_parallelism().map_or(1, NonZeroUsize::get)
    } else {
        threads
    }
    .clamp(1, buckets);
    let (mut e, mut a) = thread::scope(|s| {
        let e = s.spawn(|| Buckets::scatter(expected_keys, expected_items, bits));
        let a = Buckets::scatter(actual_keys, actual_items, bits);
        (e.join().expect("scatter thread"), a)
    });
    // Each thread takes a run of whole buckets, of both sides.
    let cuts: Vec<usize> = (1..threads).map(|t| t * buckets / threads).collect();
    let ranges: Vec<(usize, usize)> = std::iter::once(0)
        .chain(cuts.iter().copied())
        .zip(cuts.iter().copied().chain(std::iter::once(buckets)))
        .collect();
    let (e_starts, a_starts) = (e.starts.clone(), a.starts.clone());
    let e_parts = e.split_at_buckets(&cuts);
    let a_parts = a.split_at_buckets(&cuts);
    let results: Vec<PairDiff> = thread::scope(|s| {
        let handles: Vec<_> = e_parts
            .into_iter()
            .zip(a_parts)
            .zip(ranges)
            .map(|((ep, ap), (b0, b1))| {
                let (e_starts, a_starts) = (&e_starts, &a_starts);
                s.spawn(move || {
                    let mut out = PairDiff::default();
                    let mut table = Table::default();
                    for b in b0..b1 {
                        let eb =
                            &mut ep[e_starts[b] - e_starts[b0]..e_starts[b + 1] - e_starts[b0]];
                        let ab =
                            &mut ap[a_starts[b] - a_starts[b0]..a_starts[b + 1] - a_starts[b0]];
                        if !table.compare(eb, ab, &mut out) {
                            eb.sort_unstable();
                            ab.sort_unstable();
                            walk(eb, ab, &mut out);
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("diff thread"))
            .collect()
    });
    let mut out = PairDiff::default();
    for r in results {
        out.append(r);
    }
    out
}

/// An open-addressing table of one bucket's expected pairs (slot: index + 1, 0 empty), and
/// which of them the actual side has; reused from bucket to bucket.
#[derive(Default)]
struct Table {
    slots: Vec<u32>,
    seen: Vec<bool>,
}

impl Table {
    /// Looks each actual pair up among the expected ones. Returns false, having written
    /// nothing, when the expected side repeats a key hash: the caller then walks the bucket.
    fn compare(&mut self, e: &[(u64, u64)], a: &[(u64, u64)], out: &mut PairDiff) -> bool {
        let bits = (2 * e.len()).max(2).next_power_of_two().trailing_zeros();
        let mask = (1usize << bits) - 1;
        // The bucket's keys share their top bits: take the slot from all of them, mixed.
        let slot = |k: u64| (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize;
        self.slots.clear();
        self.slots.resize(mask + 1, 0);
        for (i, &(k, _)) in e.iter().enumerate() {
            let mut s = slot(k);
            loop {
                match self.slots[s] {
                    0 => {
                        self.slots[s] = i as u32 + 1;
                        break;
                    }
                    v if e[v as usize - 1].0 == k => return false,
                    _ => s = (s + 1) & mask,
                }
            }
        }
        self.seen.clear();
        self.seen.resize(e.len(), false);
        for &(k, ha) in a {
            let mut s = slot(k);
            loop {
                match self.slots[s] {
                    0 => {
                        out.push(k, 0, ha, Kind::Unexpected);
                        break;
                    }
                    v if e[v as usize - 1].0 == k => {
                        let i = v as usize - 1;
                        self.seen[i] = true;
                        if e[i].1 == ha {
                            out.matched += 1;
                        } else {
                            out.push(k, e[i].1, ha, Kind::Changed);
                        }
                        break;
                    }
                    _ => s = (s + 1) & mask,
                }
            }
        }
        for (&(k, he), &seen) in e.iter().zip(&self.seen) {
            if !seen {
                out.push(k, he, 0, Kind::Missing);
            }
        }
        true
    }
}

/// The length of the run of pairs at the start of `pairs` with key `k`.
fn run_of(pairs: &[(u64, u64)], k: u64) -> usize {
    pairs.iter().take_while(|p| p.0 == k).count()
}

/// Walks two sorted buckets side by side, as a merge join on the key hash.
fn walk(e: &[(u64, u64)], a: &[(u64, u64)], out: &mut PairDiff) {
    let (mut i, mut j) = (0, 0);
    while i < e.len() && j < a.len() {
        let (ke, ka) = (e[i].0, a[j].0);
        if ke < ka {
            out.push(ke, e[i].1, 0, Kind::Missing);
            i += 1;
        } else if ka < ke {
            out.push(ka, 0, a[j].1, Kind::Unexpected);
            j += 1;
        } else {
            let (ne, na) = (run_of(&e[i..], ke), run_of(&a[j..], ke));
            for &(_, he) in &e[i..i + ne] {
                for &(_, ha) in &a[j..j + na] {
                    if he == ha {
                        out.matched += 1;
                    } else {
                        out.push(ke, he, ha, Kind::Changed);
                    }
                }
            }
            i += ne;
            j += na;
        }
    }
    for &(k, h) in &e[i..] {
        out.push(k, h, 0, Kind::Missing);
    }
    for &(k, h) in &a[j..] {
        out.push(k, 0, h, Kind::Unexpected);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(values: &[u64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// The rows as (key, expected, actual, kind), sorted, for comparison.
    fn rows(d: &PairDiff) -> Vec<(u64, u64, u64, Kind)> {
        let mut r: Vec<_> = (0..d.key.len())
            .map(|i| (d.key[i], d.expected[i], d.actual[i], d.kind[i]))
            .collect();
        r.sort_by_key(|x| (x.0, x.1, x.2, x.3 as u8));
        r
    }

    fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
        v.iter().map(|c| c.as_slice()).collect()
    }

    fn run(e: &[(u64, u64)], a: &[(u64, u64)], threads: usize) -> PairDiff {
        let ek = bytes(&e.iter().map(|p| p.0).collect::<Vec<_>>());
        let eh = bytes(&e.iter().map(|p| p.1).collect::<Vec<_>>());
        let ak = bytes(&a.iter().map(|p| p.0).collect::<Vec<_>>());
        let ah = bytes(&a.iter().map(|p| p.1).collect::<Vec<_>>());
        // Split each column into uneven chunks, as Arrow record batches come.
        let cut = |b: &Vec<u8>| -> Vec<Vec<u8>> {
            let at = (b.len() / 8 / 3) * 8;
            vec![b[..at].to_vec(), b[at..].to_vec()]
        };
        let (ek, eh, ak, ah) = (cut(&ek), cut(&eh), cut(&ak), cut(&ah));
        diff_pairs(&refs(&ek), &refs(&eh), &refs(&ak), &refs(&ah), threads)
    }

    /// A full outer join on the key, written the obvious way: rows grouped by key in maps.
    fn oracle(e: &[(u64, u64)], a: &[(u64, u64)]) -> (u64, Vec<(u64, u64, u64, Kind)>) {
        use std::collections::BTreeMap;
        let group = |side: &[(u64, u64)]| {
            let mut m: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            for &(k, h) in side {
                m.entry(k).or_default().push(h);
            }
            m
        };
        let (ge, ga) = (group(e), group(a));
        let mut matched = 0;
        let mut out = Vec::new();
        for (&k, hes) in &ge {
            for &he in hes {
                match ga.get(&k) {
                    None => out.push((k, he, 0, Kind::Missing)),
                    Some(has) => {
                        for &ha in has {
                            if ha == he {
                                matched += 1;
                            } else {
                                out.push((k, he, ha, Kind::Changed));
                            }
                        }
                    }
                }
            }
        }
        for (&k, has) in &ga {
            if !ge.contains_key(&k) {
                out.extend(has.iter().map(|&ha| (k, 0, ha, Kind::Unexpected)));
            }
        }
        out.sort_by_key(|x| (x.0, x.1, x.2, x.3 as u8));
        (matched, out)
    }

    /// A small deterministic generator (SplitMix64), so the test needs no crate.
    fn mix(x: &mut u64) -> u64 {
        *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn planted_differences_are_found_exactly() {
        let mut seed = 7;
        let e: Vec<(u64, u64)> = (0..50_000)
            .map(|_| (mix(&mut seed), mix(&mut seed)))
            .collect();
        let mut a = e.clone();
        a.remove(10); // missing
        a[20].1 ^= 1; // changed
        a[30].0 = mix(&mut seed); // unexpected, and e[31]'s key missing
        a.push((mix(&mut seed), 5)); // unexpected
        for threads in [1, 2, 3] {
            let d = run(&e, &a, threads);
            let (matched, want) = oracle(&e, &a);
            assert_eq!(d.matched, matched);
            assert_eq!(d.matched, 50_000 - 3);
            assert_eq!(rows(&d), want);
            let kinds: Vec<_> = rows(&d).iter().map(|r| r.3 as u8).collect();
            assert_eq!(kinds.iter().filter(|&&k| k == 0).count(), 2);
            assert_eq!(kinds.iter().filter(|&&k| k == 1).count(), 2);
            assert_eq!(kinds.iter().filter(|&&k| k == 2).count(), 1);
        }
    }

    #[test]
    fn repeated_key_hashes_join_every_pair_like_a_full_join() {
        // Key 1: two rows expected, one actual (one matches); key 2: one expected, two actual,
        // none matching; key 3 twice on the expected side only; key 4 on the actual side twice.
        let e = [(1, 10), (1, 11), (2, 20), (3, 30), (3, 31), (u64::MAX, 9)];
        let a = [(1, 10), (2, 21), (2, 22), (4, 40), (4, 40), (u64::MAX, 9)];
        let d = run(&e, &a, 2);
        let (matched, want) = oracle(&e, &a);
        assert_eq!((d.matched, rows(&d)), (matched, want));
        assert_eq!(d.matched, 2);
    }

    #[test]
    fn random_sides_agree_with_the_oracle_across_bucket_counts() {
        let mut seed = 99;
        // n up to 40,000 items a side gives up to 2^4 buckets; `distinct` keys per side.
        for (n, distinct) in [(0u64, 1u64), (1, 1), (17, 4), (5_000, 64), (40_000, 30_000)] {
            // Keys spread over all 64 bits, so every bucket is used; few item hashes, so
            // repeated keys both match and differ.
            let key = |s: &mut u64| (mix(s) % distinct).wrapping_mul(0x0123_4567_89AB_CDEF);
            let e: Vec<_> = (0..n)
                .map(|_| (key(&mut seed), mix(&mut seed) % 3))
                .collect();
            let a: Vec<_> = (0..n / 2)
                .map(|_| (key(&mut seed), mix(&mut seed) % 3))
                .collect();
            for threads in [1, 2] {
                let d = run(&e, &a, threads);
                let (matched, want) = oracle(&e, &a);
                assert_eq!(d.matched, matched, "n={n}");
                assert_eq!(rows(&d), want, "n={n}");
            }
        }
    }

    #[test]
    fn an_empty_side_makes_every_row_of_the_other_a_difference() {
        let e = [(5, 1), (6, 2)];
        let d = run(&e, &[], 0);
        assert_eq!(d.matched, 0);
        assert_eq!(d.kind, vec![Kind::Missing, Kind::Missing]);
        let d = run(&[], &e, 0);
        assert_eq!(d.kind, vec![Kind::Unexpected, Kind::Unexpected]);
    }
}
