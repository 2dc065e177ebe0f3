//! The route rule language of shoal: Traefik v3 router rules such as
//! ``Host(`example.com`) && PathPrefix(`/api`)``.
//!
//! This crate owns the language: its grammar, parsing with precise error offsets,
//! compilation (regexes, IP ranges and header names are checked once, at parse time),
//! evaluation against a request, and Traefik's default priority (the rule's length). It
//! does not own the routing table (ordering routers by priority, picking one), nor any
//! I/O: the gateway extracts a [`RequestInfo`] from each request and asks each [`Rule`]
//! whether it [matches](Rule::matches).
//!
//! # Grammar
//!
//! ```ebnf
//! rule      = or_expr ;
//! or_expr   = and_expr , { "||" , and_expr } ;
//! and_expr  = unary , { "&&" , unary } ;
//! unary     = { "!" } , primary ;
//! primary   = matcher | "(" , or_expr , ")" ;
//! matcher   = name , "(" , [ string , { "," , string } ] , ")" ;
//! name      = "Host" | "HostRegexp" | "Path" | "PathPrefix" | "PathRegexp" | "Method"
//!           | "Header" | "HeaderRegexp" | "Query" | "QueryRegexp" | "ClientIP" ;
//! string    = "`" , { ? any char but "`" ? } , "`"
//!           | '"' , { ? any char but '"' and "\" ? | '\"' | "\\" } , '"' ;
//! ```
//!
//! Whitespace is allowed between any two tokens. `!` binds tightest, then `&&`, then `||`;
//! both binary operators are left-associative and short-circuit.
//!
//! # Matchers
//!
//! | Matcher | Matches when |
//! |---|---|
//! | ``Host(`h`)`` | the host equals `h`, ignoring ASCII case and a trailing dot |
//! | ``HostRegexp(`re`)`` | `re` matches somewhere in the lowercased host (`""` if absent) |
//! | ``Path(`/p`)`` | the path equals `/p` |
//! | ``PathPrefix(`/p`)`` | the path starts with `/p` (a plain string prefix) |
//! | ``PathRegexp(`re`)`` | `re` matches somewhere in the path |
//! | ``Method(`GET`)`` | the method equals `GET`, ignoring ASCII case |
//! | ``Header(`Name`, `v`)`` | one of the `Name` header's values is exactly `v` |
//! | ``HeaderRegexp(`Name`, `re`)`` | `re` matches one of the `Name` header's values |
//! | ``Query(`k`, `v`)`` | a decoded query pair is `k=v` |
//! | ``Query(`k`)`` | a decoded query pair is `k` with an empty value (`?k` or `?k=`) |
//! | ``QueryRegexp(`k`, `re`)`` | `re` matches the decoded value of some `k` pair |
//! | ``ClientIP(`10.0.0.0/8`)`` | the client address is in the range (or equals the IP) |
//!
//! Regexes use the [`regex`] crate's syntax (close to Go's) and are unanchored, as in
//! Traefik: write `^…$` for a full match. Paths are compared as received (still
//! percent-encoded). Query strings are decoded like Go's `url.ParseQuery`: `&`-separated,
//! `+` is a space, pairs containing `;` or a bad `%` escape are ignored. IPv4-mapped IPv6
//! client addresses match IPv4 ranges.

#![warn(missing_docs)]

mod error;
mod expr;
mod lexer;
mod matcher;
mod parser;
mod query;
mod suggest;

use std::net::IpAddr;

pub use error::ParseError;

/// Names of all matchers, for "did you mean" suggestions.
pub const MATCHERS: &[&str] = &[
    "Host",
    "HostRegexp",
    "Path",
    "PathPrefix",
    "PathRegexp",
    "Method",
    "Header",
    "HeaderRegexp",
    "Query",
    "QueryRegexp",
    "ClientIP",
];

/// The longest rule [`Rule::parse`] accepts, in bytes.
pub const MAX_RULE_LEN: usize = 64 * 1024;

/// The deepest nesting of parentheses [`Rule::parse`] accepts.
pub const MAX_DEPTH: usize = 64;

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    source: String,
    expr: expr::Expr,
}

impl Rule {
    /// Parse and compile (regexes compiled here).
    ///
    /// # Errors
    ///
    /// A [`ParseError`] pointing at the first problem: a syntax error, an unknown matcher,
    /// a wrong number of arguments, an invalid regex, IP, header name, method or path, or
    /// a rule longer than [`MAX_RULE_LEN`] or nested deeper than [`MAX_DEPTH`].
    pub fn parse(source: &str) -> Result<Rule, ParseError> {
        Ok(Rule {
            expr: parser::parse(source)?,
            source: source.to_owned(),
        })
    }

    /// Does the request match?
    ///
    /// Does not allocate, except for `QueryRegexp` on a value that needs percent-decoding
    /// and `HostRegexp` on a mixed-case host longer than 256 bytes.
    pub fn matches(&self, req: &RequestInfo<'_>) -> bool {
        self.expr.eval(req)
    }

    /// The rule's source text as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Traefik's default priority: the length of the rule source in chars.
    pub fn default_priority(&self) -> i64 {
        i64::try_from(self.source.chars().count()).unwrap_or(i64::MAX)
    }
}

impl std::str::FromStr for Rule {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Rule::parse(s)
    }
}

/// What a rule can look at. The gateway fills it once per request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// The request method.
    pub method: &'a http::Method,
    /// Host without port, from the Host header (HTTP/1) or :authority (HTTP/2); None if absent.
    pub host: Option<&'a str>,
    /// Path only, percent-encoded as received, no query.
    pub path: &'a str,
    /// Raw query string without '?', if any.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
    /// The address of the peer (not from `X-Forwarded-For`).
    pub client_ip: IpAddr,
}
