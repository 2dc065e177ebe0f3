//! The compiled expression tree and its evaluation.
//!
//! `&&` and `||` chains are stored flat (`And(vec)`, `Or(vec)`), so the tree is only as deep
//! as the parentheses nesting, which the parser caps: evaluation, `Clone` and `Drop` recurse
//! at most a few hundred frames whatever the rule length.

use crate::RequestInfo;
use crate::matcher::Matcher;

#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Matcher(Box<Matcher>),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    /// Evaluates left to right with short-circuiting.
    pub(crate) fn eval(&self, req: &RequestInfo<'_>) -> bool {
        match self {
            Expr::Matcher(m) => m.matches(req),
            Expr::Not(e) => !e.eval(req),
            Expr::And(es) => es.iter().all(|e| e.eval(req)),
            Expr::Or(es) => es.iter().any(|e| e.eval(req)),
        }
    }
}
