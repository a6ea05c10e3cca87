//! DynamoDB numbers: validation, numeric comparison and a canonical text, all on the decimal
//! text itself (never through a float, which would lose digits past the 17th).
//!
//! Rules (DynamoDB Developer Guide, "Naming rules and data types" and "Constraints"): at most 38
//! significant digits after leading and trailing zeros are trimmed; positive magnitudes from
//! 1E-130 to 9.9999999999999999999999999999999999999E+125, negatives the mirror image; zero is
//! allowed. NaN and Infinity are not numbers to DynamoDB (boto3's Decimal context accepts them).

use std::cmp::Ordering;

/// Most significant digits DynamoDB stores.
pub const MAX_DIGITS: usize = 38;
/// Smallest and largest decimal exponent of the leading digit (scientific notation).
pub const MIN_EXPONENT: i64 = -130;
pub const MAX_EXPONENT: i64 = 125;

/// Why a number text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberError {
    Syntax,
    TooManyDigits,
    OutOfRange,
}

impl NumberError {
    pub fn message(self) -> &'static str {
        match self {
            NumberError::Syntax => "not a decimal number (NaN and Infinity are not allowed)",
            NumberError::TooManyDigits => "more than 38 significant digits",
            NumberError::OutOfRange => {
                "magnitude outside 1E-130 .. 9.9999999999999999999999999999999999999E+125"
            }
        }
    }
}

/// A validated number as sign, significant digits (no leading or trailing zeros) and the
/// exponent of the leading digit. Zero has no digits. Fixed size: no allocation per number.
#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    negative: bool,
    digits: [u8; MAX_DIGITS],
    len: u8,
    /// Exponent of the first significant digit: 1.5 → 0, 150 → 2, 0.015 → -2.
    exponent: i64,
}

impl Decimal {
    pub const ZERO: Decimal = Decimal {
        negative: false,
        digits: [0; MAX_DIGITS],
        len: 0,
        exponent: 0,
    };

    /// Parses and validates DynamoDB number text: `[+-]digits[.digits][(e|E)[+-]digits]`,
    /// where either side of the point may be empty but not both.
    pub fn parse(text: &str) -> Result<Decimal, NumberError> {
        let b = text.as_bytes();
        let mut i = 0;
        let mut negative = false;
        if let Some(&c) = b.first() {
            if c == b'-' || c == b'+' {
                negative = c == b'-';
                i = 1;
            }
        }
        let mut digits = [0u8; MAX_DIGITS];
        let mut len = 0usize;
        let mut seen_digit = false;
        let mut seen_point = false;
        // Digits before the point that were significant or followed a significant digit.
        let mut int_places: i64 = 0;
        // Zeros after the point before the first significant digit.
        let mut lead_frac_zeros: i64 = 0;
        let mut pending_zeros = 0usize; // trailing zeros not yet known to be significant
        let mut started = false;
        while i < b.len() {
            let c = b[i];
            match c {
                b'0'..=b'9' => {
                    seen_digit = true;
                    if c == b'0' && !started {
                        if seen_point {
                            lead_frac_zeros += 1;
                        }
                    } else if c == b'0' {
                        pending_zeros += 1;
                        if !seen_point {
                            int_places += 1;
                        }
                    } else {
                        started = true;
                        if len + pending_zeros + 1 > MAX_DIGITS {
                            return Err(NumberError::TooManyDigits);
                        }
                        for _ in 0..pending_zeros {
                            digits[len] = 0;
                            len += 1;
                        }
                        pending_zeros = 0;
                        digits[len] = c - b'0';
                        len += 1;
                        if !seen_point {
                            int_places += 1;
                        }
                    }
                }
                b'.' if !seen_point => seen_point = true,
                b'e' | b'E' => break,
                _ => return Err(NumberError::Syntax),
            }
            i += 1;
        }
        if !seen_digit {
            return Err(NumberError::Syntax);
        }
        let mut exp: i64 = 0;
        if i < b.len() {
            // Exponent part.
            i += 1;
            let mut exp_negative = false;
            if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
                exp_negative = b[i] == b'-';
                i += 1;
            }
            if i == b.len() {
                return Err(NumberError::Syntax);
            }
            while i < b.len() {
                let c = b[i];
                if !c.is_ascii_digit() {
                    return Err(NumberError::Syntax);
                }
                // Saturate: anything past 10^15 is out of range either way.
                exp = (exp * 10 + i64::from(c - b'0')).min(1_000_000_000_000_000);
                i += 1;
            }
            if exp_negative {
                exp = -exp;
            }
        }
        if len == 0 {
            return Ok(Decimal {
                negative: false,
                digits,
                len: 0,
                exponent: 0,
            });
        }
        let exponent = if int_places > 0 {
            int_places - 1
        } else {
            -lead_frac_zeros - 1
        } + exp;
        if !(MIN_EXPONENT..=MAX_EXPONENT).contains(&exponent) {
            return Err(NumberError::OutOfRange);
        }
        Ok(Decimal {
            negative,
            digits,
            len: len as u8,
            exponent,
        })
    }

    pub fn is_zero(&self) -> bool {
        self.len == 0
    }

    /// Significant digits, without leading or trailing zeros.
    pub fn significant_digits(&self) -> &[u8] {
        &self.digits[..self.len as usize]
    }

    /// Storage size as DynamoDB counts it: one byte per two significant digits, plus one.
    pub fn stored_size(&self) -> usize {
        (self.len as usize).div_ceil(2) + 1
    }

    /// Canonical text: equal numbers give equal text ("1.50", "1.5", "15E-1" → "1.5").
    /// Plain notation for exponents in -20..=40, scientific beyond, like `Decimal.normalize`
    /// would read but stable across languages.
    pub fn canonical(&self) -> String {
        if self.is_zero() {
            return "0".to_owned();
        }
        let mut out = String::with_capacity(self.len as usize + 8);
        if self.negative {
            out.push('-');
        }
        let d = self.significant_digits();
        let e = self.exponent;
        let n = d.len() as i64;
        if (-20..=40).contains(&e) {
            if e < 0 {
                out.push_str("0.");
                for _ in 0..(-e - 1) {
                    out.push('0');
                }
                d.iter().for_each(|&x| out.push((b'0' + x) as char));
            } else if e + 1 >= n {
                d.iter().for_each(|&x| out.push((b'0' + x) as char));
                for _ in 0..(e + 1 - n) {
                    out.push('0');
                }
            } else {
                for (k, &x) in d.iter().enumerate() {
                    if k as i64 == e + 1 {
                        out.push('.');
                    }
                    out.push((b'0' + x) as char);
                }
            }
        } else {
            out.push((b'0' + d[0]) as char);
            if n > 1 {
                out.push('.');
                d[1..].iter().for_each(|&x| out.push((b'0' + x) as char));
            }
            out.push('E');
            out.push_str(&e.to_string());
        }
        out
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    /// Numeric order.
    fn cmp(&self, other: &Self) -> Ordering {
        let sign = |d: &Decimal| -> i8 {
            if d.is_zero() {
                0
            } else if d.negative {
                -1
            } else {
                1
            }
        };
        let (sa, sb) = (sign(self), sign(other));
        if sa != sb || sa == 0 {
            return sa.cmp(&sb);
        }
        let magnitude = self
            .exponent
            .cmp(&other.exponent)
            .then_with(|| self.significant_digits().cmp(other.significant_digits()));
        if sa < 0 {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

/// Validates number text; `Ok` carries the parsed form.
pub fn check(text: &str) -> Result<Decimal, NumberError> {
    Decimal::parse(text)
}

/// `check` without the `Decimal`, for the parser, which sees every number of every item: the
/// plain numbers that `plain_key` reads need no more checking.
pub fn validate(text: &str) -> Result<(), NumberError> {
    if plain_key(text).is_some() {
        return Ok(());
    }
    Decimal::parse(text).map(|_| ())
}

/// The value of a plain decimal, as text parts that are equal exactly when the values are:
/// whether it is negative (never for zero), the integer digits without leading zeros and the
/// fraction digits without trailing zeros. `None` for any other number text.
///
/// Plain means a sign, digits and at most one point, 38 characters at most after the sign.
/// Most numbers are (`-12`, `153.88`) and they can break no rule but the syntax: at most 38
/// digits in all means at most 38 significant ones, and a magnitude (when not zero) between
/// 1E-38 and 1E38, well inside DynamoDB's range. So one scan both validates them and gives
/// set members something to compare without parsing them into `Decimal`s.
pub fn plain_key(text: &str) -> Option<(bool, &str, &str)> {
    let b = text.as_bytes();
    let start = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    if b.len() - start > MAX_DIGITS {
        return None;
    }
    // One pass: every byte a digit but for one point.
    let mut point = b.len();
    for (i, &c) in b.iter().enumerate().skip(start) {
        if !c.is_ascii_digit() {
            if c != b'.' || point != b.len() {
                return None;
            }
            point = i;
        }
    }
    let int = &text[start..point];
    let frac = text.get(point + 1..).unwrap_or("");
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let (int, frac) = (int.trim_start_matches('0'), frac.trim_end_matches('0'));
    let zero = int.is_empty() && frac.is_empty();
    Some((start == 1 && b[0] == b'-' && !zero, int, frac))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Decimal {
        Decimal::parse(s).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    #[test]
    fn accepts_what_dynamodb_stores() {
        for s in [
            "0",
            "-0",
            "1",
            "1.25",
            "-19",
            "1e15",
            "1E-130",
            "-1E-130",
            "0.0000001",
            ".5",
            "5.",
            "+3",
            "9.9999999999999999999999999999999999999E+125",
            "00012.3400",
            "100000000000000000000000000000000000000000000000000",
        ] {
            ok(s);
        }
    }

    #[test]
    fn refuses_what_dynamodb_refuses() {
        use NumberError::*;
        let cases = [
            ("NaN", Syntax),
            ("Infinity", Syntax),
            ("-Infinity", Syntax),
            ("", Syntax),
            ("-", Syntax),
            (".", Syntax),
            ("1e", Syntax),
            ("1.2.3", Syntax),
            (" 1", Syntax),
            ("0x10", Syntax),
            ("5e-324", OutOfRange),
            ("1E-131", OutOfRange),
            ("1E126", OutOfRange),
            ("123456789012345678901234567890123456789", TooManyDigits),
            ("1e99999999999999999999999", OutOfRange),
        ];
        for (s, want) in cases {
            assert_eq!(Decimal::parse(s).unwrap_err(), want, "{s}");
        }
    }

    #[test]
    fn compares_numerically() {
        assert_eq!(ok("1.50"), ok("1.5"));
        assert_eq!(ok("0"), ok("-0.000"));
        assert!(ok("-2") < ok("-1"));
        assert!(ok("-1") < ok("0"));
        assert!(ok("9") < ok("10"));
        assert!(ok("0.09") < ok("0.1"));
        assert!(ok("1E+2") == ok("100"));
        assert!(
            ok("12345678901234567890123456789012345678")
                > ok("12345678901234567890123456789012345677")
        );
    }

    #[test]
    fn canonical_text_is_stable() {
        for (a, want) in [
            ("1.50", "1.5"),
            ("15E-1", "1.5"),
            ("100", "100"),
            ("-0.0100", "-0.01"),
            ("0", "0"),
            ("-0", "0"),
            ("1E+100", "1E100"),
            ("1.5E-30", "1.5E-30"),
            ("123.456", "123.456"),
        ] {
            assert_eq!(ok(a).canonical(), want, "{a}");
        }
    }

    #[test]
    fn stored_size_counts_digit_pairs() {
        assert_eq!(ok("1").stored_size(), 2);
        assert_eq!(ok("12").stored_size(), 2);
        assert_eq!(ok("123").stored_size(), 3);
        assert_eq!(ok("0").stored_size(), 1);
    }

    #[test]
    fn validate_agrees_with_check() {
        let mut cases: Vec<String> = [
            "",
            "-",
            "+",
            ".",
            "-.",
            "+.",
            "..",
            "0",
            "-0",
            "+0",
            "00",
            "007",
            "1.",
            ".5",
            "-.5",
            "+.5",
            "1.2.3",
            "1..2",
            "1e5",
            "1E5",
            "1e",
            "--1",
            "+-1",
            " 1",
            "1 ",
            "0x10",
            "١",
            "NaN",
            "Infinity",
            "-Infinity",
            "1_000",
            "1,5",
            "153.88",
            "-46479",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Around the 38-digit boundary, with and without a sign, a point and zeros.
        for n in 36..=41 {
            for digit in ["0", "1", "9"] {
                let d = digit.repeat(n);
                cases.push(d.clone());
                cases.push(format!("-{d}"));
                cases.push(format!("+{d}"));
                cases.push(format!("{}.{}", &d[..n / 2], &d[n / 2..]));
                cases.push(format!(".{d}"));
                cases.push(format!("{d}."));
                cases.push(format!("0.{}1", "0".repeat(n)));
                cases.push(format!("1{}", "0".repeat(n)));
            }
        }
        for s in &cases {
            assert_eq!(validate(s), check(s).map(|_| ()), "{s:?}");
        }
        // Plain keys are equal exactly when the numbers are.
        let valid: Vec<&String> = cases.iter().filter(|s| plain_key(s).is_some()).collect();
        assert!(valid.len() > 50);
        for a in &valid {
            for b in &valid {
                assert_eq!(
                    plain_key(a) == plain_key(b),
                    check(a).unwrap() == check(b).unwrap(),
                    "{a:?} {b:?}"
                );
            }
        }
    }
}
