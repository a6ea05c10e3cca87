//! Tokens of DynamoDB's expression language: names, `#name` and `:value` references, list
//! indexes, punctuation and comparators, each with the byte offset it starts at.
//!
//! Identifiers follow the grammar DynamoDB-compatible implementations use (ScyllaDB Alternator's
//! `expressions.g`): a bare name is a letter or `_` followed by letters, digits and `_`; a
//! reference is `#` or `:` followed by one or more of those. Anything else in an attribute name
//! (dots, dashes, spaces, non-ASCII) needs an `ExpressionAttributeNames` placeholder, as the AWS
//! Developer Guide ("Expression attribute names") requires. Keywords (AND, OR, NOT, BETWEEN, IN)
//! are plain names here and recognised, case-insensitively, by the parser: a standalone document
//! path may use them as attribute names.

use super::ExprError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok<'t> {
    /// A bare identifier: attribute name, keyword or function name.
    Name(&'t str),
    /// `#name`, including the `#`.
    NameRef(&'t str),
    /// `:value`, including the `:`.
    ValueRef(&'t str),
    /// Decimal digits, only meaningful inside `[` `]`.
    Int(&'t str),
    Dot,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Comma,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token<'t> {
    pub tok: Tok<'t>,
    /// Byte offset of the token's first character in the expression text.
    pub start: usize,
}

impl Tok<'_> {
    /// Whether this is a bare name equal to `keyword`, ignoring ASCII case (DynamoDB keywords
    /// are case-insensitive: `between`, `BETWEEN` and `BeTwEeN` are the same).
    pub fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self, Tok::Name(n) if n.eq_ignore_ascii_case(keyword))
    }

    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Name(s) | Tok::NameRef(s) | Tok::ValueRef(s) | Tok::Int(s) => format!("'{s}'"),
            Tok::Dot => "'.'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::Eq => "'='".into(),
            Tok::Ne => "'<>'".into(),
            Tok::Lt => "'<'".into(),
            Tok::Le => "'<='".into(),
            Tok::Gt => "'>'".into(),
            Tok::Ge => "'>='".into(),
            Tok::Eof => "end of expression".into(),
        }
    }
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Splits `text` into tokens, ending with `Tok::Eof` at `text.len()`.
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token<'_>>, ExprError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let word_end = |from: usize| from + b[from..].iter().take_while(|&&c| is_word(c)).count();
        let tok = match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                i = word_end(i);
                Tok::Name(&text[start..i])
            }
            b'0'..=b'9' => {
                i += b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                Tok::Int(&text[start..i])
            }
            b'#' | b':' => {
                i = word_end(i + 1);
                if i == start + 1 {
                    let what = if c == b'#' { "name" } else { "value" };
                    return Err(ExprError::at(
                        text,
                        start,
                        format!(
                            "'{}' must be followed by a {what} placeholder of letters, digits or '_'",
                            c as char
                        ),
                    ));
                }
                let s = &text[start..i];
                if c == b'#' {
                    Tok::NameRef(s)
                } else {
                    Tok::ValueRef(s)
                }
            }
            _ => {
                let two = b.get(i + 1).copied();
                let (tok, len) = match (c, two) {
                    (b'<', Some(b'>')) => (Tok::Ne, 2),
                    (b'<', Some(b'=')) => (Tok::Le, 2),
                    (b'>', Some(b'=')) => (Tok::Ge, 2),
                    (b'<', _) => (Tok::Lt, 1),
                    (b'>', _) => (Tok::Gt, 1),
                    (b'=', _) => (Tok::Eq, 1),
                    (b'.', _) => (Tok::Dot, 1),
                    (b'[', _) => (Tok::LBracket, 1),
                    (b']', _) => (Tok::RBracket, 1),
                    (b'(', _) => (Tok::LParen, 1),
                    (b')', _) => (Tok::RParen, 1),
                    (b',', _) => (Tok::Comma, 1),
                    _ => {
                        let ch = text[i..].chars().next().unwrap_or('?');
                        return Err(ExprError::at(
                            text,
                            start,
                            format!(
                                "unexpected character {ch:?}; attribute names with characters \
                                 other than letters, digits and '_' need a #name placeholder"
                            ),
                        ));
                    }
                };
                i += len;
                tok
            }
        };
        out.push(Token { tok, start });
    }
    out.push(Token {
        tok: Tok::Eof,
        start: b.len(),
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok<'_>> {
        tokenize(text).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn splits_every_kind_of_token() {
        use Tok::*;
        assert_eq!(
            toks("a.b[10] <> :v1 AND #n_2<=size(x),>=>(<)="),
            vec![
                Name("a"),
                Dot,
                Name("b"),
                LBracket,
                Int("10"),
                RBracket,
                Ne,
                ValueRef(":v1"),
                Name("AND"),
                NameRef("#n_2"),
                Le,
                Name("size"),
                LParen,
                Name("x"),
                RParen,
                Comma,
                Ge,
                Gt,
                LParen,
                Lt,
                RParen,
                Eq,
                Eof
            ]
        );
    }

    #[test]
    fn records_byte_offsets() {
        let t = tokenize("  ab\t= :x").unwrap();
        let starts: Vec<usize> = t.iter().map(|t| t.start).collect();
        assert_eq!(starts, vec![2, 5, 7, 9]);
    }

    #[test]
    fn keywords_are_case_insensitive_names() {
        let t = toks("bEtWeEn");
        assert!(t[0].is_keyword("between"));
        assert!(!t[0].is_keyword("in"));
    }

    #[test]
    fn refuses_stray_characters_with_a_column() {
        let e = tokenize("a = :v AND b-c = :w").unwrap_err();
        assert_eq!(e.column, 13);
        let e = tokenize("é = :v").unwrap_err();
        assert_eq!(e.column, 1);
        let e = tokenize("ab = # ").unwrap_err();
        assert_eq!(e.column, 6);
        assert!(e.message.contains("placeholder"), "{}", e.message);
        let e = tokenize("x = :").unwrap_err();
        assert_eq!(e.column, 5);
    }
}
