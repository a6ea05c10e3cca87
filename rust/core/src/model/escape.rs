//! Finding the bytes that matter inside a JSON string: `"`, `\` and control characters below
//! 0x20. The parser needs the first of them to end a string (or to decode an escape, or to
//! refuse a raw control character) and the serializer to know where to escape; every other
//! byte, UTF-8 included, is copied as it is.
//!
//! Strings in items are mostly short (keys, tags, timestamps), where a SIMD search such as
//! memchr's pays its setup for little, and a byte loop pays a branch per byte. Eight bytes are
//! tested at once in a u64 instead ("SWAR"), with a byte loop only for the last few.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Whether each byte needs attention, as one high bit per byte of `w` (little-endian load).
///
/// `(x - LO) & !x & HI` flags the zero bytes of `x`; with `LO * n` subtracted it flags bytes
/// below `n` (for `n <= 0x80`). Either test can also flag a byte *above* a flagged one (the
/// subtraction's borrow runs upward) but never one below the first true match, so the lowest
/// flag, the only one used, is always exact.
#[inline(always)]
fn special_mask(w: u64) -> u64 {
    let control = w.wrapping_sub(LO * 0x20) & !w;
    let q = w ^ (LO * u64::from(b'"'));
    let quote = q.wrapping_sub(LO) & !q;
    let b = w ^ (LO * u64::from(b'\\'));
    let backslash = b.wrapping_sub(LO) & !b;
    (control | quote | backslash) & HI
}

#[inline(always)]
pub(crate) fn is_special(c: u8) -> bool {
    c < 0x20 || c == b'"' || c == b'\\'
}

/// Index of the first `"`, `\` or byte below 0x20 in `b`, if any.
#[inline]
pub(crate) fn find_special(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 8 <= b.len() {
        let w = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let m = special_mask(w);
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..].iter().position(|&c| is_special(c)).map(|p| i + p)
}

/// How `serialize::write_str` escapes a byte that `find_special` found: the escape and its
/// length. The parser compares escapes in its input with these to tell whether a line is
/// already in the form the serializer writes (`parse::Layout::canonical`), so this is the one
/// place that decides. (Here rather than in `serialize`, so that `parse` needs no `output`.)
pub(crate) fn escape_bytes(c: u8) -> ([u8; 6], usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match c {
        b'"' => (*b"\\\"    ", 2),
        b'\\' => (*b"\\\\    ", 2),
        b'\n' => (*b"\\n    ", 2),
        b'\r' => (*b"\\r    ", 2),
        b'\t' => (*b"\\t    ", 2),
        _ => (
            [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(c >> 4) as usize],
                HEX[(c & 15) as usize],
            ],
            6,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple(b: &[u8]) -> Option<usize> {
        b.iter().position(|&c| is_special(c))
    }

    #[test]
    fn agrees_with_a_byte_loop() {
        // Every special byte, and its neighbours that are not special, at every position of
        // strings up to 24 bytes, on backgrounds of ASCII, high bytes and other specials.
        let probes: Vec<u8> = (0u8..=0x21)
            .chain([
                b'"', b'#', b'[', b'\\', b']', 0x7f, 0x80, 0x9f, 0xa0, 0xdc, 0xe2, 0xff,
            ])
            .collect();
        for len in 0..24 {
            for bg in [b'a', 0xe9, 0x80, 0xff, b' ', b'!', b'#'] {
                let base = vec![bg; len];
                assert_eq!(find_special(&base), simple(&base));
                for pos in 0..len {
                    for &p in &probes {
                        let mut s = base.clone();
                        s[pos] = p;
                        assert_eq!(find_special(&s), simple(&s), "{s:?}");
                        // A second special later must not hide or displace the first.
                        if pos + 1 < len {
                            s[len - 1] = b'"';
                            assert_eq!(find_special(&s), simple(&s), "{s:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn finds_first_of_many_in_utf8() {
        let s = "ünïcödé 😀 \u{2028} line\"after\\and\u{1}".as_bytes();
        assert_eq!(find_special(s), simple(s));
        let mut rest = s;
        while let Some(i) = find_special(rest) {
            assert_eq!(Some(i), simple(rest));
            rest = &rest[i + 1..];
        }
        assert_eq!(simple(rest), None);
    }
}
