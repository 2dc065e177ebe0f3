//! Traffic splits: a route with `services:` sends each request to one of several services
//! by weight (Traefik's weighted services), for canaries and blue-green deployments.
//!
//! # Which service
//!
//! The choice is deterministic, not random: the weights (divided by their greatest common
//! divisor) are laid out once, in the order smooth weighted round robin (nginx's) picks
//! them, into a *schedule*: 90/10 becomes `0 0 0 0 0 1 0 0 0 0`, 2/1 becomes `0 1 0`. Each
//! request takes the next place in it, from one atomic counter per route. Any `n`
//! consecutive requests therefore land within one of each target's exact share (10,000
//! requests at 90/10: exactly 9,000 and 1,000), and the heavier targets' turns are spread
//! out rather than bunched. A target with weight 0 is never in the schedule.
//!
//! The choice is made once per request, when its route is matched (`Gateway::begin`); the
//! request then goes to that service exactly as a route with `service:` would send it —
//! its balancer, retries, circuit breaker and timeouts. A service with no replica ready
//! answers as it would on its own (503, or held while it wakes from zero): the split does
//! not quietly send the request to another target instead.
//!
//! # Sticky
//!
//! With `sticky`, a request whose cookie names a target with a weight above 0 goes to that
//! target and does not advance the schedule. Any other request is given a target by the
//! schedule, and its response sets the cookie: `NAME=SERVICE; Path=/; HttpOnly;
//! SameSite=Lax`. So a client stays on the version it first got until that version's
//! weight goes to 0 (then it is given another, and a new cookie). The `Cookie` header is
//! read strictly as RFC 6265 §4.2.1 writes it ([`cookie`]).
//!
//! # Live weights
//!
//! The weights in force live behind an `ArcSwap` ([`LiveWeights`]): `Gateway::set_weights`
//! (and the automated canary through it) swaps in a new schedule, which the next request
//! reads; nothing else is rebuilt. A reload keeps a route's live weights while the file's
//! `services:` list (names and weights) for that route is unchanged, and applies the
//! file's when it changed.
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use http::HeaderMap;
use http::header::{self, HeaderValue};

/// Largest weight a target may have (as in the stack file).
pub(crate) const MAX_WEIGHT: u32 = 1000;

/// A route's weights in force, and where the next request goes.
#[derive(Debug)]
pub(crate) struct LiveWeights {
    /// The targets' names and the weights the stack file gave them: a reload whose
    /// weights are the same keeps this state (and so the live weights).
    file: Vec<(String, u32)>,
    current: ArcSwap<Schedule>,
    /// Requests given a target by the schedule so far.
    next: AtomicU64,
}

/// One set of weights, laid out in the order they are picked.
#[derive(Debug)]
struct Schedule {
    weights: Vec<u32>,
    /// Target indexes, one cycle of smooth weighted round robin over the reduced weights.
    order: Vec<u16>,
}

impl Schedule {
    fn new(weights: Vec<u32>) -> Schedule {
        Schedule {
            order: smooth_order(&weights),
            weights,
        }
    }
}

impl LiveWeights {
    /// The weights of `file` (target names and weights, not all 0) in force.
    pub(crate) fn new(file: Vec<(String, u32)>) -> LiveWeights {
        let weights = file.iter().map(|(_, w)| *w).collect();
        LiveWeights {
            current: ArcSwap::from_pointee(Schedule::new(weights)),
            file,
            next: AtomicU64::new(0),
        }
    }

    /// Whether these are the weights the stack file gave as `file`.
    pub(crate) fn matches_file(&self, file: &[(String, u32)]) -> bool {
        self.file == file
    }

    /// The index of the target the next request goes to.
    pub(crate) fn next(&self) -> usize {
        let schedule = self.current.load();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Never empty: the weights are not all 0 (checked by the validator and by `set`).
        let len = schedule.order.len().max(1) as u64;
        schedule
            .order
            .get((n % len) as usize)
            .map_or(0, |&i| usize::from(i))
    }

    /// Whether target `index` has a weight above 0 now.
    pub(crate) fn carries(&self, index: usize) -> bool {
        self.current
            .load()
            .weights
            .get(index)
            .is_some_and(|&w| w > 0)
    }

    /// The targets and their weights in force, in the file's order.
    pub(crate) fn get(&self) -> Vec<(String, u32)> {
        let schedule = self.current.load();
        self.file
            .iter()
            .zip(&schedule.weights)
            .map(|((name, _), w)| (name.clone(), *w))
            .collect()
    }

    /// Change the weights of the targets named in `changes` (the others keep theirs), from
    /// the next request on. `route` names the route in errors. Returns the weights now in
    /// force; an unknown service, a weight over 1000 or all weights 0 changes nothing.
    pub(crate) fn set(
        &self,
        route: &str,
        changes: &[(String, u32)],
    ) -> Result<Vec<(String, u32)>, String> {
        let mut weights = self.current.load().weights.clone();
        for (service, weight) in changes {
            let Some(i) = self.file.iter().position(|(name, _)| name == service) else {
                let names: Vec<&str> = self.file.iter().map(|(n, _)| n.as_str()).collect();
                return Err(format!(
                    "service `{service}` is not in route `{route}`'s split (its services: {})",
                    names.join(", ")
                ));
            };
            if *weight > MAX_WEIGHT {
                return Err(format!(
                    "weight {weight} for service `{service}` is over {MAX_WEIGHT}"
                ));
            }
            weights[i] = *weight;
        }
        if weights.iter().all(|&w| w == 0) {
            return Err(format!(
                "route `{route}` needs a service with a weight above 0 (all would be 0)"
            ));
        }
        self.current
            .store(std::sync::Arc::new(Schedule::new(weights)));
        Ok(self.get())
    }
}

/// One cycle of smooth weighted round robin (nginx's `ngx_http_upstream_get_peer`) over
/// `weights` divided by their greatest common divisor: each step every target gains its
/// weight, the one with the most (the first of equals) is picked and loses the total.
/// Empty if every weight is 0.
fn smooth_order(weights: &[u32]) -> Vec<u16> {
    let divisor = weights.iter().fold(0, |a, &w| gcd(a, w));
    if divisor == 0 {
        return Vec::new();
    }
    let reduced: Vec<i64> = weights.iter().map(|&w| i64::from(w / divisor)).collect();
    let total: i64 = reduced.iter().sum();
    let mut current = vec![0_i64; reduced.len()];
    (0..total)
        .map(|_| {
            let mut best = 0;
            for (i, w) in reduced.iter().enumerate() {
                current[i] += w;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            best as u16
        })
        .collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The `Set-Cookie` value that keeps a client on `service`.
pub(crate) fn set_cookie(cookie: &str, service: &str) -> Option<HeaderValue> {
    HeaderValue::try_from(format!(
        "{cookie}={service}; Path=/; HttpOnly; SameSite=Lax"
    ))
    .ok()
}

/// The value of the first cookie named `name` in the request's `Cookie` header, read as
/// RFC 6265 §4.2.1 writes it: `cookie-pair *( "; " cookie-pair )`, each pair
/// `cookie-name "=" cookie-value`, the name a token, the value cookie-octets, optionally in
/// double quotes (which are not part of it). Several `Cookie` fields (HTTP/2 may split the
/// header, RFC 9113 §8.2.3) are read as one, in order. Names are compared case-sensitively
/// (§5.4 sends them as set). A pair that breaks the grammar is skipped, never guessed at:
/// `a=1;sid=x` (no space) is one pair named `a` with an invalid value, and names nothing.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split_sequence(b"; "))
        .find_map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (key, value) = (&pair[..eq], &pair[eq + 1..]);
            if key != name.as_bytes() || !is_token(key) {
                return None;
            }
            let value = match value {
                [b'"', inner @ .., b'"'] => inner,
                _ => value,
            };
            if !value.iter().all(|&b| is_cookie_octet(b)) {
                return None;
            }
            // Cookie-octets are ASCII.
            std::str::from_utf8(value).ok()
        })
}

/// RFC 9110 §5.6.2 token: one or more tchar.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// RFC 6265 §4.1.1 cookie-octet: US-ASCII visible characters except DQUOTE, comma,
/// semicolon and backslash.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// Splitting a byte string on a separator of more than one byte.
trait SplitSequence {
    fn split_sequence<'a>(&'a self, sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a;
}

impl SplitSequence for [u8] {
    fn split_sequence<'a>(&'a self, sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut rest = Some(self);
        std::iter::from_fn(move || {
            let s = rest?;
            match s.windows(sep.len()).position(|w| w == sep) {
                Some(at) => {
                    rest = Some(&s[at + sep.len()..]);
                    Some(&s[..at])
                }
                None => {
                    rest = None;
                    Some(s)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(weights: &[(&str, u32)]) -> LiveWeights {
        LiveWeights::new(weights.iter().map(|(n, w)| (n.to_string(), *w)).collect())
    }

    fn shares(w: &LiveWeights, n: usize) -> Vec<usize> {
        let mut counts = vec![0; w.get().len()];
        for _ in 0..n {
            counts[w.next()] += 1;
        }
        counts
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_schedule_is_smooth_and_exact() {
        assert_eq!(smooth_order(&[90, 10]), [0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(smooth_order(&[2, 1]), [0, 1, 0]);
        assert_eq!(smooth_order(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_order(&[0, 100]), [1]);
        assert_eq!(smooth_order(&[50, 50]), [0, 1]);
        assert!(smooth_order(&[0, 0]).is_empty());
        assert_eq!(smooth_order(&[999, 1]).len(), 1000);
    }

    #[test]
    fn any_run_of_requests_is_within_one_of_the_exact_share() {
        let w = live(&[("stable", 90), ("canary", 10)]);
        assert_eq!(shares(&w, 10_000), [9000, 1000]);
        let w = live(&[("a", 7), ("b", 3), ("c", 0)]);
        for n in [1, 9, 101, 997] {
            let got = shares(&w, n);
            assert!(got[0].abs_diff(n * 7 / 10) <= 1, "{n}: {got:?}");
            assert_eq!(got[2], 0, "weight 0 gets nothing");
        }
    }

    #[test]
    fn setting_weights_changes_the_next_picks_and_checks_its_input() {
        let w = live(&[("blue", 100), ("green", 0)]);
        assert_eq!(shares(&w, 10), [10, 0]);
        assert_eq!(
            w.set("web", &[("green".into(), 100)]),
            Ok(vec![("blue".into(), 100), ("green".into(), 100)])
        );
        assert_eq!(shares(&w, 10), [5, 5]);
        assert_eq!(
            w.set("web", &[("red".into(), 1)]),
            Err("service `red` is not in route `web`'s split (its services: blue, green)".into())
        );
        assert!(w.set("web", &[("blue".into(), 1001)]).is_err());
        assert_eq!(
            w.set("web", &[("blue".into(), 0), ("green".into(), 0)]),
            Err("route `web` needs a service with a weight above 0 (all would be 0)".into())
        );
        let both = vec![("blue".to_owned(), 100), ("green".to_owned(), 100)];
        assert_eq!(w.get(), both, "unchanged");
        w.set("web", &[("blue".into(), 0)]).unwrap();
        assert!(!w.carries(0) && w.carries(1));
        assert_eq!(shares(&w, 10), [0, 10]);
        assert!(w.matches_file(&[("blue".into(), 100), ("green".into(), 0)]));
    }

    // RFC 6265 §4.2.1: cookie-string = cookie-pair *( ";" SP cookie-pair ).
    #[test]
    fn cookie_pairs_are_separated_by_semicolon_space() {
        let h = headers(&["a=1; sid=api; b=2"]);
        assert_eq!(cookie(&h, "sid"), Some("api"));
        assert_eq!(cookie(&h, "a"), Some("1"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        // No space: one pair `a` whose value holds a `;`, which is not a cookie-octet.
        assert_eq!(cookie(&headers(&["a=1;sid=api"]), "sid"), None);
        assert_eq!(cookie(&headers(&["a=1;sid=api"]), "a"), None);
        // Two spaces: the second pair's name starts with a space, not a token.
        assert_eq!(cookie(&headers(&["a=1;  sid=api"]), "sid"), None);
    }

    // §4.2.1 cookie-pair = cookie-name "=" cookie-value; cookie-name = token.
    #[test]
    fn the_name_is_a_token_before_the_first_equals_sign() {
        assert_eq!(cookie(&headers(&["sid =api"]), "sid"), None);
        assert_eq!(cookie(&headers(&[" sid=api"]), "sid"), None);
        assert_eq!(cookie(&headers(&["sid"]), "sid"), None, "no `=`");
        assert_eq!(cookie(&headers(&["=api"]), ""), None, "empty name");
        assert_eq!(cookie(&headers(&["sid=a=b"]), "sid"), Some("a=b"));
        // Names are compared as sent (§5.4 sends them as they were set).
        assert_eq!(cookie(&headers(&["SID=api"]), "sid"), None);
    }

    // §4.1.1 cookie-value = *cookie-octet / ( DQUOTE *cookie-octet DQUOTE ).
    #[test]
    fn the_value_is_cookie_octets_optionally_quoted() {
        assert_eq!(cookie(&headers(&["sid=\"api\""]), "sid"), Some("api"));
        assert_eq!(cookie(&headers(&["sid="]), "sid"), Some(""));
        assert_eq!(cookie(&headers(&["sid=\"\""]), "sid"), Some(""));
        for bad in [
            "sid=a b",
            "sid=a,b",
            "sid=a\\b",
            "sid=\"api",
            "sid=a\"b",
            "sid=api ",
        ] {
            assert_eq!(cookie(&headers(&[bad]), "sid"), None, "{bad:?}");
        }
    }

    // §5.4: the user agent sends each cookie once per name and path, longest path first;
    // the first pair with the name is the most specific one.
    #[test]
    fn the_first_pair_with_the_name_wins_even_after_a_bad_one() {
        let h = headers(&["sid=api-v2; sid=api"]);
        assert_eq!(cookie(&h, "sid"), Some("api-v2"));
        let h = headers(&["sid=a b; sid=api"]);
        assert_eq!(
            cookie(&h, "sid"),
            Some("api"),
            "a pair that breaks the grammar is skipped"
        );
    }

    // RFC 9113 §8.2.3: an HTTP/2 client may send the cookie-pairs as separate fields.
    #[test]
    fn several_cookie_fields_are_read_in_order() {
        let h = headers(&["a=1", "sid=api", "sid=other"]);
        assert_eq!(cookie(&h, "sid"), Some("api"));
        assert_eq!(cookie(&h, "none"), None);
    }

    #[test]
    fn the_set_cookie_value() {
        assert_eq!(
            set_cookie("shoal_web", "api-v2").unwrap(),
            "shoal_web=api-v2; Path=/; HttpOnly; SameSite=Lax"
        );
    }
}
