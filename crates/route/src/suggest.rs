//! "Did you mean" suggestions for misspelt matcher names.

use crate::MATCHERS;

/// Names used by Traefik v2 that were renamed or removed in v3, with a hint.
const V2_NAMES: &[(&str, &str)] = &[
    ("Headers", "`Headers` was renamed `Header` in Traefik v3"),
    (
        "HeadersRegexp",
        "`HeadersRegexp` was renamed `HeaderRegexp` in Traefik v3",
    ),
    (
        "HostHeader",
        "`HostHeader` was removed in Traefik v3; use `Host`",
    ),
];

/// The message for an identifier that is not a matcher name.
pub(crate) fn unknown_matcher(name: &str) -> String {
    if let Some((_, hint)) = V2_NAMES.iter().find(|(old, _)| *old == name) {
        return format!("unknown matcher `{name}`: {hint}");
    }
    match name.to_ascii_lowercase().as_str() {
        "and" => return format!("unknown matcher `{name}`; use `&&` to combine matchers"),
        "or" => return format!("unknown matcher `{name}`; use `||` to combine matchers"),
        "not" => return format!("unknown matcher `{name}`; use `!` to negate a matcher"),
        _ => {}
    }
    match closest(name) {
        Some(best) => format!("unknown matcher `{name}`; did you mean `{best}`?"),
        None => format!(
            "unknown matcher `{name}`; expected one of {}",
            MATCHERS.join(", ")
        ),
    }
}

/// The closest matcher name, if it is close enough to be a plausible typo.
fn closest(name: &str) -> Option<&'static str> {
    // A name differing only in case is always the best guess.
    if let Some(m) = MATCHERS.iter().find(|m| m.eq_ignore_ascii_case(name)) {
        return Some(m);
    }
    let lower = name.to_ascii_lowercase();
    let (best, dist) = MATCHERS
        .iter()
        .map(|m| (*m, osa_distance(&lower, &m.to_ascii_lowercase())))
        .min_by_key(|&(_, d)| d)?;
    // Allow roughly one edit per three characters, at least one, at most three.
    let budget = (best.len() / 3).clamp(1, 3);
    (dist <= budget).then_some(best)
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions),
/// on chars. Inputs are identifiers, so the quadratic table is small.
pub(crate) fn osa_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_basics() {
        assert_eq!(osa_distance("", ""), 0);
        assert_eq!(osa_distance("abc", ""), 3);
        assert_eq!(osa_distance("kitten", "sitting"), 3);
        assert_eq!(osa_distance("ab", "ba"), 1);
        assert_eq!(osa_distance("pathprefx", "pathprefix"), 1);
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest("PathPrefx"), Some("PathPrefix"));
        assert_eq!(closest("host"), Some("Host"));
        assert_eq!(closest("Mehtod"), Some("Method"));
        assert_eq!(closest("ClientIp"), Some("ClientIP"));
        assert_eq!(closest("Headr"), Some("Header"));
        assert_eq!(closest("Banana"), None);
    }

    #[test]
    fn v2_names_and_operators_get_hints() {
        assert!(unknown_matcher("HeadersRegexp").contains("renamed `HeaderRegexp`"));
        assert!(unknown_matcher("AND").contains("use `&&`"));
        assert!(unknown_matcher("Zzz").contains("expected one of Host, HostRegexp"));
    }
}
