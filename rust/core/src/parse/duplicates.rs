//! Duplicate detection: names within one attribute map, and set members by value (numbers by
//! their decimal value, binaries by their decoded bytes).

use std::borrow::Cow;

use crate::model::value::TypeTag;
use crate::model::{binary, number};

/// The first name that occurs twice, if any. Every map and string set of every item comes
/// through here, nearly always without a duplicate: up to 32 names, each is compared by
/// fingerprint with the ones before it (no allocation, no string comparison unless two
/// fingerprints agree); more are sorted.
pub(super) fn first_duplicate<'s>(names: impl Iterator<Item = &'s str> + Clone) -> Option<&'s str> {
    const SMALL: usize = 32;
    let n = names.clone().count();
    if n < 2 {
        return None;
    }
    if n <= SMALL {
        let mut seen = [0u64; SMALL];
        for (i, name) in names.clone().enumerate() {
            let f = fingerprint(name);
            if seen[..i].contains(&f) && names.clone().take(i).any(|earlier| earlier == name) {
                return Some(name);
            }
            seen[i] = f;
        }
        return None;
    }
    let mut v: Vec<&str> = names.collect();
    v.sort_unstable();
    v.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// Equal strings have equal fingerprints: their length and first and last four bytes.
fn fingerprint(s: &str) -> u64 {
    let b = s.as_bytes();
    let n = b.len();
    let (head, tail) = if n >= 4 {
        let word = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        (word(0), word(n - 4))
    } else {
        let short = b.iter().rev().fold(0u32, |w, &c| w << 8 | u32::from(c));
        (short, 0)
    };
    (u64::from(head) | u64::from(tail) << 32) ^ (n as u64).rotate_right(8)
}

/// A member equal to an earlier one: strings by text, numbers by value ("1" = "1.0"),
/// binaries by decoded bytes.
pub(super) fn set_duplicate<'s>(tag: TypeTag, members: &'s [Cow<'_, str>]) -> Option<&'s str> {
    if members.len() < 2 || surely_distinct(tag, members) {
        return None;
    }
    match tag {
        TypeTag::Ns => {
            let mut nums: Vec<(number::Decimal, usize)> = members
                .iter()
                .enumerate()
                .map(|(i, m)| (number::check(m).expect("validated"), i))
                .collect();
            nums.sort_by_key(|a| a.0);
            nums.windows(2)
                .find(|w| w[0].0 == w[1].0)
                .map(|w| members[w[1].1].as_ref())
        }
        TypeTag::Bs => {
            let mut bytes: Vec<(Vec<u8>, usize)> = members
                .iter()
                .enumerate()
                .map(|(i, m)| (binary::decode(m).expect("validated"), i))
                .collect();
            bytes.sort();
            bytes
                .windows(2)
                .find(|w| w[0].0 == w[1].0)
                .map(|w| members[w[1].1].as_ref())
        }
        _ => first_duplicate(members.iter().map(|m| m.as_ref())),
    }
}

/// Whether number or binary set members are proven distinct without allocating, as they are
/// in nearly every set; `false` means "maybe not", and the full check (which also picks the
/// member to name) decides.
fn surely_distinct(tag: TypeTag, members: &[Cow<'_, str>]) -> bool {
    const SMALL: usize = 16;
    match tag {
        TypeTag::Ns if members.len() <= SMALL => {
            // Plain numbers compare by their key; if one is not plain, all go by `Decimal`.
            let mut keys = [(false, "", ""); SMALL];
            let mut all_plain = true;
            for (i, m) in members.iter().enumerate() {
                let Some(key) = number::plain_key(m) else {
                    all_plain = false;
                    break;
                };
                if keys[..i].contains(&key) {
                    return false;
                }
                keys[i] = key;
            }
            if all_plain {
                return true;
            }
            let mut seen = [number::Decimal::ZERO; SMALL];
            for (i, m) in members.iter().enumerate() {
                let d = number::check(m).expect("validated");
                if seen[..i].contains(&d) {
                    return false;
                }
                seen[i] = d;
            }
            true
        }
        // Different base64 texts are different bytes unless unused trailing bits differ.
        TypeTag::Bs => {
            members.iter().all(|m| binary::trailing_bits_clear(m))
                && first_duplicate(members.iter().map(|m| m.as_ref())).is_none()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Reason;
    use crate::parse::{parse_item, Shape};

    #[test]
    fn duplicates_are_found_by_fingerprint_or_by_sorting() {
        for n in [2, 3, 16, 32, 33, 100] {
            let names: Vec<String> = (0..n).map(|i| format!("attribute_name_{i:03}")).collect();
            assert_eq!(first_duplicate(names.iter().map(String::as_str)), None);
            for (a, b) in [(0, n - 1), (n / 2 - 1, n / 2), (n - 2, n - 1)] {
                let mut dup = names.clone();
                dup[b] = dup[a].clone();
                assert_eq!(
                    first_duplicate(dup.iter().map(String::as_str)),
                    Some(dup[a].as_str()),
                    "{n} {a} {b}"
                );
            }
        }
        // Same length, first and last four bytes, different middle: same fingerprint.
        let similar = [
            "abcd_1_wxyz",
            "abcd_2_wxyz",
            "abcd_3_wxyz",
            "",
            "a",
            "ab",
            "ba",
        ];
        assert_eq!(first_duplicate(similar.iter().copied()), None);
        assert_eq!(
            first_duplicate(["ab", "x", "ab"].iter().copied()),
            Some("ab")
        );
    }

    #[test]
    fn set_duplicates_by_value() {
        let dup = |line: &str| {
            parse_item(line.as_bytes(), Shape::AttributeMap)
                .map(|_| ())
                .map_err(|e| e.reason)
        };
        assert_eq!(Ok(()), dup(r#"{"a":{"NS":["1","2","3"]}}"#));
        assert_eq!(
            dup(r#"{"a":{"NS":["1","2","1.0"]}}"#),
            Err(Reason::DuplicateSetMember)
        );
        assert_eq!(
            dup(r#"{"a":{"NS":["-0","0"]}}"#),
            Err(Reason::DuplicateSetMember)
        );
        assert_eq!(Ok(()), dup(r#"{"a":{"BS":["AA==","AQ==","AAE="]}}"#));
        assert_eq!(
            dup(r#"{"a":{"BS":["AA==","AQ==","AA=="]}}"#),
            Err(Reason::DuplicateSetMember)
        );
        // Different text, same bytes: the trailing bits of "AB==" are not part of the value.
        assert_eq!(
            dup(r#"{"a":{"BS":["AA==","AB=="]}}"#),
            Err(Reason::DuplicateSetMember)
        );
        let many: Vec<String> = (0..20).map(|i| format!("\"{i}\"")).collect();
        assert_eq!(
            Ok(()),
            dup(&format!(r#"{{"a":{{"NS":[{}]}}}}"#, many.join(",")))
        );
        assert_eq!(
            dup(&format!(r#"{{"a":{{"NS":[{},"19.00"]}}}}"#, many.join(","))),
            Err(Reason::DuplicateSetMember)
        );
    }
}
