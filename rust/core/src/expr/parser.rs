//! The condition AST and its recursive-descent parser, with every check DynamoDB makes when it
//! receives the expression (not when it evaluates it) done here, so a bad `where` fails before
//! the first item is read.
//!
//! Grammar and precedence are those of the AWS Developer Guide, "Condition and filter
//! expressions, operators, and functions": comparators, IN, BETWEEN and functions bind
//! tightest (they are the leaves here), then parentheses, then NOT, then AND, then OR.

use crate::number::Decimal;
use crate::value::{TypeTag, Value};

use super::eval::{order, Got};
use super::lexer::{tokenize, Tok, Token};
use super::path::{DocPath, PathCursor};
use super::ExprError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A `:value` with its number form worked out once, so evaluation never re-parses it.
#[derive(Debug, Clone)]
pub(crate) struct Literal {
    pub value: Value<'static>,
    pub number: Option<Decimal>,
}

#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Path(DocPath),
    Literal(Box<Literal>),
    /// `size(path)`: a number computed from the item.
    Size(DocPath),
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Compare(CmpOp, Operand, Operand),
    Between(Operand, Operand, Operand),
    In(Operand, Vec<Operand>),
    Exists(DocPath),
    NotExists(DocPath),
    AttributeType(Operand, TypeTag),
    BeginsWith(Operand, Operand),
    Contains(Operand, Operand),
}

/// "The list can contain up to 100 values" (AWS Developer Guide, IN operator).
const MAX_IN_VALUES: usize = 100;

/// Function names are case-sensitive in DynamoDB; these are all that ConditionExpression
/// accepts (update-only functions such as `if_not_exists` are refused there too).
const CONDITION_FUNCTIONS: [&str; 5] = [
    "attribute_exists",
    "attribute_not_exists",
    "attribute_type",
    "begins_with",
    "contains",
];

type Names<'n> = &'n [(String, String)];
type Values<'n> = &'n [(String, Value<'static>)];

pub(crate) fn parse(text: &str, names: Names<'_>, values: Values<'_>) -> Result<Node, ExprError> {
    let tokens = tokenize(text)?;
    if tokens.len() == 1 {
        return Err(ExprError::at(text, 0, "the condition is empty"));
    }
    let mut p = Parser {
        cur: PathCursor {
            text,
            tokens: &tokens,
            pos: 0,
        },
        names,
        values,
    };
    let node = p.or()?;
    p.expect_end(Tok::Eof)?;
    Ok(node)
}

struct Parser<'s, 't, 'n> {
    cur: PathCursor<'s, 't>,
    names: Names<'n>,
    values: Values<'n>,
}

impl<'t> Parser<'_, 't, '_> {
    fn peek(&self) -> Token<'t> {
        self.cur.peek()
    }

    fn peek2(&self) -> Tok<'t> {
        self.cur
            .tokens
            .get(self.cur.pos + 1)
            .map_or(Tok::Eof, |t| t.tok)
    }

    fn bump(&mut self) -> Token<'t> {
        let t = self.peek();
        self.cur.pos += 1;
        t
    }

    #[cold]
    fn err(&self, at: usize, message: impl Into<String>) -> ExprError {
        ExprError::at(self.cur.text, at, message)
    }

    fn expect(&mut self, tok: Tok<'_>, what: &str) -> Result<(), ExprError> {
        let t = self.peek();
        if t.tok != tok {
            return Err(self.err(
                t.start,
                format!("expected {what}, found {}", t.tok.describe()),
            ));
        }
        self.cur.pos += 1;
        Ok(())
    }

    /// After a complete condition only AND, OR or the closing token may follow.
    fn expect_end(&mut self, end: Tok<'_>) -> Result<(), ExprError> {
        let what = if end == Tok::Eof {
            "AND, OR or end of expression"
        } else {
            "AND, OR or ')'"
        };
        self.expect(end, what)
    }

    fn keyword(&mut self, kw: &str) -> bool {
        let hit = self.peek().tok.is_keyword(kw);
        if hit {
            self.cur.pos += 1;
        }
        hit
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        let mut parts = vec![self.and()?];
        while self.keyword("or") {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Node::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        let mut parts = vec![self.not()?];
        while self.keyword("and") {
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Node::And(parts)
        })
    }

    fn not(&mut self) -> Result<Node, ExprError> {
        if self.keyword("not") {
            return Ok(Node::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        let t = self.peek();
        match t.tok {
            Tok::LParen => {
                self.bump();
                let inner = self.or()?;
                self.expect_end(Tok::RParen)?;
                Ok(inner)
            }
            Tok::Name(f) if self.peek2() == Tok::LParen && f != "size" => self.function(f),
            _ => {
                let left = self.operand()?;
                self.comparison(left)
            }
        }
    }

    /// `operand comparator operand`, `operand BETWEEN operand AND operand` or
    /// `operand IN (operand, ...)`.
    fn comparison(&mut self, left: (Operand, usize)) -> Result<Node, ExprError> {
        let t = self.bump();
        let op = match t.tok {
            Tok::Eq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            _ if t.tok.is_keyword("between") => {
                let low = self.operand()?;
                if !self.keyword("and") {
                    let n = self.peek();
                    let found = n.tok.describe();
                    return Err(
                        self.err(n.start, format!("expected AND in BETWEEN, found {found}"))
                    );
                }
                let high = self.operand()?;
                for o in [&left, &low, &high] {
                    self.check_ordered(o, "BETWEEN")?;
                }
                self.check_bounds(&low, &high)?;
                return Ok(Node::Between(left.0, low.0, high.0));
            }
            _ if t.tok.is_keyword("in") => {
                self.expect(Tok::LParen, "'(' after IN")?;
                let mut list = vec![self.operand()?.0];
                while self.peek().tok == Tok::Comma {
                    self.bump();
                    list.push(self.operand()?.0);
                }
                if list.len() > MAX_IN_VALUES {
                    return Err(self.err(t.start, "IN takes at most 100 values"));
                }
                self.expect(Tok::RParen, "',' or ')' in the IN list")?;
                return Ok(Node::In(left.0, list));
            }
            other => {
                let found = other.describe();
                return Err(self.err(
                    t.start,
                    format!("expected a comparator (= <> < <= > >=), BETWEEN or IN, found {found}"),
                ));
            }
        };
        let right = self.operand()?;
        if op != CmpOp::Eq && op != CmpOp::Ne {
            self.check_ordered(&left, "<, <=, > and >=")?;
            self.check_ordered(&right, "<, <=, > and >=")?;
        }
        Ok(Node::Compare(op, left.0, right.0))
    }

    /// A path, a `:value` or `size(path)`, with the offset it starts at.
    fn operand(&mut self) -> Result<(Operand, usize), ExprError> {
        let t = self.peek();
        let op = match t.tok {
            Tok::ValueRef(r) => {
                self.bump();
                Operand::Literal(Box::new(self.literal(t.start, r)?))
            }
            Tok::Name("size") if self.peek2() == Tok::LParen => {
                self.cur.pos += 2;
                let path = self.path_argument("size")?;
                if self.peek().tok == Tok::Comma {
                    return Err(self.err(t.start, "size takes exactly one argument"));
                }
                self.expect(Tok::RParen, "')' after the size argument")?;
                Operand::Size(path)
            }
            Tok::Name(f) if self.peek2() == Tok::LParen => {
                let msg = if CONDITION_FUNCTIONS.contains(&f) {
                    format!("{f} is a condition and cannot be used as an operand")
                } else {
                    unknown_function(f)
                };
                return Err(self.err(t.start, msg));
            }
            Tok::Name(_) | Tok::NameRef(_) => Operand::Path(self.cur.path(self.names, false)?),
            other => {
                let found = other.describe();
                return Err(self.err(
                    t.start,
                    format!("expected an attribute path, :value or size(path), found {found}"),
                ));
            }
        };
        Ok((op, t.start))
    }

    fn path_argument(&mut self, function: &str) -> Result<DocPath, ExprError> {
        let t = self.peek();
        match t.tok {
            Tok::Name(_) | Tok::NameRef(_) if self.peek2() != Tok::LParen => {
                self.cur.path(self.names, false)
            }
            _ => Err(self.err(
                t.start,
                format!("the argument of {function} must be an attribute path"),
            )),
        }
    }

    fn literal(&self, at: usize, placeholder: &str) -> Result<Literal, ExprError> {
        let value = self
            .values
            .iter()
            .find(|(k, _)| k == placeholder)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                self.err(
                    at,
                    format!("expression attribute value {placeholder} is not defined"),
                )
            })?;
        let number = match &value {
            Value::N(t) => Decimal::parse(t).ok(),
            _ => None,
        };
        Ok(Literal { value, number })
    }

    /// `attribute_exists(p)`, `attribute_not_exists(p)`, `attribute_type(p, :t)`,
    /// `begins_with(a, b)`, `contains(a, b)`.
    fn function(&mut self, name: &str) -> Result<Node, ExprError> {
        let start = self.bump().start;
        if !CONDITION_FUNCTIONS.contains(&name) {
            return Err(self.err(start, unknown_function(name)));
        }
        self.bump(); // '('
        if self.peek().tok == Tok::RParen {
            let n = if name.starts_with("attribute_") && name != "attribute_type" {
                "1 argument"
            } else {
                "2 arguments"
            };
            return Err(self.err(start, format!("{name} takes exactly {n}")));
        }
        let node = match name {
            "attribute_exists" | "attribute_not_exists" => {
                let path = self.path_argument(name)?;
                self.args_sep(name, 1, start, true)?;
                if name == "attribute_exists" {
                    Node::Exists(path)
                } else {
                    Node::NotExists(path)
                }
            }
            "attribute_type" => {
                let subject = self.value_argument(name)?;
                self.args_sep(name, 2, start, false)?;
                let t = self.peek();
                let tag = match t.tok {
                    Tok::ValueRef(r) => {
                        self.bump();
                        type_argument(self.literal(t.start, r)?.value)
                            .map_err(|m| self.err(t.start, m))?
                    }
                    _ => {
                        return Err(self.err(
                            t.start,
                            "the type argument of attribute_type must be a :value",
                        ))
                    }
                };
                self.args_sep(name, 2, start, true)?;
                Node::AttributeType(subject.0, tag)
            }
            _ => {
                let a = self.value_argument(name)?;
                self.args_sep(name, 2, start, false)?;
                let b = self.value_argument(name)?;
                self.args_sep(name, 2, start, true)?;
                if name == "begins_with" {
                    self.check_begins_with(&a)?;
                    self.check_begins_with(&b)?;
                    Node::BeginsWith(a.0, b.0)
                } else {
                    Node::Contains(a.0, b.0)
                }
            }
        };
        let t = self.peek();
        if matches!(
            t.tok,
            Tok::Eq | Tok::Ne | Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge
        ) || t.tok.is_keyword("between")
            || t.tok.is_keyword("in")
        {
            return Err(self.err(
                t.start,
                format!("{name} is a condition; only size(path) can be compared"),
            ));
        }
        Ok(node)
    }

    /// A path or a `:value` (DynamoDB accepts either for the first argument of
    /// attribute_type, begins_with and contains, despite the guide showing a path).
    fn value_argument(&mut self, function: &str) -> Result<(Operand, usize), ExprError> {
        let o = self.operand()?;
        if let Operand::Size(_) = o.0 {
            return Err(self.err(
                o.1,
                format!("the arguments of {function} must be attribute paths or :values"),
            ));
        }
        Ok(o)
    }

    /// Expects the `)` after the last argument (`last` true) or the `,` before the next one.
    fn args_sep(
        &mut self,
        function: &str,
        n: usize,
        start: usize,
        last: bool,
    ) -> Result<(), ExprError> {
        let t = self.peek();
        let (want, other) = if last {
            (Tok::RParen, Tok::Comma)
        } else {
            (Tok::Comma, Tok::RParen)
        };
        if t.tok == want {
            self.bump();
            return Ok(());
        }
        if t.tok == other {
            let plural = if n == 1 { "" } else { "s" };
            return Err(self.err(
                start,
                format!("{function} takes exactly {n} argument{plural}"),
            ));
        }
        let found = t.tok.describe();
        let want = want.describe();
        Err(self.err(
            t.start,
            format!("expected {want} in {function}(...), found {found}"),
        ))
    }

    /// DynamoDB refuses, when it receives the expression, a `:value` of a type that cannot be
    /// ordered (only N, S and B can); an item attribute of such a type just compares false.
    fn check_ordered(&self, o: &(Operand, usize), operator: &str) -> Result<(), ExprError> {
        if let Operand::Literal(l) = &o.0 {
            let tag = l.value.type_tag();
            if !matches!(tag, TypeTag::N | TypeTag::S | TypeTag::B) {
                return Err(self.err(
                    o.1,
                    format!(
                        "{operator} compare only N, S or B values; this value is {}",
                        tag.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Two `:value` bounds of BETWEEN must share a type and be in order (DynamoDB:
    /// "BETWEEN operator requires lower_bound <= upper_bound").
    fn check_bounds(
        &self,
        low: &(Operand, usize),
        high: &(Operand, usize),
    ) -> Result<(), ExprError> {
        if let (Operand::Literal(lo), Operand::Literal(hi)) = (&low.0, &high.0) {
            let (a, b) = (lit_got(lo), lit_got(hi));
            match order(&a, &b) {
                None => {
                    return Err(self.err(
                        high.1,
                        format!(
                            "BETWEEN bounds must have the same type, not {} and {}",
                            lo.value.type_tag().as_str(),
                            hi.value.type_tag().as_str()
                        ),
                    ))
                }
                Some(std::cmp::Ordering::Greater) => {
                    return Err(self.err(low.1, "BETWEEN lower bound is greater than upper bound"))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// begins_with takes only S or B `:value`s (DynamoDB refuses other types up front).
    fn check_begins_with(&self, o: &(Operand, usize)) -> Result<(), ExprError> {
        if let Operand::Literal(l) = &o.0 {
            let tag = l.value.type_tag();
            if !matches!(tag, TypeTag::S | TypeTag::B) {
                return Err(self.err(
                    o.1,
                    format!(
                        "begins_with takes S or B values; this value is {}",
                        tag.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn lit_got(l: &Literal) -> Got<'_, 'static> {
    Got::Val(&l.value, l.number.as_ref())
}

#[cold]
fn unknown_function(f: &str) -> String {
    let known = CONDITION_FUNCTIONS.iter().chain(&["size"]);
    match known.clone().find(|k| k.eq_ignore_ascii_case(f)) {
        Some(k) => format!("unknown function {f}; function names are case-sensitive: {k}"),
        None => {
            let list: Vec<&str> = known.copied().collect();
            format!(
                "unknown function {f}; conditions may use {}",
                list.join(", ")
            )
        }
    }
}

/// The `:t` of attribute_type must be an S value naming one of the ten types.
fn type_argument(v: Value<'static>) -> Result<TypeTag, String> {
    match v {
        Value::S(s) => TypeTag::from_bytes(s.as_bytes()).ok_or_else(|| {
            format!(
                "attribute_type: {s:?} is not a type; use S, SS, N, NS, B, BS, BOOL, NULL, L or M"
            )
        }),
        other => Err(format!(
            "attribute_type: the type must be an S value, not {}",
            other.type_tag().as_str()
        )),
    }
}
