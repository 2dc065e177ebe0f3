//! `--scenario FILE`: user flows, as Locust's user classes and k6's scenarios have them.
//!
//! A scenario file (YAML) names weighted **user types**; each is a list of **steps** — a
//! named request (method, URL, headers, body), the status it must answer, values to
//! **capture** from the answer (a JSON pointer or a regex with one group over the body, or a
//! header) for later steps as `${name}`, and a **think time** after it. Each step's latency
//! goes into its own histogram, so the report has a row per step besides the overall
//! figures.
//!
//! This module owns the file: it is parsed into a small tree that keeps each node's line and
//! column (serde forgets them, and every error must say `file:line:column`), then validated
//! in one pass that reports every problem, not only the first. Templates are resolved here
//! to slots (`${token}` → variable number 3), so a flow substitutes by index and never looks
//! a name up. Running flows is `run`'s; recording is `record`'s.
use std::fmt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http::header::{HeaderName, HeaderValue};
use regex::bytes::Regex;
use serde_saphyr::granit_parser::{Event, Parser};

use shoal_config::parse_duration;

/// Variables every flow has: `${user}` (the user's number; in the open model, the flow's)
/// and `${flow}` (the run's flow number, from 0).
pub const BUILTINS: [&str; 2] = ["user", "flow"];

/// The most body bytes kept for captures (larger answers are captured from their start).
pub const MAX_KEPT_BODY: usize = 1 << 20;

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file, as given.
    pub file: String,
    /// User types, in file order.
    pub users: Vec<UserType>,
    /// Every step of every user type, in file order ([`UserType::steps`] are ranges of it).
    pub steps: Vec<Step>,
}

/// One kind of user (Locust's user class).
#[derive(Debug, Clone)]
pub struct UserType {
    /// Its name (the key in `users:`).
    pub name: String,
    /// Relative share of the users (closed model) or flows (open model).
    pub weight: u32,
    /// Its steps: `Scenario::steps[steps]`.
    pub steps: std::ops::Range<usize>,
    /// Variables: the built-ins, then each capture in step order.
    pub vars: Vec<String>,
}

/// One request of a flow.
#[derive(Debug, Clone)]
pub struct Step {
    /// Index into [`Scenario::users`].
    pub user: usize,
    /// The step's name (its stats row): `name:` or `METHOD path`.
    pub name: String,
    /// Method.
    pub method: Method,
    /// The URL as written (for the report).
    pub url: String,
    /// `http(s)://host:port` (no variables allowed there).
    pub origin_url: String,
    /// Index into the plan's origins (set by the plan).
    pub origin: usize,
    /// Path and query.
    pub path: Template,
    /// Headers (values may hold variables).
    pub headers: Vec<(HeaderName, Template)>,
    /// Body.
    pub body: Option<Template>,
    /// Statuses that pass (empty: any 2xx or 3xx).
    pub expect: Vec<u16>,
    /// Values taken from the answer.
    pub captures: Vec<Capture>,
    /// Pause after the step.
    pub think: Think,
    /// What of the answer the captures need.
    pub keep_body: bool,
}

impl Step {
    /// Did `status` pass?
    pub fn expected(&self, status: u16) -> bool {
        if self.expect.is_empty() {
            (200..400).contains(&status)
        } else {
            self.expect.contains(&status)
        }
    }

    /// The expected statuses in words.
    pub fn expect_text(&self) -> String {
        if self.expect.is_empty() {
            return "2xx/3xx".into();
        }
        let s: Vec<String> = self.expect.iter().map(u16::to_string).collect();
        s.join(" or ")
    }
}

/// A string with `${name}` holes, resolved to variable slots.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Var(usize),
}

impl Template {
    /// Fill in the variables (every slot a template names is set before it is used).
    pub fn render(&self, vars: &[String]) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(i) => out.push_str(vars.get(*i).map_or("", String::as_str)),
            }
        }
        out
    }

    /// A template without variables, as is.
    pub fn literal(&self) -> Option<&str> {
        match self.0.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }
}

/// One value taken from an answer into variable `slot`.
#[derive(Debug, Clone)]
pub struct Capture {
    /// Its name.
    pub name: String,
    /// Its variable slot.
    pub slot: usize,
    /// Where it comes from.
    pub from: CaptureFrom,
}

/// Where a captured value comes from.
#[derive(Debug, Clone)]
pub enum CaptureFrom {
    /// A JSON pointer (RFC 6901) into the body: strings as they are, numbers and booleans
    /// as written, objects and arrays as JSON text.
    Json(String),
    /// A regex over the body with exactly one group: the group of the first match.
    Regex(Regex),
    /// A response header's first value.
    Header(HeaderName),
}

impl Capture {
    /// The value in this answer, if it is there.
    pub fn extract(&self, body: &[u8], headers: &[(HeaderName, HeaderValue)]) -> Option<String> {
        match &self.from {
            CaptureFrom::Json(pointer) => {
                let v: serde_json::Value = serde_json::from_slice(body).ok()?;
                match v.pointer(pointer)? {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                }
            }
            CaptureFrom::Regex(re) => {
                let m = re.captures(body)?.get(1)?;
                Some(String::from_utf8_lossy(m.as_bytes()).into_owned())
            }
            CaptureFrom::Header(name) => headers
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.to_str().ok())
                .map(str::to_owned),
        }
    }
}

/// A pause: fixed, or uniform between two bounds (Locust's `between`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Think {
    /// Shortest.
    pub min: Duration,
    /// Longest.
    pub max: Duration,
}

impl Think {
    /// A pause for a uniform `x` in [0, 1).
    pub fn at(&self, x: f64) -> Duration {
        self.min + (self.max.saturating_sub(self.min)).mul_f64(x.clamp(0.0, 1.0))
    }
}

/// One problem in a scenario file, at `line:column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Why a scenario file is unusable: every problem, each with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file.
    pub file: String,
    /// Its problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.file, p.line, p.column, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

/// Read and validate a scenario file. `base` (the command line's URL, if one was given)
/// replaces the file's `base:`.
pub fn load(path: &Path, base: Option<&str>) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: file.clone(),
        problems: vec![Problem {
            line: 1,
            column: 1,
            message: format!("cannot read it: {e}"),
        }],
    })?;
    parse(&file, &text, base)
}

/// Validate scenario text (`file` names it in errors).
pub fn parse(file: &str, text: &str, base: Option<&str>) -> Result<Scenario, ScenarioError> {
    let fail = |problems| ScenarioError {
        file: file.to_owned(),
        problems,
    };
    let root = tree(text).map_err(|p| fail(vec![p]))?;
    let mut v = Validator::default();
    let scenario = v.scenario(file, &root, base);
    if v.problems.is_empty()
        && let Some(s) = scenario
    {
        return Ok(s);
    }
    v.problems.sort_by_key(|p| (p.line, p.column));
    Err(fail(v.problems))
}

// ---- the YAML tree, with places ----

#[derive(Debug)]
struct Node {
    value: Value,
    line: usize,
    column: usize,
}

#[derive(Debug)]
enum Value {
    Scalar(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self.value {
            Value::Scalar(_) => "a value",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

fn tree(text: &str) -> Result<Node, Problem> {
    enum Open {
        Seq(Vec<Node>, usize, usize),
        Map(Vec<(Node, Node)>, Option<Node>, usize, usize),
    }
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Open> = Vec::new();
    let mut root = None;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| Problem {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: format!("not valid YAML: {}", e.info()),
        })?;
        let (line, column) = (span.start.line(), span.start.col() + 1);
        let done = match event {
            Event::StreamEnd => break,
            Event::Alias(_) => {
                return Err(Problem {
                    line,
                    column,
                    message: "anchors and aliases are not supported here".into(),
                });
            }
            Event::Scalar(s, ..) => Some(Node {
                value: Value::Scalar(s.into_owned()),
                line,
                column,
            }),
            Event::SequenceStart(..) => {
                stack.push(Open::Seq(Vec::new(), line, column));
                None
            }
            Event::MappingStart(..) => {
                stack.push(Open::Map(Vec::new(), None, line, column));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Open::Seq(items, line, column)) => Some(Node {
                    value: Value::Seq(items),
                    line,
                    column,
                }),
                Some(Open::Map(items, _, line, column)) => Some(Node {
                    value: Value::Map(items),
                    line,
                    column,
                }),
                None => None,
            },
            _ => None,
        };
        let Some(node) = done else { continue };
        match stack.last_mut() {
            Some(Open::Seq(items, ..)) => items.push(node),
            Some(Open::Map(items, key, ..)) => match key.take() {
                Some(k) => items.push((k, node)),
                None => *key = Some(node),
            },
            None => {
                if root.is_none() {
                    root = Some(node);
                }
            }
        }
    }
    root.ok_or(Problem {
        line: 1,
        column: 1,
        message: "the file is empty: it needs `users:`".into(),
    })
}

// ---- validation ----

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

/// The keys a mapping may have.
const TOP_KEYS: [&str; 3] = ["base", "think", "users"];
const USER_KEYS: [&str; 3] = ["weight", "think", "steps"];
const STEP_KEYS: [&str; 8] = [
    "name", "method", "url", "headers", "body", "expect", "capture", "think",
];

impl Validator {
    fn at(&mut self, n: &Node, message: impl Into<String>) {
        self.problems.push(Problem {
            line: n.line,
            column: n.column,
            message: message.into(),
        });
    }

    /// The entries of a mapping, reporting keys not in `allowed` (and duplicates).
    fn map<'n>(
        &mut self,
        n: &'n Node,
        what: &str,
        allowed: Option<&[&str]>,
    ) -> Vec<(&'n str, &'n Node, &'n Node)> {
        let Value::Map(items) = &n.value else {
            self.at(n, format!("{what}: expected a mapping, found {}", n.kind()));
            return Vec::new();
        };
        let mut out: Vec<(&str, &Node, &Node)> = Vec::new();
        for (k, v) in items {
            let Value::Scalar(key) = &k.value else {
                self.at(k, format!("{what}: a key must be a plain value"));
                continue;
            };
            if out.iter().any(|(seen, ..)| seen == key) {
                self.at(k, format!("{what}: `{key}` is given twice"));
                continue;
            }
            if let Some(allowed) = allowed
                && !allowed.contains(&key.as_str())
            {
                self.at(
                    k,
                    format!(
                        "{what}: unknown field `{key}` (expected one of: {})",
                        allowed.join(", ")
                    ),
                );
                continue;
            }
            out.push((key, k, v));
        }
        out
    }

    fn scalar<'n>(&mut self, n: &'n Node, what: &str) -> Option<&'n str> {
        match &n.value {
            Value::Scalar(s) => Some(s),
            _ => {
                self.at(n, format!("{what}: expected a value, found {}", n.kind()));
                None
            }
        }
    }

    fn think(&mut self, n: &Node, what: &str) -> Option<Think> {
        let s = self.scalar(n, what)?;
        let (a, b) = s.split_once("..").unwrap_or((s, s));
        let parse = |t: &str| parse_duration(t);
        match (parse(a), parse(b)) {
            (Ok(min), Ok(max)) if min <= max => Some(Think { min, max }),
            (Ok(_), Ok(_)) => {
                self.at(n, format!("{what}: `{s}`: the first bound is the larger"));
                None
            }
            (Err(e), _) | (_, Err(e)) => {
                self.at(
                    n,
                    format!("{what}: {e}; give a time (1s) or a range (500ms..2s)"),
                );
                None
            }
        }
    }

    fn scenario(&mut self, file: &str, root: &Node, base_arg: Option<&str>) -> Option<Scenario> {
        let top = self.map(root, "the file", Some(&TOP_KEYS));
        let mut base = None;
        let mut think = Think::default();
        let mut users_node = None;
        for (key, _, v) in &top {
            match *key {
                "base" => {
                    if let Some(s) = self.scalar(v, "base") {
                        match origin_of(s) {
                            Ok((origin, rest)) if rest.is_empty() || rest == "/" => {
                                base = Some(origin);
                            }
                            Ok(_) => self.at(
                                v,
                                "base: give only scheme, host and port (paths go in each step's url)",
                            ),
                            Err(e) => self.at(v, format!("base: {e}")),
                        }
                    }
                }
                "think" => think = self.think(v, "think").unwrap_or_default(),
                _ => users_node = Some(*v),
            }
        }
        if let Some(b) = base_arg {
            match origin_of(b) {
                Ok((origin, _)) => base = Some(origin),
                Err(e) => self.at(root, format!("URL (the base for relative urls): {e}")),
            }
        }
        let Some(users_node) = users_node else {
            self.at(root, "the file needs `users:`, a mapping of user types");
            return None;
        };
        let mut scenario = Scenario {
            file: file.to_owned(),
            users: Vec::new(),
            steps: Vec::new(),
        };
        let users = self.map(users_node, "users", None);
        if users.is_empty() && matches!(users_node.value, Value::Map(_)) {
            self.at(users_node, "users: give at least one user type");
        }
        for (name, _, u) in users {
            let index = scenario.users.len();
            let user = self.user(name, u, think, base.as_deref(), index, &mut scenario.steps);
            scenario.users.push(user);
        }
        Some(scenario)
    }

    fn user(
        &mut self,
        name: &str,
        n: &Node,
        think: Think,
        base: Option<&str>,
        index: usize,
        steps: &mut Vec<Step>,
    ) -> UserType {
        let what = format!("users.{name}");
        let mut weight = 1;
        let mut think = think;
        let mut steps_node = None;
        for (key, _, v) in self.map(n, &what, Some(&USER_KEYS)) {
            match key {
                "weight" => {
                    if let Some(s) = self.scalar(v, &format!("{what}.weight")) {
                        match s.parse::<u32>() {
                            Ok(w) if w > 0 => weight = w,
                            _ => self.at(
                                v,
                                format!("{what}.weight: `{s}` is not a whole number of 1 or more"),
                            ),
                        }
                    }
                }
                "think" => {
                    if let Some(t) = self.think(v, &format!("{what}.think")) {
                        think = t;
                    }
                }
                _ => steps_node = Some(v),
            }
        }
        let mut vars: Vec<String> = BUILTINS.iter().map(|s| (*s).to_owned()).collect();
        let first = steps.len();
        match steps_node.map(|s| &s.value) {
            Some(Value::Seq(items)) if !items.is_empty() => {
                for (i, s) in items.iter().enumerate() {
                    let sw = format!("{what}.steps[{i}]");
                    if let Some(step) = self.step(&sw, s, index, think, base, &mut vars) {
                        if steps[first..].iter().any(|o| o.name == step.name) {
                            self.at(
                                s,
                                format!(
                                    "{sw}: another step of `{name}` is named `{}`; give each a `name:`",
                                    step.name
                                ),
                            );
                        }
                        steps.push(step);
                    }
                }
            }
            Some(_) => self.at(
                steps_node.unwrap_or(n),
                format!("{what}.steps: give a list of at least one step"),
            ),
            None => self.at(n, format!("{what}: needs `steps:`")),
        }
        UserType {
            name: name.to_owned(),
            weight,
            steps: first..steps.len(),
            vars,
        }
    }

    fn step(
        &mut self,
        what: &str,
        n: &Node,
        user: usize,
        think: Think,
        base: Option<&str>,
        vars: &mut Vec<String>,
    ) -> Option<Step> {
        let fields = self.map(n, what, Some(&STEP_KEYS));
        if !matches!(n.value, Value::Map(_)) {
            return None;
        }
        let get = |k: &str| fields.iter().find(|(key, ..)| *key == k).map(|f| f.2);
        // Every field is checked even when one is wrong, so that one run shows every
        // problem; `broken` drops the step at the end.
        let mut broken = false;
        let method = match get("method") {
            Some(v) => match self.scalar(v, &format!("{what}.method")) {
                Some(s) => match Method::from_bytes(s.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => m,
                    Err(_) => {
                        self.at(v, format!("{what}.method: `{s}` is not an HTTP method"));
                        broken = true;
                        Method::GET
                    }
                },
                None => {
                    broken = true;
                    Method::GET
                }
            },
            None => Method::GET,
        };
        let url_node = get("url");
        if url_node.is_none() {
            self.at(n, format!("{what}: needs `url:`"));
        }
        let url = url_node.and_then(|u| self.scalar(u, &format!("{what}.url")));
        let located = match (url, url_node) {
            (Some(url), Some(url_node)) if url.starts_with('/') => match base {
                Some(b) => Some((b.to_owned(), url, url_node)),
                None => {
                    self.at(
                        url_node,
                        format!(
                            "{what}.url: `{url}` is a path: set `base:` in the file or give the base URL on the command line"
                        ),
                    );
                    None
                }
            },
            (Some(url), Some(url_node)) => match origin_of(url) {
                Ok((o, rest)) => Some((o, rest, url_node)),
                Err(e) => {
                    self.at(url_node, format!("{what}.url: {e}"));
                    None
                }
            },
            _ => None,
        };
        let path = located.as_ref().and_then(|(_, path, url_node)| {
            let path = if path.is_empty() { "/" } else { path };
            let t = self.template(url_node, &format!("{what}.url"), path, vars)?;
            if let Some(p) = t.literal()
                && p.parse::<http::uri::PathAndQuery>().is_err()
            {
                self.at(url_node, format!("{what}.url: `{p}` is not a valid path"));
                return None;
            }
            Some(t)
        });
        let mut headers = Vec::new();
        if let Some(h) = get("headers") {
            for (k, kn, v) in self.map(h, &format!("{what}.headers"), None) {
                let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
                    self.at(kn, format!("{what}.headers: `{k}` is not a header name"));
                    continue;
                };
                let Some(value) = self.scalar(v, &format!("{what}.headers.{k}")) else {
                    continue;
                };
                let t = self.template(v, &format!("{what}.headers.{k}"), value, vars);
                broken |= t.is_none();
                if let Some(t) = t {
                    if let Some(lit) = t.literal()
                        && HeaderValue::from_str(lit).is_err()
                    {
                        self.at(
                            v,
                            format!(
                                "{what}.headers.{k}: the value has characters a header cannot carry"
                            ),
                        );
                    }
                    headers.push((name, t));
                }
            }
        }
        let body = match get("body") {
            Some(b) => {
                let t = self
                    .scalar(b, &format!("{what}.body"))
                    .and_then(|s| self.template(b, &format!("{what}.body"), s, vars));
                broken |= t.is_none();
                t
            }
            None => None,
        };
        let mut expect = Vec::new();
        if let Some(e) = get("expect") {
            let items: Vec<&Node> = match &e.value {
                Value::Seq(items) => items.iter().collect(),
                _ => vec![e],
            };
            for i in items {
                let Some(s) = self.scalar(i, &format!("{what}.expect")) else {
                    continue;
                };
                match s.parse::<u16>() {
                    Ok(code) if (100..=599).contains(&code) => expect.push(code),
                    _ => self.at(
                        i,
                        format!("{what}.expect: `{s}` is not a status code (100–599)"),
                    ),
                }
            }
        }
        let think = match get("think") {
            Some(t) => self.think(t, &format!("{what}.think")).unwrap_or(think),
            None => think,
        };
        let name = match get("name") {
            Some(v) => self.scalar(v, &format!("{what}.name")).map(str::to_owned),
            None => url.map(|u| format!("{method} {u}")),
        };
        // Captures come last: a step's own captures are for the steps after it.
        let mut captures = Vec::new();
        if let Some(c) = get("capture") {
            for (cname, kn, v) in self.map(c, &format!("{what}.capture"), None) {
                let cw = format!("{what}.capture.{cname}");
                if !is_name(cname) {
                    self.at(
                        kn,
                        format!("{cw}: a name is letters, digits and _, not starting with a digit"),
                    );
                    continue;
                }
                if BUILTINS.contains(&cname) {
                    self.at(
                        kn,
                        format!("{cw}: `{cname}` is built in; pick another name"),
                    );
                    continue;
                }
                let from = self.map(v, &cw, Some(&["json", "regex", "header"]));
                let [(kind, _, source)] = from.as_slice() else {
                    if matches!(v.value, Value::Map(_)) {
                        self.at(
                            v,
                            format!("{cw}: give exactly one of json: /pointer, regex: '…(…)…', header: NAME"),
                        );
                    }
                    continue;
                };
                let Some(s) = self.scalar(source, &format!("{cw}.{kind}")) else {
                    continue;
                };
                let from = match *kind {
                    "json" if s.is_empty() || s.starts_with('/') => CaptureFrom::Json(s.to_owned()),
                    "json" => {
                        self.at(
                            source,
                            format!("{cw}.json: `{s}` is not a JSON pointer; it starts with / (e.g. /token, /items/0/id)"),
                        );
                        continue;
                    }
                    "regex" => match Regex::new(s) {
                        Ok(re) if re.captures_len() == 2 => CaptureFrom::Regex(re),
                        Ok(re) => {
                            self.at(
                                source,
                                format!(
                                    "{cw}.regex: it has {} groups; give exactly one, around the value: 'id=(\\d+)'",
                                    re.captures_len() - 1
                                ),
                            );
                            continue;
                        }
                        Err(e) => {
                            let first = e.to_string();
                            let first = first.lines().last().unwrap_or_default().trim().to_owned();
                            self.at(source, format!("{cw}.regex: not a regex: {first}"));
                            continue;
                        }
                    },
                    _ => match HeaderName::from_bytes(s.as_bytes()) {
                        Ok(h) => CaptureFrom::Header(h),
                        Err(_) => {
                            self.at(source, format!("{cw}.header: `{s}` is not a header name"));
                            continue;
                        }
                    },
                };
                let slot = match vars.iter().position(|v| v == cname) {
                    Some(i) => i,
                    None => {
                        vars.push(cname.to_owned());
                        vars.len() - 1
                    }
                };
                captures.push(Capture {
                    name: cname.to_owned(),
                    slot,
                    from,
                });
            }
        }
        let keep_body = captures
            .iter()
            .any(|c| !matches!(c.from, CaptureFrom::Header(_)));
        let (Some(name), Some(url), Some((origin_url, ..)), Some(path), false) =
            (name, url, located, path, broken)
        else {
            return None;
        };
        Some(Step {
            user,
            name,
            method,
            url: url.to_owned(),
            origin_url,
            origin: 0,
            path,
            headers,
            body,
            expect,
            captures,
            think,
            keep_body,
        })
    }

    /// `text` with `${name}` resolved against the variables defined so far.
    fn template(&mut self, n: &Node, what: &str, text: &str, vars: &[String]) -> Option<Template> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut ok = true;
        while let Some(i) = rest.find("${") {
            if i > 0 {
                parts.push(Part::Text(rest[..i].to_owned()));
            }
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else {
                self.at(n, format!("{what}: `${{` without a closing `}}`"));
                return None;
            };
            let name = &after[..end];
            match vars.iter().position(|v| v == name) {
                Some(slot) => parts.push(Part::Var(slot)),
                None => {
                    ok = false;
                    let known: Vec<&str> = vars.iter().map(String::as_str).collect();
                    self.at(
                        n,
                        format!(
                            "{what}: `${{{name}}}` is not captured by an earlier step of this user (known: {})",
                            known.join(", ")
                        ),
                    );
                }
            }
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        ok.then_some(Template(parts))
    }
}

fn is_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `http://host:port/path?q` → (`http://host:port`, `/path?q`); a URL without a scheme is
/// http, as on the command line. No variables before the path.
fn origin_of(url: &str) -> Result<(String, &str), String> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {
            (s.to_ascii_lowercase(), r)
        }
        Some((s, _)) => return Err(format!("`{url}`: use http:// or https://, not {s}://")),
        None => ("http".to_owned(), url),
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains("${") {
        return Err(format!(
            "`{url}`: variables can stand in the path and query, not in the host"
        ));
    }
    if authority.is_empty() || authority.parse::<http::uri::Authority>().is_err() {
        return Err(format!("`{url}` has no valid host"));
    }
    Ok((format!("{scheme}://{authority}"), path))
}

/// A request body, rendered.
pub fn render_body(step: &Step, vars: &[String]) -> Bytes {
    step.body
        .as_ref()
        .map_or_else(Bytes::new, |b| Bytes::from(b.render(vars)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Scenario {
        parse("f.yaml", text, None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(text: &str) -> String {
        parse("f.yaml", text, None).expect_err(text).to_string()
    }

    const GOOD: &str = "\
base: http://127.0.0.1:8000
think: 10ms
users:
  listener:
    weight: 3
    steps:
      - name: login
        method: post
        url: /login
        headers: { content-type: application/json }
        body: '{\"user\": \"u${user}\"}'
        expect: [200, 201]
        capture:
          token: { json: /token }
          id: { regex: 'id=(\\d+)' }
          etag: { header: ETag }
      - url: /songs/${id}?t=${token}
        headers: { authorization: 'Bearer ${token}', if-none-match: '${etag}' }
        think: 1s..2s
  browser:
    steps:
      - url: http://other:9/
";

    #[test]
    fn a_good_file() {
        let s = ok(GOOD);
        assert_eq!(s.users.len(), 2);
        let l = &s.users[0];
        assert_eq!(
            (l.name.as_str(), l.weight, l.steps.clone()),
            ("listener", 3, 0..2)
        );
        assert_eq!(l.vars, ["user", "flow", "token", "id", "etag"]);
        let login = &s.steps[0];
        assert_eq!(login.method, Method::POST);
        assert_eq!(login.origin_url, "http://127.0.0.1:8000");
        assert!(login.keep_body && login.expected(201) && !login.expected(204));
        let vars: Vec<String> = ["7", "0", "tok", "42", "e1"].map(String::from).to_vec();
        assert_eq!(render_body(login, &vars), "{\"user\": \"u7\"}");
        let second = &s.steps[1];
        assert_eq!(second.name, "GET /songs/${id}?t=${token}");
        assert_eq!(second.path.render(&vars), "/songs/42?t=tok");
        assert_eq!(second.headers[0].1.render(&vars), "Bearer tok");
        assert_eq!(second.think.min, Duration::from_secs(1));
        assert_eq!(
            s.steps[0].think,
            Think {
                min: Duration::from_millis(10),
                max: Duration::from_millis(10)
            }
        );
        assert!(second.expected(302) && !second.expected(404));
        assert_eq!(s.steps[2].origin_url, "http://other:9");
        assert_eq!((s.users[1].weight, s.steps[2].user), (1, 1));
    }

    #[test]
    fn captures_from_json_regex_and_headers() {
        let s = ok(GOOD);
        let c = &s.steps[0].captures;
        let body = br#"{"token": "abc", "n": 5} id=77"#;
        let headers = [(
            HeaderName::from_static("etag"),
            HeaderValue::from_static("\"v1\""),
        )];
        assert_eq!(
            c[0].extract(br#"{"token":"abc"}"#, &headers).as_deref(),
            Some("abc")
        );
        assert_eq!(c[1].extract(body, &headers).as_deref(), Some("77"));
        assert_eq!(c[2].extract(b"", &headers).as_deref(), Some("\"v1\""));
        assert_eq!(c[0].extract(b"not json", &headers), None);
        assert_eq!(c[0].extract(br#"{"token":null}"#, &headers), None);
        assert_eq!(c[1].extract(b"no id", &headers), None);
        assert_eq!(c[2].extract(b"", &[]), None);
        let n = Capture {
            name: "n".into(),
            slot: 0,
            from: CaptureFrom::Json("/a/1".into()),
        };
        assert_eq!(n.extract(br#"{"a":[1, 2.5]}"#, &[]).as_deref(), Some("2.5"));
        let o = Capture {
            from: CaptureFrom::Json("/a".into()),
            ..n
        };
        assert_eq!(
            o.extract(br#"{"a":{"b":true}}"#, &[]).as_deref(),
            Some(r#"{"b":true}"#)
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let e = err("\
users:
  a:
    weight: 0
    steps:
      - url: /x
        methd: GET
      - url: http://h/${nope}
        expect: 999
        capture:
          t: { regex: 'a(b)(c)' }
          u: { json: token }
  b:
    steps: []
");
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(
            lines,
            [
                "f.yaml:3:13: users.a.weight: `0` is not a whole number of 1 or more",
                "f.yaml:5:14: users.a.steps[0].url: `/x` is a path: set `base:` in the file or give the base URL on the command line",
                "f.yaml:6:9: users.a.steps[0]: unknown field `methd` (expected one of: name, method, url, headers, body, expect, capture, think)",
                "f.yaml:7:14: users.a.steps[1].url: `${nope}` is not captured by an earlier step of this user (known: user, flow)",
                "f.yaml:8:17: users.a.steps[1].expect: `999` is not a status code (100–599)",
                "f.yaml:10:23: users.a.steps[1].capture.t.regex: it has 2 groups; give exactly one, around the value: 'id=(\\d+)'",
                "f.yaml:11:22: users.a.steps[1].capture.u.json: `token` is not a JSON pointer; it starts with / (e.g. /token, /items/0/id)",
                "f.yaml:13:12: users.b.steps: give a list of at least one step",
            ],
            "{e}"
        );
    }

    #[test]
    fn a_capture_is_for_later_steps_and_its_own_user() {
        let e = err("\
users:
  a:
    steps:
      - url: http://h/${t}
        capture: { t: { header: x } }
  b:
    steps:
      - url: http://h/?${t}
");
        assert!(
            e.contains("f.yaml:4:14: users.a.steps[0].url: `${t}` is not captured"),
            "{e}"
        );
        assert!(
            e.contains("f.yaml:8:14: users.b.steps[0].url: `${t}`"),
            "{e}"
        );
    }

    #[test]
    fn hosts_schemes_and_yaml_errors() {
        assert!(
            err("users: { a: { steps: [ { url: 'http://${h}/x' } ] } }")
                .contains("not in the host")
        );
        assert!(err("users: { a: { steps: [ { url: 'ftp://h/x' } ] } }").contains("use http://"));
        assert!(
            err("users: [a]").starts_with("f.yaml:1:8: users: expected a mapping, found a list")
        );
        assert!(
            err("users: {a: {steps: [{url: http://h/, url: http://h/}]}}").contains("given twice")
        );
        assert!(err("usrs: {}").starts_with("f.yaml:1:1: the file: unknown field `usrs`"));
        assert!(err("users: {a: {steps: [{url: '/x'}]}}").contains("is a path"));
        assert_eq!(
            err("users:\n  a: [\n"),
            "f.yaml:2:6: not valid YAML: unclosed bracket '['"
        );
        assert!(
            err("users: {a: &x {steps: []}, b: *x}").contains("aliases are not supported"),
            "{}",
            err("users: {a: &x {steps: []}, b: *x}")
        );
        assert!(err("").contains("empty"));
        assert!(err("users: {a: {steps: [{url: http://h/, think: soon}]}}").contains("think"));
        assert!(
            err("users: {a: {steps: [{url: http://h/, name: x}, {url: http://h/y, name: x}]}}")
                .contains("named `x`")
        );
        // The command line's URL is the base.
        let s = parse("f", "users: {a: {steps: [{url: /x}]}}", Some("127.0.0.1:9")).unwrap();
        assert_eq!(s.steps[0].origin_url, "http://127.0.0.1:9");
    }

    #[test]
    fn think_is_fixed_or_a_range() {
        let t = Think {
            min: Duration::from_millis(100),
            max: Duration::from_millis(300),
        };
        assert_eq!(t.at(0.0), Duration::from_millis(100));
        assert_eq!(t.at(0.5), Duration::from_millis(200));
        assert_eq!(Think::default().at(0.7), Duration::ZERO);
    }
}
