//! Every error: its message and the exact byte offset it points at.

use shoal_route::{MAX_DEPTH, MAX_RULE_LEN, ParseError, Rule};

/// The rule, shortened for assertion messages.
fn short(rule: &str) -> String {
    rule.chars().take(80).collect()
}

#[track_caller]
fn err(rule: &str) -> ParseError {
    match Rule::parse(rule) {
        Ok(_) => panic!("{:?} should not parse", short(rule)),
        Err(e) => {
            assert!(e.offset <= rule.len() && rule.is_char_boundary(e.offset));
            e
        }
    }
}

/// Asserts the offset and the exact message.
#[track_caller]
fn exact(rule: &str, offset: usize, message: &str) {
    let e = err(rule);
    assert_eq!(
        (e.offset, e.message.as_str()),
        (offset, message),
        "rule: {:?}",
        short(rule)
    );
}

/// Asserts the offset and that the message contains `part`.
#[track_caller]
fn contains(rule: &str, offset: usize, part: &str) {
    let e = err(rule);
    assert_eq!(
        e.offset,
        offset,
        "rule: {:?}, message: {}",
        short(rule),
        e.message
    );
    assert!(
        e.message.contains(part),
        "rule: {:?}, message: {}",
        short(rule),
        e.message
    );
}

#[test]
fn empty() {
    exact("", 0, "empty rule");
    exact(" \n\t ", 0, "empty rule");
}

#[test]
fn missing_paren_after_name() {
    exact("Path `/x`", 5, "expected `(` after matcher name `Path`");
    exact("Path", 4, "expected `(` after matcher name `Path`");
    exact(
        "Host(`a`) && Path",
        17,
        "expected `(` after matcher name `Path`",
    );
}

#[test]
fn unknown_matcher() {
    exact(
        "PathPrefx(`/x`)",
        0,
        "unknown matcher `PathPrefx`; did you mean `PathPrefix`?",
    );
    exact(
        "Host(`a`) || host(`b`)",
        13,
        "unknown matcher `host`; did you mean `Host`?",
    );
    contains("Banana(`x`)", 0, "expected one of Host, HostRegexp, Path");
    contains("Headers(`a`, `b`)", 0, "renamed `Header`");
    contains(
        "Path(`/`) and Host(`a`)",
        10,
        "expected `&&` or `||` between expressions",
    );
    contains("and(`x`)", 0, "use `&&`");
}

#[test]
fn strings() {
    exact("Path(`/x", 5, "unclosed string starting here");
    exact("Path(\"/x\\\")", 5, "unclosed string starting here");
    contains(r#"PathRegexp("\d+")"#, 12, "unsupported escape `\\d`");
    contains("Path('/x')", 5, "single quotes are not supported");
    contains("Path(/x)", 5, "unexpected character `/`");
    contains(
        "Path(x)",
        5,
        "expected a string argument in backticks or double quotes, found `x`",
    );
    contains("`/x`", 0, "unexpected string");
}

#[test]
fn arity() {
    exact(
        "Header(`X-A`)",
        12,
        "`Header` takes 2 arguments (name, value), got 1",
    );
    exact(
        "Header(`X-A`, `1`, `2`)",
        19,
        "`Header` takes 2 arguments (name, value), got 3",
    );
    exact("Path()", 5, "`Path` takes 1 argument (path), got 0");
    exact(
        "Query()",
        6,
        "`Query` takes 1 or 2 arguments (key[, value]), got 0",
    );
    exact(
        "Host(`a.com`, `b.com`)",
        14,
        "`Host` takes 1 argument in Traefik v3, got 2; to match any of several values write `Host(`a`) || Host(`b`)`",
    );
    contains(
        "Method(`GET`, `POST`)",
        14,
        "write `Method(`a`) || Method(`b`)`",
    );
    contains(
        "Path(`/a`,)",
        10,
        "expected a string argument in backticks or double quotes after `,`, found `)`",
    );
    contains(
        "Path(`/a` `/b`)",
        10,
        "expected `,` or `)` after an argument of `Path`, found a string",
    );
}

#[test]
fn operators_and_parens() {
    exact("Path(`/`))", 9, "unexpected `)` with no matching `(`");
    contains(")", 0, "unexpected `)`");
    contains("()", 1, "unexpected `)`");
    exact(
        "Path(`/`) Host(`a`)",
        10,
        "expected `&&` or `||` between expressions",
    );
    exact(
        "Path(`/`) !Host(`a`)",
        10,
        "expected `&&` or `||` between expressions",
    );
    exact(
        "(Path(`/`) Host(`a`))",
        11,
        "expected `&&` or `||` between expressions",
    );
    contains("Path(`/`) ,", 10, "unexpected `,`; expected `&&` or `||`");
    contains("Path(`/`) &&", 12, "unexpected end of rule");
    contains("&& Path(`/`)", 0, "unexpected `&&`");
    contains("Path(`/`) && || Host(`a`)", 13, "unexpected `||`");
    contains("!", 1, "unexpected end of rule");
    exact(
        "Path(`/`) & Host(`a`)",
        10,
        "expected `&&`, found a single `&`",
    );
    exact(
        "Path(`/`) | Host(`a`)",
        10,
        "expected `||`, found a single `|`",
    );
    exact("(Path(`/`) || Host(`a`)", 0, "unclosed `(`; expected `)`");
    exact("Path(`/`", 4, "unclosed `(` after `Path`; expected `)`");
    exact(
        "Header(`a`,",
        6,
        "unclosed `(` after `Header`; expected `)`",
    );
    contains("Path(`/`) ; rm -rf", 10, "unexpected character `;`");
}

#[test]
fn argument_validation() {
    exact(
        "PathRegexp(`(unclosed`)",
        11,
        "invalid regex in `PathRegexp`: unclosed group",
    );
    contains(
        "Host(`a`) && HeaderRegexp(`X`, `[z-a]`)",
        31,
        "invalid regex in `HeaderRegexp`",
    );
    contains(
        "QueryRegexp(`k`, `(?<`)",
        17,
        "invalid regex in `QueryRegexp`",
    );
    contains(
        r"HostRegexp(`\w{1000}\w{1000}`)",
        11,
        "regex is too large once compiled",
    );
    contains("Path(`x`)", 5, "`Path` needs a path starting with `/`");
    contains(
        "PathPrefix(``)",
        11,
        "`PathPrefix` needs a path starting with `/`",
    );
    contains("Host(`bücher.de`)", 7, "does not accept non-ASCII");
    contains("HostRegexp(`^é`)", 13, "does not accept non-ASCII");
    contains(r#"Host("a\\é")"#, 5, "does not accept non-ASCII");
    contains(r#"Host("aé")"#, 7, "does not accept non-ASCII");
    contains("Host(``)", 5, "non-empty host");
    contains(
        "ClientIP(`10.0.0.0/33`)",
        9,
        "invalid IP address or CIDR `10.0.0.0/33`",
    );
    contains("ClientIP(`1`)", 9, "invalid IP address or CIDR");
    contains("ClientIP(``)", 9, "invalid IP address or CIDR");
    contains("Header(`bad name`, `x`)", 7, "invalid header name");
    contains("Method(`GE T`)", 7, "invalid HTTP method");
}

#[test]
fn limits() {
    let deep = "(".repeat(MAX_DEPTH) + "Path(`/`)" + &")".repeat(MAX_DEPTH);
    assert!(Rule::parse(&deep).is_ok());
    let too_deep = "(".repeat(MAX_DEPTH + 1) + "Path(`/`)" + &")".repeat(MAX_DEPTH + 1);
    exact(
        &too_deep,
        MAX_DEPTH,
        "parentheses nested too deeply (the limit is 64 levels)",
    );
    // Hostile nesting is rejected quickly, without a stack overflow.
    let hostile = "!(".repeat(10_000);
    contains(&hostile, 2 * MAX_DEPTH + 1, "nested too deeply");

    let mut long = "Path(`/".to_owned() + &"a".repeat(MAX_RULE_LEN) + "`)";
    contains(&long, MAX_RULE_LEN, "rule is too long");
    // The offset stays on a char boundary.
    long.insert(MAX_RULE_LEN - 1, 'é');
    contains(&long, MAX_RULE_LEN - 1, "the limit is 65536 bytes");
    let fits = "Path(`/".to_owned() + &"a".repeat(MAX_RULE_LEN - 9) + "`)";
    assert_eq!(fits.len(), MAX_RULE_LEN);
    assert!(Rule::parse(&fits).is_ok());
}

#[test]
fn display_is_the_message() {
    let e = err("Path(");
    assert_eq!(e.to_string(), e.message);
}
