//! Reading YAML into the raw serde types, and turning what goes wrong into a [`Diagnostic`].
//!
//! serde-saphyr parses (YAML 1.2; `yes`/`no` are strings, not booleans, as before) and
//! reports structured errors that carry their line and column; serde_path_to_error tracks the
//! field path (`services.web`) on the way down. The message wording is serde's own ("unknown
//! field `x`, expected one of `a`, `b`"), built from the error's parts rather than scraped
//! from its text, so the "did you mean" hint comes from the expected names themselves.
use serde::de::DeserializeOwned;
use serde_path_to_error::{Path, Segment};
use serde_saphyr::{DuplicateKeyPolicy, Error, MergeKeyPolicy, Options};

use crate::error::{Diagnostic, did_you_mean};
use crate::locate::Locations;

/// Deserialize `source` into `T`; on failure, the first problem with its place and field.
pub(crate) fn from_str<T: DeserializeOwned>(source: &str, file: &str) -> Result<T, Diagnostic> {
    // A document with no node (comments, `---` alone) is an empty mapping, as it was.
    let blank = source.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    });
    let source = if blank { "{}" } else { source };
    let mut path = None;
    let result = serde_saphyr::with_deserializer_from_str_with_options(source, options(), |d| {
        serde_path_to_error::deserialize(d).map_err(|e| {
            path = Some(e.path().clone());
            e.into_inner()
        })
    });
    result.map_err(|e| diagnostic(&e, path.as_ref(), source, file))
}

fn options() -> Options {
    let mut options = Options::default();
    // `on`, `yes`, `n` are strings in YAML 1.2; a boolean field wants `true` or `false`.
    options.strict_booleans = true;
    // A key written twice is a mistake, not "the last one wins": serde_yaml already refused a
    // repeated field, and now a repeated service or middleware name is refused too.
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    // `<<` is an ordinary key (YAML 1.2), so a merge is reported as the unknown field it is.
    options.merge_keys = MergeKeyPolicy::AsOrdinary;
    // The diagnostic carries the place; no source excerpt inside the message.
    options.with_snippet = false;
    options
}

fn diagnostic(e: &Error, path: Option<&Path>, source: &str, file: &str) -> Diagnostic {
    let e = e.without_snippet();
    let segments: Vec<&Segment> = path.map(|p| p.iter().collect()).unwrap_or_default();
    // serde-saphyr places a scalar's error on the scalar, a key's on the key, but a wrong
    // mapping or sequence (or a field missing from one) where it noticed: at its end. Those
    // point at the value the field path names, as the validator's own errors do.
    let at_value = !segments.is_empty()
        && matches!(
            e,
            Error::SerdeMissingField { .. }
                | Error::SerdeInvalidType { .. }
                | Error::SerdeInvalidValue { .. }
                | Error::SerdeInvalidLength { .. }
                | Error::Message { .. }
        );
    let (line, column) = if at_value {
        let place = Locations::index(source).value(&path_text(&segments));
        (place.line, place.column)
    } else {
        e.location()
            .map_or((0, 0), |l| (l.line() as usize, l.column() as usize))
    };
    // serde names the field the error is about; an unknown or repeated key belongs to the
    // mapping it was found in.
    let (parent, message, hint) = match e {
        Error::SerdeUnknownField {
            field, expected, ..
        } => (
            parent(&segments),
            format!("unknown field `{field}`, {}", one_of(expected, "fields")),
            did_you_mean(field, expected.iter().copied()),
        ),
        Error::SerdeUnknownVariant {
            variant, expected, ..
        } => (
            &segments[..],
            format!(
                "unknown variant `{variant}`, {}",
                one_of(expected, "variants")
            ),
            did_you_mean(variant, expected.iter().copied()),
        ),
        Error::DuplicateMappingKey { key, .. } => (
            parent(&segments),
            match key {
                Some(k) => format!("duplicate key `{k}`"),
                None => "duplicate key".to_owned(),
            },
            None,
        ),
        Error::SerdeMissingField { field, .. } => {
            (&segments[..], format!("missing field `{field}`"), None)
        }
        Error::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => (
            &segments[..],
            format!("invalid type: {unexpected}, expected {expected}"),
            None,
        ),
        Error::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => (
            &segments[..],
            format!("invalid value: {unexpected}, expected {expected}"),
            None,
        ),
        Error::InvalidScalar { ty, .. } => {
            let text = e
                .location()
                .and_then(|l| scalar_at(source, l.line() as usize, l.column() as usize));
            let message = match text {
                Some(text) => format!("invalid type: {}, expected {ty}", unexpected(&text)),
                None => format!("invalid {ty}"),
            };
            (&segments[..], message, None)
        }
        Error::InvalidBooleanStrict { .. } => {
            let text = e
                .location()
                .and_then(|l| scalar_at(source, l.line() as usize, l.column() as usize));
            let message = match text {
                Some(text) => format!("invalid type: {}, expected a boolean", unexpected(&text)),
                None => "expected `true` or `false`".to_owned(),
            };
            (&segments[..], message, None)
        }
        Error::SerdeInvalidLength { len, expected, .. } => (
            &segments[..],
            format!("invalid length {len}, expected {expected}"),
            None,
        ),
        // A collection where a scalar or the other kind of collection belongs: serde-saphyr
        // names what it expected, the node found is read at the place.
        Error::Unexpected { expected, .. } => {
            let expected = match *expected {
                "mapping start" => "a map",
                "sequence start" => "a sequence",
                // The target type (`u32`, `bool`) is not known at this point.
                "string scalar" | "scalar" => "a single value",
                other => other,
            };
            let found = e
                .location()
                .and_then(|l| node_at(source, l.line() as usize, l.column() as usize));
            let message = match found {
                Some(found) => format!("invalid type: {found}, expected {expected}"),
                None => format!("expected {expected}"),
            };
            (&segments[..], message, None)
        }
        Error::Message { msg, .. } => (&segments[..], msg.clone(), None),
        other => (&segments[..], other.to_string(), None),
    };
    Diagnostic {
        file: file.to_owned(),
        line,
        column,
        field: path_text(parent),
        message: strip_location(message),
        hint,
    }
}

/// The segments of the mapping holding the last one.
fn parent<'a, 'b>(segments: &'a [&'b Segment]) -> &'a [&'b Segment] {
    &segments[..segments.len().saturating_sub(1)]
}

/// serde's wording for the names it expected.
fn one_of(names: &[&str], what: &str) -> String {
    match names {
        [] => format!("there are no {what}"),
        [one] => format!("expected `{one}`"),
        [a, b] => format!("expected `{a}` or `{b}`"),
        _ => {
            let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!("expected one of {}", list.join(", "))
        }
    }
}

/// `routes[0].service`; empty for the whole document.
fn path_text(segments: &[&Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// serde's description of a scalar that is not the type expected: `integer `-1``,
/// `floating point `0.5``, or `string "two"`.
fn unexpected(text: &str) -> String {
    if matches!(text, "~" | "null" | "Null" | "NULL") {
        "unit value".to_owned()
    } else if matches!(text, "true" | "false") {
        format!("boolean `{text}`")
    } else if text.parse::<i128>().is_ok() {
        format!("integer `{text}`")
    } else if text.parse::<f64>().is_ok() && text.contains(['.', 'e', 'E']) {
        format!("floating point `{text}`")
    } else {
        format!("string {text:?}")
    }
}

/// The text of line `line` from column `column` (1-based, in characters) to its end,
/// without a carriage return.
fn rest_of_line(source: &str, line: usize, column: usize) -> Option<String> {
    let text: String = source
        .split('\n')
        .nth(line.checked_sub(1)?)?
        .chars()
        .skip(column.checked_sub(1)?)
        .collect();
    Some(text.trim_end_matches('\r').to_owned())
}

/// serde's name for the node starting at `line`:`column`: `sequence`, `map`, or the scalar.
fn node_at(source: &str, line: usize, column: usize) -> Option<String> {
    let rest = rest_of_line(source, line, column)?;
    let rest = rest.as_str();
    if rest.starts_with('[') || rest == "-" || rest.starts_with("- ") {
        return Some("sequence".to_owned());
    }
    if rest.starts_with('{') {
        return Some("map".to_owned());
    }
    let scalar = scalar_at(source, line, column)?;
    // A block mapping starts with its first key: `key:` then a space or the line's end.
    let after = rest
        .trim_start_matches(['"', '\''])
        .get(scalar.len()..)
        .unwrap_or("");
    let after = after.trim_start_matches(['"', '\'']).trim_start();
    if after == ":" || after.starts_with(": ") {
        return Some("map".to_owned());
    }
    Some(unexpected(&scalar))
}

/// The plain or quoted scalar starting at `line`:`column` (1-based), unquoted.
fn scalar_at(source: &str, line: usize, column: usize) -> Option<String> {
    let rest = rest_of_line(source, line, column)?;
    let rest = rest.as_str();
    let text = match rest.chars().next()? {
        q @ ('"' | '\'') => rest[1..].split(q).next()?.to_owned(),
        _ => {
            let key_end = rest
                .find(": ")
                .or(rest.ends_with(':').then(|| rest.len() - 1));
            let end = rest
                .find(" #")
                .into_iter()
                .chain(key_end)
                .chain(rest.find([',', ']', '}']))
                .min()
                .unwrap_or(rest.len());
            rest[..end].trim().to_owned()
        }
    };
    (!text.is_empty()).then_some(text)
}

/// Messages from a visitor or the parser may end with "at line L, column C": the diagnostic
/// says where already.
fn strip_location(mut message: String) -> String {
    if let Some(i) = message.rfind(" at line ")
        && message[i..].contains("column")
    {
        message.truncate(i);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_wording_for_expected_names() {
        assert_eq!(one_of(&[], "fields"), "there are no fields");
        assert_eq!(one_of(&["a"], "fields"), "expected `a`");
        assert_eq!(one_of(&["a", "b"], "fields"), "expected `a` or `b`");
        assert_eq!(
            one_of(&["a", "b", "c"], "fields"),
            "expected one of `a`, `b`, `c`"
        );
    }

    fn error(src: &str) -> String {
        let e = crate::parse(src, "shoal.yaml").unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        e.0[0].to_string()
    }

    const WEB: &str = "services:\n  web:\n    servers: [http://127.0.0.1:9001]\n";

    #[test]
    fn a_boolean_is_true_or_false_only() {
        // YAML 1.1's `yes` is a string in YAML 1.2, as it was with serde_yaml.
        assert_eq!(
            error(&format!("{WEB}    health:\n      tcp: yes\n")),
            "shoal.yaml:5:12: services.web.health.tcp: invalid type: string \"yes\", expected a boolean"
        );
        let s = crate::parse(&format!("{WEB}    health:\n      tcp: true\n"), "f").unwrap();
        assert_eq!(s.services.len(), 1);
    }

    #[test]
    fn a_key_written_twice_is_an_error_at_the_second() {
        assert_eq!(
            error("services:\n  web: {servers: [http://127.0.0.1:1], servers: []}\n"),
            "shoal.yaml:2:40: services.web: duplicate key `servers`"
        );
    }

    #[test]
    fn a_name_written_twice_is_an_error_not_a_silent_replacement() {
        let e = error(&format!(
            "{WEB}  web:\n    servers: [http://127.0.0.1:9002]\n"
        ));
        assert_eq!(e, "shoal.yaml:4:3: services: duplicate key `web`");
    }

    #[test]
    fn a_merge_key_is_an_unknown_field_as_before() {
        let e = error(&format!("{WEB}    <<: {{ replicas: 2 }}\n"));
        assert!(
            e.starts_with("shoal.yaml:4:5: services.web: unknown field `<<`, expected one of"),
            "{e}"
        );
    }

    #[test]
    fn a_wrong_collection_points_at_the_value_not_its_end() {
        assert_eq!(
            error(&format!("{WEB}    replicas: [1, 2]\n")),
            "shoal.yaml:4:15: services.web.replicas: invalid type: sequence, expected a single value"
        );
    }

    #[test]
    fn a_section_of_the_wrong_kind_names_both() {
        assert_eq!(
            error("services: [web]\n"),
            "shoal.yaml:1:11: services: invalid type: sequence, expected a map"
        );
        assert_eq!(
            error("routes:\n  match: x\n"),
            "shoal.yaml:2:3: routes: invalid type: map, expected a sequence"
        );
        assert_eq!(
            error("services: 5\n"),
            "shoal.yaml:1:11: services: invalid type: integer `5`, expected a map"
        );
    }

    #[test]
    fn a_document_without_nodes_is_an_empty_stack() {
        for src in ["# nothing yet\n", "---\n", "---\n# later\n...\n"] {
            assert_eq!(
                crate::parse(src, "f").map(|s| s.services.len()),
                crate::parse("", "f").map(|s| s.services.len()),
                "{src:?}"
            );
        }
    }

    #[test]
    fn a_syntax_error_has_a_place() {
        let e = error("services:\n  web: [\n");
        assert!(e.starts_with("shoal.yaml:"), "{e}");
        assert!(!e.starts_with("shoal.yaml:0"), "{e}");
    }

    #[test]
    fn scalars_are_described_as_serde_does() {
        assert_eq!(unexpected("-1"), "integer `-1`");
        assert_eq!(unexpected("0.5"), "floating point `0.5`");
        assert_eq!(unexpected("two"), "string \"two\"");
        assert_eq!(unexpected("~"), "unit value");
        assert_eq!(unexpected("true"), "boolean `true`");
        assert_eq!(
            scalar_at("a:\n  b: 'x y' # c\n", 2, 6).as_deref(),
            Some("x y")
        );
        assert_eq!(scalar_at("a: [1, two]\n", 1, 8).as_deref(), Some("two"));
    }
}
