//! The condition's recursive-descent parser (building the `ast`), with every check DynamoDB makes when it
//! receives the expression (not when it evaluates it) done here, so a bad `where` fails before
//! the first item is read.
//!
//! Grammar and precedence are those of the AWS Developer Guide, "Condition and filter
//! expressions, operators, and functions": comparators, IN, BETWEEN and functions bind
//! tightest (they are the leaves here), then parentheses, then NOT, then AND, then OR.
//! Which argument kinds and `:value` types are refused up front follows what the ScyllaDB
//! Alternator tests (`test/alternator/test_condition_expression.py`) record from DynamoDB.

use std::cmp::Ordering;

use crate::model::number::Decimal;
use crate::model::value::{TypeTag, Value};

use super::ast::{CmpOp, Literal, Node, Operand};
use super::eval::{order, Got};
use super::lexer::{tokenize, Tok, Token};
use super::path::{DocPath, PathCursor};
use super::ExprError;

/// An operand with the byte offset it starts at, for error columns.
type Arg = (Operand, usize);

/// "The list can contain up to 100 values" (AWS Developer Guide, IN operator).
const MAX_IN_VALUES: usize = 100;

/// The functions ConditionExpression accepts, with their argument counts. Names are
/// case-sensitive in DynamoDB; update-only functions such as `if_not_exists` are refused.
const FUNCTIONS: [(&str, usize); 6] = [
    ("attribute_exists", 1),
    ("attribute_not_exists", 1),
    ("attribute_type", 2),
    ("begins_with", 2),
    ("contains", 2),
    ("size", 1),
];

/// "The maximum length of any expression string is 4 KB" (AWS Developer Guide, "Constraints",
/// expression parameters).
const MAX_TEXT_BYTES: usize = 4096;

/// Parentheses and NOTs nested deeper than this are refused: the parser recurses once per
/// level, and a stack overflow aborts the process instead of unwinding like a panic. No real
/// condition comes close.
const MAX_NESTING: usize = 100;

const ORDERED: [TypeTag; 3] = [TypeTag::N, TypeTag::S, TypeTag::B];

pub(crate) fn parse(
    text: &str,
    names: &[(String, String)],
    values: &[(String, Value<'static>)],
) -> Result<Node, ExprError> {
    if text.len() > MAX_TEXT_BYTES {
        let msg = format!(
            "the condition is {} bytes; DynamoDB allows 4096",
            text.len()
        );
        return Err(ExprError::at(text, MAX_TEXT_BYTES, msg));
    }
    let tokens = tokenize(text)?;
    if tokens.len() == 1 {
        return Err(ExprError::at(text, 0, "the condition is empty"));
    }
    let cur = PathCursor {
        text,
        tokens: &tokens,
        pos: 0,
    };
    let mut p = Parser {
        cur,
        names,
        values,
        depth: 0,
    };
    let node = p.or()?;
    p.expect(Tok::Eof, "AND, OR or end of expression")?;
    Ok(node)
}

struct Parser<'s, 't, 'n> {
    cur: PathCursor<'s, 't>,
    names: &'n [(String, String)],
    values: &'n [(String, Value<'static>)],
    /// Current nesting of parentheses and NOT.
    depth: usize,
}

impl<'t> Parser<'_, 't, '_> {
    fn peek(&self) -> Token<'t> {
        self.cur.peek()
    }

    fn next_is_call(&self) -> bool {
        self.cur.tokens.get(self.cur.pos + 1).map(|t| t.tok) == Some(Tok::LParen)
    }

    fn bump(&mut self) -> Token<'t> {
        let t = self.peek();
        // Never step past Eof, so peeking stays in bounds.
        self.cur.pos = (self.cur.pos + 1).min(self.cur.tokens.len() - 1);
        t
    }

    #[cold]
    fn fail<T>(&self, at: usize, message: impl Into<String>) -> Result<T, ExprError> {
        Err(ExprError::at(self.cur.text, at, message))
    }

    #[cold]
    fn unexpected<T>(&self, what: &str) -> Result<T, ExprError> {
        let t = self.peek();
        self.fail(
            t.start,
            format!("expected {what}, found {}", t.tok.describe()),
        )
    }

    fn expect(&mut self, tok: Tok<'_>, what: &str) -> Result<(), ExprError> {
        if self.peek().tok != tok {
            return self.unexpected(what);
        }
        self.bump();
        Ok(())
    }

    fn keyword(&mut self, kw: &str) -> bool {
        let hit = self.peek().tok.is_keyword(kw);
        if hit {
            self.bump();
        }
        hit
    }

    /// `item (kw item)*`, flattened into one node when there is more than one item.
    fn chain(
        &mut self,
        kw: &str,
        item: fn(&mut Self) -> Result<Node, ExprError>,
        wrap: fn(Vec<Node>) -> Node,
    ) -> Result<Node, ExprError> {
        let mut parts = vec![item(self)?];
        while self.keyword(kw) {
            parts.push(item(self)?);
        }
        Ok(match parts.len() {
            1 => parts.swap_remove(0),
            _ => wrap(parts),
        })
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        self.chain("or", Self::and, Node::Or)
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        self.chain("and", Self::not, Node::And)
    }

    fn not(&mut self) -> Result<Node, ExprError> {
        if self.peek().tok.is_keyword("not") {
            let inner = self.nested(|p| {
                p.bump();
                p.not()
            })?;
            return Ok(Node::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn nested(&mut self, f: fn(&mut Self) -> Result<Node, ExprError>) -> Result<Node, ExprError> {
        if self.depth == MAX_NESTING {
            return self.fail(self.peek().start, "parentheses and NOT nest too deeply");
        }
        self.depth += 1;
        let node = f(self);
        self.depth -= 1;
        node
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        match self.peek().tok {
            Tok::LParen => self.nested(|p| {
                p.bump();
                let inner = p.or()?;
                p.expect(Tok::RParen, "AND, OR or ')'")?;
                Ok(inner)
            }),
            Tok::Name(f) if f != "size" && self.next_is_call() => self.function(f),
            _ => {
                let left = self.operand()?;
                self.comparison(left)
            }
        }
    }

    /// `operand comparator operand`, `operand BETWEEN operand AND operand` or
    /// `operand IN (operand, ...)`.
    fn comparison(&mut self, left: Arg) -> Result<Node, ExprError> {
        let t = self.peek();
        let op = match t.tok {
            Tok::Eq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            _ if self.keyword("between") => {
                let low = self.operand()?;
                if !self.keyword("and") {
                    return self.unexpected("AND in BETWEEN");
                }
                let high = self.operand()?;
                for o in [&left, &low, &high] {
                    self.check_literal(o, &ORDERED, "BETWEEN")?;
                }
                self.check_bounds(&low, &high)?;
                return Ok(Node::Between(left.0, low.0, high.0));
            }
            _ if self.keyword("in") => {
                let list = self.arguments()?;
                if list.is_empty() {
                    return self.fail(t.start, "IN needs at least one value");
                }
                if list.len() > MAX_IN_VALUES {
                    return self.fail(t.start, "IN takes at most 100 values");
                }
                return Ok(Node::In(left.0, list.into_iter().map(|a| a.0).collect()));
            }
            _ => return self.unexpected("a comparator (= <> < <= > >=), BETWEEN or IN"),
        };
        self.bump();
        let right = self.operand()?;
        if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
            self.check_literal(&left, &ORDERED, "<, <=, > and >=")?;
            self.check_literal(&right, &ORDERED, "<, <=, > and >=")?;
        }
        Ok(Node::Compare(op, left.0, right.0))
    }

    /// A path, a `:value` or `size(path)`.
    fn operand(&mut self) -> Result<Arg, ExprError> {
        let t = self.peek();
        let op = match t.tok {
            Tok::ValueRef(r) => {
                self.bump();
                Operand::Literal(Box::new(self.literal(t.start, r)?))
            }
            Tok::Name("size") if self.next_is_call() => {
                let mut args = self.call("size", t.start)?;
                Operand::Size(self.path_arg("size", args.swap_remove(0))?)
            }
            Tok::Name(f) if self.next_is_call() => {
                if FUNCTIONS.iter().any(|(k, _)| *k == f) {
                    return self.fail(
                        t.start,
                        format!("{f} is a condition and cannot be used as an operand"),
                    );
                }
                return self.fail(t.start, unknown_function(f));
            }
            Tok::Name(_) | Tok::NameRef(_) => Operand::Path(self.cur.path(self.names, false)?),
            _ => return self.unexpected("an attribute path, :value or size(path)"),
        };
        Ok((op, t.start))
    }

    fn literal(&self, at: usize, placeholder: &str) -> Result<Literal, ExprError> {
        let Some((_, value)) = self.values.iter().find(|(k, _)| k == placeholder) else {
            let msg = format!("expression attribute value {placeholder} is not defined");
            return self.fail(at, msg);
        };
        let number = match value {
            Value::N(t) => Decimal::parse(t).ok(),
            _ => None,
        };
        Ok(Literal {
            value: value.clone(),
            number,
        })
    }

    /// `(operand, ...)`, possibly empty.
    fn arguments(&mut self) -> Result<Vec<Arg>, ExprError> {
        self.expect(Tok::LParen, "'('")?;
        let mut args = Vec::new();
        if self.peek().tok != Tok::RParen {
            args.push(self.operand()?);
            while self.peek().tok == Tok::Comma {
                self.bump();
                args.push(self.operand()?);
            }
        }
        self.expect(Tok::RParen, "',' or ')'")?;
        Ok(args)
    }

    /// A call of a known function: its arguments, checked for count.
    fn call(&mut self, name: &str, start: usize) -> Result<Vec<Arg>, ExprError> {
        self.bump();
        let args = self.arguments()?;
        let n = FUNCTIONS
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |f| f.1);
        if args.len() != n {
            let plural = if n == 1 { "" } else { "s" };
            return self.fail(start, format!("{name} takes exactly {n} argument{plural}"));
        }
        Ok(args)
    }

    /// `attribute_exists(p)`, `attribute_not_exists(p)`, `attribute_type(a, :t)`,
    /// `begins_with(a, b)`, `contains(a, b)`.
    fn function(&mut self, name: &str) -> Result<Node, ExprError> {
        let start = self.peek().start;
        if !FUNCTIONS.iter().any(|(k, _)| *k == name) {
            return self.fail(start, unknown_function(name));
        }
        let mut args = self.call(name, start)?.into_iter();
        let mut arg = || args.next().expect("count checked");
        let node = match name {
            "attribute_exists" => Node::Exists(self.path_arg(name, arg())?),
            "attribute_not_exists" => Node::NotExists(self.path_arg(name, arg())?),
            "attribute_type" => {
                let subject = self.value_arg(name, arg())?;
                Node::AttributeType(subject, self.type_arg(arg())?)
            }
            "begins_with" => {
                let (a, b) = (arg(), arg());
                self.check_literal(&a, &[TypeTag::S, TypeTag::B], name)?;
                self.check_literal(&b, &[TypeTag::S, TypeTag::B], name)?;
                Node::BeginsWith(self.value_arg(name, a)?, self.value_arg(name, b)?)
            }
            _ => Node::Contains(self.value_arg(name, arg())?, self.value_arg(name, arg())?),
        };
        let t = self.peek().tok;
        let comparator = matches!(t, Tok::Eq | Tok::Ne | Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge);
        if comparator || t.is_keyword("between") || t.is_keyword("in") {
            let msg = format!("{name} is a condition; only size(path) can be compared");
            return self.fail(self.peek().start, msg);
        }
        Ok(node)
    }

    /// attribute_exists, attribute_not_exists and size take a document path only (DynamoDB:
    /// "Operator or function requires a document path").
    fn path_arg(&self, function: &str, arg: Arg) -> Result<DocPath, ExprError> {
        match arg.0 {
            Operand::Path(p) => Ok(p),
            _ => self.fail(
                arg.1,
                format!("the argument of {function} must be an attribute path"),
            ),
        }
    }

    /// A path or a `:value`: DynamoDB accepts either for attribute_type, begins_with and
    /// contains, though the guide shows a path first.
    fn value_arg(&self, function: &str, arg: Arg) -> Result<Operand, ExprError> {
        match arg.0 {
            Operand::Size(_) => self.fail(
                arg.1,
                format!("the arguments of {function} must be attribute paths or :values"),
            ),
            o => Ok(o),
        }
    }

    /// The `:t` of attribute_type: an S value naming one of the ten types.
    fn type_arg(&self, arg: Arg) -> Result<TypeTag, ExprError> {
        let Operand::Literal(l) = &arg.0 else {
            return self.fail(
                arg.1,
                "the type argument of attribute_type must be a :value",
            );
        };
        let Value::S(s) = &l.value else {
            let t = l.value.type_tag().as_str();
            return self.fail(
                arg.1,
                format!("attribute_type: the type must be S, not {t}"),
            );
        };
        match TypeTag::from_bytes(s.as_bytes()) {
            Some(tag) => Ok(tag),
            None => {
                let all: Vec<&str> = TypeTag::ALL.iter().map(|t| t.as_str()).collect();
                let msg = format!(
                    "attribute_type: {s:?} is not a type; use {}",
                    all.join(", ")
                );
                self.fail(arg.1, msg)
            }
        }
    }

    /// DynamoDB refuses up front a `:value` of a type the operator cannot take (only N, S and
    /// B order; begins_with takes S or B); an item attribute of such a type just yields false.
    fn check_literal(&self, arg: &Arg, allowed: &[TypeTag], what: &str) -> Result<(), ExprError> {
        if let Operand::Literal(l) = &arg.0 {
            let tag = l.value.type_tag();
            if !allowed.contains(&tag) {
                let allowed: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
                let msg = format!(
                    "only {} values can be used with {what}; this value is {}",
                    allowed.join(", ").replacen(", B", " or B", 1),
                    tag.as_str()
                );
                return self.fail(arg.1, msg);
            }
        }
        Ok(())
    }

    /// Two `:value` bounds of BETWEEN must share a type and be in order (DynamoDB:
    /// "BETWEEN operator requires lower_bound <= upper_bound").
    fn check_bounds(&self, low: &Arg, high: &Arg) -> Result<(), ExprError> {
        let (Operand::Literal(lo), Operand::Literal(hi)) = (&low.0, &high.0) else {
            return Ok(());
        };
        fn got(l: &Literal) -> Got<'_, 'static> {
            Got::Val(&l.value, l.number.as_ref())
        }
        match order(&got(lo), &got(hi)) {
            None => {
                let (a, b) = (lo.value.type_tag(), hi.value.type_tag());
                let msg = format!(
                    "BETWEEN bounds must have the same type, not {} and {}",
                    a.as_str(),
                    b.as_str()
                );
                self.fail(high.1, msg)
            }
            Some(Ordering::Greater) => {
                self.fail(low.1, "BETWEEN lower bound is greater than upper bound")
            }
            Some(_) => Ok(()),
        }
    }
}

#[cold]
fn unknown_function(f: &str) -> String {
    match FUNCTIONS.iter().find(|(k, _)| k.eq_ignore_ascii_case(f)) {
        Some((k, _)) => format!("unknown function {f}; function names are case-sensitive: {k}"),
        None => {
            let list: Vec<&str> = FUNCTIONS.iter().map(|f| f.0).collect();
            format!(
                "unknown function {f}; conditions may use {}",
                list.join(", ")
            )
        }
    }
}
