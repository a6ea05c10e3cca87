//! Binary values travel as base64 text. DynamoDB refuses text that is not valid standard
//! base64 (RFC 4648 alphabet with `=` padding to a multiple of four); botocore's decoder is
//! laxer (it skips stray characters), so validation here is our own and strict.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

/// Standard alphabet, padding required, trailing bits tolerated (as Java's and Python's
/// decoders tolerate them, so such text is accepted by DynamoDB's SDKs).
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

fn sextet(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

/// Checks base64 text without decoding it and returns the decoded length.
pub fn decoded_len(text: &str) -> Result<usize, &'static str> {
    let b = text.as_bytes();
    if !b.len().is_multiple_of(4) {
        return Err("base64 length is not a multiple of 4");
    }
    let pad = b.iter().rev().take(2).take_while(|&&c| c == b'=').count();
    let body = &b[..b.len() - pad];
    if !body.iter().all(|&c| sextet(c)) {
        return Err("not base64: character outside A-Z a-z 0-9 + / or misplaced '='");
    }
    Ok(b.len() / 4 * 3 - pad)
}

/// Decodes validated base64 text.
pub fn decode(text: &str) -> Result<Vec<u8>, &'static str> {
    decoded_len(text)?;
    ENGINE.decode(text).map_err(|_| "invalid base64")
}

/// Whether validated base64 text has its unused low bits (before `=` padding) at zero, as every
/// encoder writes them. Decoding ignores those bits, so `AB==` and `AA==` are the same byte;
/// among texts with clear trailing bits, though, different texts are different bytes.
pub fn trailing_bits_clear(text: &str) -> bool {
    let b = text.as_bytes();
    let pad = b.iter().rev().take(2).take_while(|&&c| c == b'=').count();
    let Some(&last) = b.len().checked_sub(pad + 1).map(|i| &b[i]) else {
        return true;
    };
    let value = match last {
        b'A'..=b'Z' => last - b'A',
        b'a'..=b'z' => last - b'a' + 26,
        b'0'..=b'9' => last - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    match pad {
        1 => value & 0b11 == 0,
        2 => value & 0b1111 == 0,
        _ => true,
    }
}

/// Encodes bytes as standard padded base64.
pub fn encode(bytes: &[u8]) -> String {
    ENGINE.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_like_dynamodb() {
        assert_eq!(decoded_len(""), Ok(0));
        assert_eq!(decoded_len("AA=="), Ok(1));
        assert_eq!(decoded_len("AAE="), Ok(2));
        assert_eq!(decoded_len("test"), Ok(3));
        for bad in ["A", "AA=", "A===", "AA=A", "AA\nA", "AA-_", "====", "AAA*"] {
            assert!(decoded_len(bad).is_err(), "{bad:?}");
        }
        assert_eq!(decode("AAEqQQ==").unwrap(), vec![0, 1, b'*', b'A']);
        assert_eq!(encode(&[0, 1, b'*', b'A']), "AAEqQQ==");
    }

    #[test]
    fn trailing_bits() {
        for bytes in [
            &b""[..],
            b"\0",
            b"\xff",
            b"ab",
            b"\xff\xff",
            b"abc",
            b"\x01\x02\x03\x04",
        ] {
            assert!(trailing_bits_clear(&encode(bytes)), "{bytes:?}");
        }
        for same_as_aa in ["AB==", "AP==", "AAF=", "AAH="] {
            assert!(decoded_len(same_as_aa).is_ok());
            assert!(!trailing_bits_clear(same_as_aa), "{same_as_aa}");
        }
        assert!(trailing_bits_clear("AQ=="));
        assert!(trailing_bits_clear("AAE="));
        assert!(trailing_bits_clear("//8="));
        assert!(!trailing_bits_clear("//9="));
    }
}
