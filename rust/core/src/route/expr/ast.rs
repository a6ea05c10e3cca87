//! The condition AST: what `parser` builds and `eval` walks. (Its own module, so that the
//! parser, which uses `eval`'s ordering to check literals, and `eval` do not use each other.)

use crate::model::number::Decimal;
use crate::model::value::{TypeTag, Value};

use super::path::DocPath;

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
