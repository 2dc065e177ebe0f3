//! Each matcher, positive and negative, and the combinators.

mod common;

use common::{eval, req};
use shoal_route::Rule;

#[test]
fn host() {
    let r = req().host(Some("Example.COM"));
    assert!(eval("Host(`example.com`)", &r));
    assert!(eval("Host(`EXAMPLE.com`)", &r));
    assert!(!eval("Host(`example.org`)", &r));
    assert!(!eval("Host(`www.example.com`)", &r));
    assert!(!eval("Host(`example.com`)", &req().host(None)));
    // Trailing dots on either side, as in Traefik.
    assert!(eval("Host(`example.com.`)", &r));
    assert!(eval(
        "Host(`example.com`)",
        &req().host(Some("example.com."))
    ));
    assert!(!eval(
        "Host(`example.com`)",
        &req().host(Some("example.com.."))
    ));
}

#[test]
fn host_regexp() {
    let rule = r"HostRegexp(`^.+\.example\.com$`)";
    assert!(eval(rule, &req().host(Some("a.example.com"))));
    assert!(
        eval(rule, &req().host(Some("A.B.Example.Com"))),
        "host is lowercased"
    );
    assert!(!eval(rule, &req().host(Some("example.com"))));
    assert!(!eval(rule, &req().host(None)));
    // Unanchored, like Go's MatchString.
    assert!(eval(
        "HostRegexp(`example`)",
        &req().host(Some("www.example.org"))
    ));
    // The regex sees the lowercased host, so uppercase classes do not match.
    assert!(!eval("HostRegexp(`^[A-Z]+$`)", &req().host(Some("ABC"))));
    assert!(eval("HostRegexp(`(?i)^[A-Z]+$`)", &req().host(Some("ABC"))));
    // Absent host is matched as "" (Traefik uses the empty canonical host).
    assert!(eval("HostRegexp(`^$`)", &req().host(None)));
    // Long mixed-case hosts take the allocating path.
    let long = format!("{}.Example.com", "A".repeat(300));
    assert!(eval(
        r"HostRegexp(`^a+\.example\.com$`)",
        &req().host(Some(&long))
    ));
}

#[test]
fn path_and_prefix() {
    let r = req().path("/products");
    assert!(eval("Path(`/products`)", &r));
    assert!(!eval("Path(`/products`)", &req().path("/products/")));
    assert!(!eval("Path(`/Products`)", &r));
    assert!(eval(
        "PathPrefix(`/products`)",
        &req().path("/products-for-sale")
    ));
    assert!(eval(
        "PathPrefix(`/products`)",
        &req().path("/products/shoes")
    ));
    assert!(eval("PathPrefix(`/`)", &r));
    assert!(!eval("PathPrefix(`/product/`)", &r));
    // Paths are compared as received, still encoded.
    assert!(eval("Path(`/a%20b`)", &req().path("/a%20b")));
    assert!(!eval("Path(`/a b`)", &req().path("/a%20b")));
}

#[test]
fn path_regexp() {
    let rule = r"PathRegexp(`\.(jpeg|jpg|png)$`)";
    assert!(eval(rule, &req().path("/img/a.png")));
    assert!(!eval(rule, &req().path("/img/a.png.txt")));
    assert!(eval(
        r"PathRegexp(`^/products/(shoes|socks)/[0-9]+$`)",
        &req().path("/products/socks/31")
    ));
    assert!(!eval(
        r"PathRegexp(`^/products/(shoes|socks)/[0-9]+$`)",
        &req().path("/products/hats/31")
    ));
}

#[test]
fn method() {
    assert!(eval("Method(`GET`)", &req()));
    assert!(eval("Method(`get`)", &req()));
    assert!(!eval("Method(`POST`)", &req()));
    assert!(eval("Method(`PURGE`)", &req().method("PURGE")));
    assert!(eval("Method(`purge`)", &req().method("purge")));
}

#[test]
fn header() {
    let r = req()
        .header("content-type", b"application/json")
        .header("x-multi", b"one")
        .header("x-multi", b"two");
    assert!(eval("Header(`Content-Type`, `application/json`)", &r));
    assert!(eval("Header(`content-type`, `application/json`)", &r));
    assert!(!eval("Header(`Content-Type`, `application/JSON`)", &r));
    assert!(!eval(
        "Header(`Content-Type`, `application/json; charset=utf-8`)",
        &r
    ));
    assert!(eval("Header(`X-Multi`, `two`)", &r));
    assert!(!eval("Header(`X-Missing`, ``)", &r));
    assert!(!eval("Header(`X-Multi`, `one, two`)", &r));
}

#[test]
fn header_regexp() {
    let r = req()
        .header("content-type", b"Application/YAML")
        .header("x-bin", b"caf\xe9");
    assert!(!eval(
        "HeaderRegexp(`Content-Type`, `^application/(json|yaml)$`)",
        &r
    ));
    assert!(eval(
        "HeaderRegexp(`Content-Type`, `(?i)^application/(json|yaml)$`)",
        &r
    ));
    assert!(!eval("HeaderRegexp(`X-Other`, `.*`)", &r));
    // Non-UTF-8 header bytes are fine.
    assert!(eval("HeaderRegexp(`X-Bin`, `^caf`)", &r));
}

#[test]
fn query() {
    let r = req().query(Some(
        "mobile=true&q=a+b%2Fc&flag&empty=&x=1;y=2&bad=%zz&k=v1&k=v2",
    ));
    assert!(eval("Query(`mobile`, `true`)", &r));
    assert!(!eval("Query(`mobile`, `false`)", &r));
    assert!(eval("Query(`q`, `a b/c`)", &r), "+ is a space, %2F is /");
    assert!(!eval("Query(`q`, `a+b%2Fc`)", &r));
    assert!(eval("Query(`k`, `v2`)", &r), "any occurrence");
    // One argument: the key with an empty value, as Traefik does.
    assert!(eval("Query(`flag`)", &r));
    assert!(eval("Query(`empty`)", &r));
    assert!(!eval("Query(`mobile`)", &r));
    assert!(!eval("Query(`absent`)", &r));
    // Pairs with `;` or bad escapes are dropped, like Go's url.ParseQuery.
    assert!(!eval("Query(`x`, `1;y=2`)", &r));
    assert!(!eval("Query(`bad`, `%zz`)", &r));
    assert!(!eval("QueryRegexp(`bad`, `.*`)", &r));
    // Encoded keys are decoded.
    assert!(eval("Query(`a b`, `1`)", &req().query(Some("a%20b=1"))));
    assert!(!eval("Query(`mobile`)", &req().query(None)));
}

#[test]
fn query_regexp() {
    let r = req().query(Some("mobile=yes&name=J%C3%A9r%C3%B4me"));
    assert!(eval("QueryRegexp(`mobile`, `^(true|yes)$`)", &r));
    assert!(!eval("QueryRegexp(`mobile`, `^(true|no)$`)", &r));
    assert!(eval("QueryRegexp(`name`, `^Jérôme$`)", &r));
    assert!(eval("QueryRegexp(`mobile`, `^.*$`)", &r));
    assert!(!eval("QueryRegexp(`other`, `^.*$`)", &r));
    // One argument behaves like Query(key).
    assert!(eval("QueryRegexp(`flag`)", &req().query(Some("flag"))));
}

#[test]
fn client_ip() {
    let r = req().ip("10.76.105.11");
    assert!(eval("ClientIP(`10.76.105.11`)", &r));
    assert!(!eval("ClientIP(`10.76.105.12`)", &r));
    assert!(eval("ClientIP(`10.0.0.0/8`)", &r));
    assert!(!eval("ClientIP(`192.168.1.0/24`)", &r));
    assert!(
        eval("ClientIP(`10.76.105.99/16`)", &r),
        "host bits are ignored"
    );
    let v6 = req().ip("fe80::1");
    assert!(eval("ClientIP(`fe80::/10`)", &v6));
    assert!(eval("ClientIP(`fe80::1`)", &v6));
    assert!(!eval("ClientIP(`::1`)", &v6));
    assert!(!eval("ClientIP(`10.0.0.0/8`)", &v6));
    assert!(eval("ClientIP(`::1`)", &req().ip("::1")));
    assert!(eval("ClientIP(`0.0.0.0/0`)", &r));
    assert!(
        !eval("ClientIP(`::/0`)", &r),
        "v4 clients are not in v6 ranges"
    );
    // IPv4-mapped IPv6 clients match IPv4 rules, and mapped rules match IPv4 clients.
    let mapped = req().ip("::ffff:10.1.2.3");
    assert!(eval("ClientIP(`10.0.0.0/8`)", &mapped));
    assert!(eval("ClientIP(`10.1.2.3`)", &mapped));
    assert!(eval("ClientIP(`::ffff:10.1.2.3`)", &req().ip("10.1.2.3")));
    assert!(eval(
        "ClientIP(`::ffff:10.0.0.0/104`)",
        &req().ip("10.1.2.3")
    ));
}

#[test]
fn quotes_and_escapes() {
    let r = req().header("x-q", b"say \"hi\" \\o/");
    assert!(eval(r#"Header("X-Q", "say \"hi\" \\o/")"#, &r));
    assert!(eval(r#"Header(`X-Q`, `say "hi" \o/`)"#, &r));
    assert!(eval(r#"Path("/")"#, &req()));
    // Mixed quoting and generous whitespace.
    assert!(eval("  Header ( \"X-Q\" ,\n\t`say \"hi\" \\o/` )  ", &r));
}

#[test]
fn combinators_and_precedence() {
    let r = req(); // GET example.com /
    let t = "Method(`GET`)";
    let f = "Method(`POST`)";
    let e = |s: String| eval(&s, &r);
    assert!(e(format!("{t} && {t}")));
    assert!(!e(format!("{t} && {f}")));
    assert!(e(format!("{f} || {t}")));
    assert!(!e(format!("{f} || {f}")));
    assert!(e(format!("!{f}")));
    assert!(!e(format!("!{t}")));
    assert!(e(format!("!!{t}")));
    assert!(e(format!("! ! ! {f}")));
    // `A || B && C` is `A || (B && C)`.
    assert!(e(format!("{t} || {f} && {f}")));
    assert!(!e(format!("({t} || {f}) && {f}")));
    // `!A && B` is `(!A) && B`.
    assert!(!e(format!("!{f} && {f}")));
    assert!(e(format!("!({f} && {f})")));
    // `A && B || C` is `(A && B) || C`.
    assert!(e(format!("{f} && {f} || {t}")));
    assert!(!e(format!("{f} && ({f} || {t})")));
    assert!(e(format!("((({t})))")));
    assert!(eval(
        "Host(`example.com`) && (PathPrefix(`/api`) || Path(`/`)) && !ClientIP(`10.0.0.0/8`)",
        &r
    ));
}

#[test]
fn long_flat_chains_do_not_overflow() {
    // Thousands of operands, far beyond any nesting limit: the tree stays flat.
    let rule = vec!["Path(`/x`)"; 4000].join(" || ") + " || Path(`/`)";
    assert!(rule.len() < shoal_route::MAX_RULE_LEN);
    assert!(eval(&rule, &req()));
    let rule = vec!["!!!!Path(`/`)"; 4000].join("&&");
    let parsed = Rule::parse(&rule).unwrap();
    // Clone and drop walk the tree too.
    let copy = parsed.clone();
    drop(parsed);
    assert!(copy.matches(&req().info()));
    let nots = "!".repeat(60_000) + "Path(`/`)";
    assert!(eval(&nots, &req()));
}

#[test]
fn source_and_priority() {
    let src = "Host(`example.com`)";
    let rule = Rule::parse(src).unwrap();
    assert_eq!(rule.source(), src);
    assert_eq!(rule.default_priority(), 19);
    // Whitespace counts, as the source is kept as given.
    assert_eq!(Rule::parse(" Path(`/`) ").unwrap().default_priority(), 11);
    // Chars, not bytes.
    let rule = Rule::parse("Path(`/é`)").unwrap();
    assert_eq!(rule.default_priority(), 10);
    assert_eq!(rule.source().len(), 11);
    // The documented Traefik example.
    let rule: Rule = r"HostRegexp(`[a-z]+\.traefik\.com`)".parse().unwrap();
    assert_eq!(rule.default_priority(), 34);
    assert_eq!(
        Rule::parse("Host(`foobar.traefik.com`)")
            .unwrap()
            .default_priority(),
        26
    );
}
