//! Recursive-descent parser from tokens to a compiled [`Expr`].
//!
//! Recursion happens only on `(`, and the nesting depth is capped at [`MAX_DEPTH`], so
//! hostile input cannot overflow the stack. Runs of `!` are folded in a loop.

use crate::error::ParseError;
use crate::expr::Expr;
use crate::lexer::{Lexer, Token, TokenKind};
use crate::matcher::{Arg, Matcher, is_matcher};
use crate::{MAX_DEPTH, MAX_RULE_LEN, suggest};

const EXPECTED_OPERAND: &str = "expected a matcher such as `Path(`/`)`, `!` or `(`";

/// Parses and compiles a whole rule.
pub(crate) fn parse(src: &str) -> Result<Expr, ParseError> {
    if src.len() > MAX_RULE_LEN {
        let mut at = MAX_RULE_LEN;
        while !src.is_char_boundary(at) {
            at -= 1;
        }
        return Err(ParseError::new(
            at,
            format!(
                "rule is too long ({} bytes); the limit is {MAX_RULE_LEN} bytes",
                src.len()
            ),
        ));
    }
    if src.trim().is_empty() {
        return Err(ParseError::new(0, "empty rule"));
    }
    let mut p = Parser {
        lexer: Lexer::new(src),
        depth: 0,
    };
    let expr = p.or_expr()?;
    let tok = p.lexer.next_token()?;
    match tok.kind {
        TokenKind::Eof => Ok(expr),
        TokenKind::RParen => Err(ParseError::new(
            tok.offset,
            "unexpected `)` with no matching `(`",
        )),
        _ => Err(between(&tok)),
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    depth: usize,
}

/// The error for a token found where an operator was expected.
fn between(tok: &Token<'_>) -> ParseError {
    match tok.kind {
        TokenKind::Ident(_) | TokenKind::Str(_) | TokenKind::LParen | TokenKind::Not => {
            ParseError::new(tok.offset, "expected `&&` or `||` between expressions")
        }
        _ => ParseError::new(
            tok.offset,
            format!("unexpected {}; expected `&&` or `||`", tok.kind.describe()),
        ),
    }
}

impl Parser<'_> {
    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.and_expr()?];
        while self.lexer.peek()?.kind == TokenKind::Or {
            self.lexer.next_token()?;
            items.push(self.and_expr()?);
        }
        Ok(flatten(items, Expr::Or))
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.unary()?];
        while self.lexer.peek()?.kind == TokenKind::And {
            self.lexer.next_token()?;
            items.push(self.unary()?);
        }
        Ok(flatten(items, Expr::And))
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        let mut negate = false;
        while self.lexer.peek()?.kind == TokenKind::Not {
            self.lexer.next_token()?;
            negate = !negate;
        }
        let e = self.primary()?;
        Ok(if negate { Expr::Not(Box::new(e)) } else { e })
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let tok = self.lexer.next_token()?;
        match tok.kind {
            TokenKind::Ident(name) => self.matcher(name, tok.offset),
            TokenKind::LParen => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(ParseError::new(
                        tok.offset,
                        format!("parentheses nested too deeply (the limit is {MAX_DEPTH} levels)"),
                    ));
                }
                let e = self.or_expr()?;
                let close = self.lexer.next_token()?;
                match close.kind {
                    TokenKind::RParen => {}
                    TokenKind::Eof => {
                        return Err(ParseError::new(tok.offset, "unclosed `(`; expected `)`"));
                    }
                    _ => return Err(between(&close)),
                }
                self.depth -= 1;
                Ok(e)
            }
            TokenKind::Str(_) => Err(ParseError::new(
                tok.offset,
                "unexpected string; a string must be the argument of a matcher such as `Path(`/`)`",
            )),
            TokenKind::Eof => Err(ParseError::new(
                tok.offset,
                format!("unexpected end of rule; {EXPECTED_OPERAND}"),
            )),
            other => Err(ParseError::new(
                tok.offset,
                format!("unexpected {}; {EXPECTED_OPERAND}", other.describe()),
            )),
        }
    }

    /// `name ( [string { , string }] )`, then compiles the matcher.
    fn matcher(&mut self, name: &str, name_offset: usize) -> Result<Expr, ParseError> {
        if !is_matcher(name) {
            return Err(ParseError::new(name_offset, suggest::unknown_matcher(name)));
        }
        let open = self.lexer.next_token()?;
        if open.kind != TokenKind::LParen {
            return Err(ParseError::new(
                open.offset,
                format!("expected `(` after matcher name `{name}`"),
            ));
        }
        let unclosed = || {
            ParseError::new(
                open.offset,
                format!("unclosed `(` after `{name}`; expected `)`"),
            )
        };
        let mut args = Vec::new();
        let close = loop {
            let tok = self.lexer.next_token()?;
            match tok.kind {
                TokenKind::Str(value) => {
                    let verbatim = self
                        .lexer
                        .src()
                        .get(tok.offset + 1..)
                        .is_some_and(|raw| raw.starts_with(value.as_str()));
                    args.push(Arg {
                        value,
                        offset: tok.offset,
                        verbatim,
                    });
                }
                TokenKind::RParen if args.is_empty() => break tok.offset,
                TokenKind::Eof => return Err(unclosed()),
                other => {
                    let what = if args.is_empty() { "" } else { " after `,`" };
                    return Err(ParseError::new(
                        tok.offset,
                        format!(
                            "expected a string argument in backticks or double quotes{what}, found {}",
                            other.describe()
                        ),
                    ));
                }
            }
            let sep = self.lexer.next_token()?;
            match sep.kind {
                TokenKind::Comma => {}
                TokenKind::RParen => break sep.offset,
                TokenKind::Eof => return Err(unclosed()),
                other => {
                    return Err(ParseError::new(
                        sep.offset,
                        format!(
                            "expected `,` or `)` after an argument of `{name}`, found {}",
                            other.describe()
                        ),
                    ));
                }
            }
        };
        Ok(Expr::Matcher(Box::new(Matcher::build(name, args, close)?)))
    }
}

fn flatten(mut items: Vec<Expr>, wrap: fn(Vec<Expr>) -> Expr) -> Expr {
    if items.len() == 1 {
        items.pop().expect("one item")
    } else {
        wrap(items)
    }
}
