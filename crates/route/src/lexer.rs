//! Tokens of the rule language, produced on demand so that errors come out in source order.

use crate::error::ParseError;

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenKind<'a> {
    /// A matcher name (letters, digits and `_`, not starting with a digit).
    Ident(&'a str),
    /// A string argument, with escapes resolved.
    Str(String),
    LParen,
    RParen,
    Comma,
    And,
    Or,
    Not,
    Eof,
}

impl TokenKind<'_> {
    /// How the token is shown in error messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            TokenKind::Ident(name) => format!("`{name}`"),
            TokenKind::Str(_) => "a string".to_owned(),
            TokenKind::LParen => "`(`".to_owned(),
            TokenKind::RParen => "`)`".to_owned(),
            TokenKind::Comma => "`,`".to_owned(),
            TokenKind::And => "`&&`".to_owned(),
            TokenKind::Or => "`||`".to_owned(),
            TokenKind::Not => "`!`".to_owned(),
            TokenKind::Eof => "end of rule".to_owned(),
        }
    }
}

/// A token and the byte offset of its first character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub(crate) kind: TokenKind<'a>,
    pub(crate) offset: usize,
}

/// A lexer with one token of lookahead.
#[derive(Debug)]
pub(crate) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    peeked: Option<Token<'a>>,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Self {
            src,
            pos: 0,
            peeked: None,
        }
    }

    /// The whole rule source.
    pub(crate) fn src(&self) -> &'a str {
        self.src
    }

    /// The next token, without consuming it.
    pub(crate) fn peek(&mut self) -> Result<&Token<'a>, ParseError> {
        if self.peeked.is_none() {
            let tok = self.lex()?;
            self.peeked = Some(tok);
        }
        Ok(self.peeked.as_ref().expect("just filled"))
    }

    /// Consumes and returns the next token.
    pub(crate) fn next_token(&mut self) -> Result<Token<'a>, ParseError> {
        match self.peeked.take() {
            Some(tok) => Ok(tok),
            None => self.lex(),
        }
    }

    fn lex(&mut self) -> Result<Token<'a>, ParseError> {
        let rest = &self.src[self.pos..];
        let trimmed = rest.trim_start();
        self.pos += rest.len() - trimmed.len();
        let start = self.pos;
        let Some(c) = trimmed.chars().next() else {
            return Ok(Token {
                kind: TokenKind::Eof,
                offset: start,
            });
        };
        let kind = match c {
            '(' => self.single(TokenKind::LParen),
            ')' => self.single(TokenKind::RParen),
            ',' => self.single(TokenKind::Comma),
            '!' => self.single(TokenKind::Not),
            '&' | '|' => {
                if trimmed[1..].starts_with(c) {
                    self.pos += 2;
                    if c == '&' {
                        TokenKind::And
                    } else {
                        TokenKind::Or
                    }
                } else {
                    return Err(ParseError::new(
                        start,
                        format!("expected `{c}{c}`, found a single `{c}`"),
                    ));
                }
            }
            '`' => self.backtick_string(start)?,
            '"' => self.quoted_string(start)?,
            '\'' => {
                return Err(ParseError::new(
                    start,
                    "single quotes are not supported; write the argument in backticks or double quotes",
                ));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let len = trimmed
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(trimmed.len());
                self.pos += len;
                TokenKind::Ident(&trimmed[..len])
            }
            c => {
                return Err(ParseError::new(
                    start,
                    format!("unexpected character `{}`", c.escape_debug()),
                ));
            }
        };
        Ok(Token {
            kind,
            offset: start,
        })
    }

    fn single(&mut self, kind: TokenKind<'a>) -> TokenKind<'a> {
        self.pos += 1;
        kind
    }

    /// A raw string: everything up to the next backtick, no escapes.
    fn backtick_string(&mut self, start: usize) -> Result<TokenKind<'a>, ParseError> {
        let body = &self.src[start + 1..];
        match body.find('`') {
            Some(end) => {
                self.pos = start + 1 + end + 1;
                Ok(TokenKind::Str(body[..end].to_owned()))
            }
            None => Err(unclosed(start)),
        }
    }

    /// A double-quoted string with `\"` and `\\` escapes.
    fn quoted_string(&mut self, start: usize) -> Result<TokenKind<'a>, ParseError> {
        let mut out = String::new();
        let mut chars = self.src[start + 1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos = start + 1 + i + 1;
                    return Ok(TokenKind::Str(out));
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\'))) => out.push(e),
                    Some((_, e)) => {
                        return Err(ParseError::new(
                            start + 1 + i,
                            format!(
                                "unsupported escape `\\{}` in double-quoted string; only `\\\"` and `\\\\` are allowed (write regexes in backticks)",
                                e.escape_debug()
                            ),
                        ));
                    }
                    None => return Err(unclosed(start)),
                },
                c => out.push(c),
            }
        }
        Err(unclosed(start))
    }
}

fn unclosed(start: usize) -> ParseError {
    ParseError::new(start, "unclosed string starting here")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Result<Vec<TokenKind<'_>>, ParseError> {
        let mut lx = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let t = lx.next_token()?;
            if t.kind == TokenKind::Eof {
                return Ok(out);
            }
            out.push(t.kind);
        }
    }

    #[test]
    fn tokens() {
        use TokenKind::*;
        assert_eq!(
            kinds(" Path(`/a`) &&!(x_1 || \"b\\\"c\\\\\") ,").unwrap(),
            vec![
                Ident("Path"),
                LParen,
                Str("/a".into()),
                RParen,
                And,
                Not,
                LParen,
                Ident("x_1"),
                Or,
                Str("b\"c\\".into()),
                RParen,
                Comma,
            ]
        );
    }

    #[test]
    fn offsets() {
        let mut lx = Lexer::new("  A\t( `é` )");
        let offs: Vec<usize> = std::iter::from_fn(|| {
            let t = lx.next_token().unwrap();
            (t.kind != TokenKind::Eof).then_some(t.offset)
        })
        .collect();
        assert_eq!(offs, vec![2, 4, 6, 11]);
    }

    #[test]
    fn backtick_strings_keep_backslashes() {
        assert_eq!(
            kinds(r"`^\d+\.x$`").unwrap(),
            vec![TokenKind::Str(r"^\d+\.x$".into())]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(kinds("A & B").unwrap_err().offset, 2);
        assert_eq!(kinds("A | B").unwrap_err().offset, 2);
        assert_eq!(kinds("A(`x").unwrap_err(), unclosed(2));
        assert_eq!(kinds("A(\"x\\\"").unwrap_err(), unclosed(2));
        assert_eq!(kinds("A(\"x\\").unwrap_err(), unclosed(2));
        let e = kinds("A(\"\\d\")").unwrap_err();
        assert_eq!(e.offset, 3);
        assert!(e.message.contains("unsupported escape `\\d`"), "{e}");
        assert_eq!(kinds("A('x')").unwrap_err().offset, 2);
        let e = kinds("A ; B").unwrap_err();
        assert_eq!(
            (e.offset, e.message.as_str()),
            (2, "unexpected character `;`")
        );
        assert_eq!(kinds("é").unwrap_err().offset, 0);
    }
}
