//! Property tests: `parse` never panics, and generated rules evaluate like their AST.

mod common;

use common::{Req, req};
use proptest::prelude::*;
use proptest::sample::select;
use shoal_route::Rule;

/// Tokens that make random input look like a rule, so the fuzzing reaches deep paths.
const VOCAB: &[&str] = &[
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
    "Pth",
    "(",
    ")",
    "((",
    "))",
    ",",
    "&&",
    "||",
    "!",
    "&",
    "|",
    " ",
    "\n",
    "`",
    "\"",
    "\\",
    "`/`",
    "`a`",
    "\"x\\\"y\"",
    "`(`",
    "`[`",
    "`10.0.0.0/8`",
    "`::1`",
    "`GET`",
    "é",
    "'",
];

/// `cases` cases; failures are shrunk and printed rather than persisted (integration
/// tests have no `lib.rs` next to them for proptest's regression files).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn parse_never_panics(src in prop_oneof![
        any::<String>(),
        prop::collection::vec(select(VOCAB), 0..40).prop_map(|t| t.concat()),
    ]) {
        match Rule::parse(&src) {
            Ok(rule) => {
                prop_assert_eq!(rule.source(), src.as_str());
                prop_assert_eq!(rule.default_priority(), src.chars().count() as i64);
                rule.matches(&req().info());
            }
            Err(e) => {
                prop_assert!(e.offset <= src.len(), "offset {} past the end", e.offset);
                prop_assert!(src.is_char_boundary(e.offset), "offset {} inside a char", e.offset);
                prop_assert!(!e.message.is_empty());
            }
        }
    }
}

/// A matcher with its arguments and an independent oracle for it.
struct Leaf {
    name: &'static str,
    args: &'static [&'static str],
    oracle: fn(&Req) -> bool,
}

fn query_pairs(r: &Req) -> Vec<(String, String)> {
    // The sample queries need no decoding.
    r.query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn header_is(r: &Req, name: &str, value: &str) -> bool {
    r.headers.get_all(name).iter().any(|v| v == value)
}

static LEAVES: &[Leaf] = &[
    Leaf {
        name: "Host",
        args: &["example.com"],
        oracle: |r| {
            r.host
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case("example.com"))
        },
    },
    Leaf {
        name: "HostRegexp",
        args: &[r"^[a-z]+\.org$"],
        oracle: |r| r.host.as_deref() == Some("other.org"),
    },
    Leaf {
        name: "Path",
        args: &["/"],
        oracle: |r| r.path == "/",
    },
    Leaf {
        name: "PathPrefix",
        args: &["/api"],
        oracle: |r| r.path.starts_with("/api"),
    },
    Leaf {
        name: "PathRegexp",
        args: &[r"^/api/v\d+$"],
        oracle: |r| r.path == "/api/v1",
    },
    Leaf {
        name: "Method",
        args: &["post"],
        oracle: |r| r.method == http::Method::POST,
    },
    Leaf {
        name: "Header",
        args: &["X-Env", "prod"],
        oracle: |r| header_is(r, "x-env", "prod"),
    },
    Leaf {
        name: "Header",
        args: &["x-q", "say \"hi\" \\o/"],
        oracle: |r| header_is(r, "x-q", "say \"hi\" \\o/"),
    },
    Leaf {
        name: "HeaderRegexp",
        args: &["X-Env", "^(dev|test)$"],
        oracle: |r| header_is(r, "x-env", "dev"),
    },
    Leaf {
        name: "Query",
        args: &["v", "1"],
        oracle: |r| query_pairs(r).iter().any(|(k, v)| k == "v" && v == "1"),
    },
    Leaf {
        name: "Query",
        args: &["debug"],
        oracle: |r| {
            query_pairs(r)
                .iter()
                .any(|(k, v)| k == "debug" && v.is_empty())
        },
    },
    Leaf {
        name: "QueryRegexp",
        args: &["v", "^[0-9]$"],
        oracle: |r| query_pairs(r).iter().any(|(k, _)| k == "v"),
    },
    Leaf {
        name: "ClientIP",
        args: &["10.0.0.0/8"],
        oracle: |r| r.client_ip.to_canonical().to_string().starts_with("10."),
    },
    Leaf {
        name: "ClientIP",
        args: &["::1"],
        oracle: |r| r.client_ip.to_string() == "::1",
    },
];

#[derive(Debug, Clone)]
enum Ast {
    Leaf(usize),
    Not(Box<Ast>),
    And(Box<Ast>, Box<Ast>),
    Or(Box<Ast>, Box<Ast>),
}

impl Ast {
    fn eval(&self, r: &Req) -> bool {
        match self {
            Ast::Leaf(i) => (LEAVES[*i].oracle)(r),
            Ast::Not(a) => !a.eval(r),
            Ast::And(a, b) => a.eval(r) && b.eval(r),
            Ast::Or(a, b) => a.eval(r) || b.eval(r),
        }
    }

    /// Renders with the fewest parentheses the precedence needs, plus random extra ones,
    /// random whitespace and random quoting, all driven by `rng`.
    fn render(&self, min_prec: u8, rng: &mut Rng, out: &mut String) {
        let prec = match self {
            Ast::Or(..) => 1,
            Ast::And(..) => 2,
            Ast::Not(_) => 3,
            Ast::Leaf(_) => 4,
        };
        let parens = prec < min_prec || rng.one_in(6);
        if parens {
            out.push('(');
            rng.space(out);
        }
        match self {
            Ast::Leaf(i) => {
                let leaf = &LEAVES[*i];
                out.push_str(leaf.name);
                rng.space(out);
                out.push('(');
                for (n, arg) in leaf.args.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    rng.space(out);
                    if rng.one_in(2) {
                        out.push('`');
                        out.push_str(arg);
                        out.push('`');
                    } else {
                        out.push('"');
                        out.push_str(&arg.replace('\\', "\\\\").replace('"', "\\\""));
                        out.push('"');
                    }
                    rng.space(out);
                }
                out.push(')');
            }
            Ast::Not(a) => {
                out.push('!');
                rng.space(out);
                a.render(3, rng, out);
            }
            Ast::And(a, b) | Ast::Or(a, b) => {
                a.render(prec, rng, out);
                rng.space(out);
                out.push_str(if prec == 1 { "||" } else { "&&" });
                rng.space(out);
                // Left-associative: the right operand binds one level tighter.
                b.render(prec + 1, rng, out);
            }
        }
        if parens {
            rng.space(out);
            out.push(')');
        }
    }
}

/// A tiny deterministic generator for rendering choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
    fn space(&mut self, out: &mut String) {
        out.push_str(["", "", " ", "  ", "\n", "\t"][(self.next() % 6) as usize]);
    }
}

fn ast() -> impl Strategy<Value = Ast> {
    let leaf = (0..LEAVES.len()).prop_map(Ast::Leaf);
    leaf.prop_recursive(6, 48, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|a| Ast::Not(Box::new(a))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Ast::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Ast::Or(Box::new(a), Box::new(b))),
        ]
    })
}

fn request() -> impl Strategy<Value = Req> {
    (
        select(vec![
            Some("example.com"),
            Some("EXAMPLE.com"),
            Some("other.org"),
            None,
        ]),
        select(vec!["/", "/api", "/api/v1", "/apix/v1"]),
        select(vec!["GET", "POST"]),
        select(vec![None, Some("prod"), Some("dev")]),
        any::<bool>(),
        select(vec![None, Some("v=1"), Some("debug&v=2"), Some("debug=x")]),
        select(vec!["10.1.2.3", "192.0.2.1", "::1", "::ffff:10.9.9.9"]),
    )
        .prop_map(|(host, path, method, env, q, query, ip)| {
            let mut r = req()
                .host(host)
                .path(path)
                .method(method)
                .query(query)
                .ip(ip);
            if let Some(env) = env {
                r = r.header("x-env", env.as_bytes());
            }
            if q {
                r = r.header("x-q", b"say \"hi\" \\o/");
            }
            r
        })
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn generated_rules_evaluate_like_their_ast(
        ast in ast(),
        seed in any::<u64>(),
        reqs in prop::collection::vec(request(), 6),
    ) {
        let mut src = String::new();
        ast.render(0, &mut Rng(seed), &mut src);
        let rule = Rule::parse(&src).map_err(|e| {
            TestCaseError::fail(format!("{src:?} failed at {}: {e}", e.offset))
        })?;
        prop_assert_eq!(rule.default_priority(), src.chars().count() as i64);
        for r in &reqs {
            prop_assert_eq!(rule.matches(&r.info()), ast.eval(r), "rule {:?} on {:?}", src, r);
        }
    }
}
