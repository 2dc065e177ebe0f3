//! Middlewares that send a request elsewhere: `redirect_scheme`, `redirect_regex` and
//! `replace_path_regex`. A pattern is compiled here (a regex error points at its character
//! in the file), and a replacement may only name groups the pattern has.
use super::Cx;
use crate::error::{Diagnostic, did_you_mean};
use crate::model::*;
use crate::raw::*;
use crate::validate::units::offset_place;

impl Cx<'_> {
    pub(super) fn redirect_scheme(
        &mut self,
        path: &str,
        raw: RawRedirectScheme,
    ) -> Option<Middleware> {
        const SCHEMES: [&str; 2] = ["https", "http"];
        let scheme = match raw.scheme.as_deref().map(str::trim) {
            None => {
                self.misplaced(path, "needs `scheme`: `https` or `http`");
                return None;
            }
            Some(s) if SCHEMES.contains(&s.to_ascii_lowercase().as_str()) => s.to_ascii_lowercase(),
            Some(other) => {
                self.error_hint(
                    &format!("{path}.scheme"),
                    format!("unknown scheme `{other}`; expected `https` or `http`"),
                    did_you_mean(other, SCHEMES),
                );
                return None;
            }
        };
        let port = raw.port.and_then(|p| {
            let t = p.0.trim();
            match t.parse::<u16>() {
                Ok(port) if port > 0 => Some(port),
                _ => {
                    self.error(
                        &format!("{path}.port"),
                        format!("`{t}` is not a port; expected 1 to 65535"),
                    );
                    None
                }
            }
        });
        Some(Middleware::RedirectScheme(RedirectScheme {
            scheme,
            port,
            permanent: raw.permanent.unwrap_or(true),
        }))
    }

    /// `regex` and `replacement` of `redirect_regex` and `replace_path_regex`: the regex
    /// compiles and the replacement names only groups it has.
    pub(super) fn rewrite(
        &mut self,
        path: &str,
        regex: Option<String>,
        replacement: Option<String>,
    ) -> Option<(Pattern, String)> {
        let (Some(source), Some(replacement)) = (regex, replacement) else {
            self.misplaced(path, "needs `regex` and `replacement`");
            return None;
        };
        let pattern = self.pattern(&format!("{path}.regex"), source)?;
        let field = format!("{path}.replacement");
        for group in replacement_groups(&replacement) {
            let exists = match &group {
                Group::Number(n) => *n < pattern.regex.captures_len(),
                Group::Name(name) => pattern.regex.capture_names().any(|c| c == Some(name)),
            };
            if exists {
                continue;
            }
            let groups = pattern.regex.captures_len() - 1;
            let (message, hint) = match &group {
                Group::Number(n) => (
                    format!("`${n}` refers to group {n}, and the regex has {groups} group(s)"),
                    None,
                ),
                Group::Name(name) => {
                    // `$1a` is the group named `1a` (the regex crate's rule, and Go's).
                    let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
                    let hint = (!digits.is_empty()).then(|| {
                        format!(
                            "to follow group {digits} with `{}`, write `${{{digits}}}{}`",
                            &name[digits.len()..],
                            &name[digits.len()..]
                        )
                    });
                    (
                        format!(
                            "`${name}` refers to a group named `{name}`, which the regex does not have"
                        ),
                        hint,
                    )
                }
            };
            self.error_hint(&field, message, hint);
            return None;
        }
        Some((pattern, replacement))
    }

    /// A regular expression (`regex` crate syntax), errors pointing into it where the regex
    /// crate says where.
    fn pattern(&mut self, field: &str, source: String) -> Option<Pattern> {
        match regex::Regex::new(&source) {
            Ok(regex) => Some(Pattern { source, regex }),
            Err(e) => {
                let text = e.to_string();
                let (message, offset) = regex_error(&text, &source);
                let place = self.locs.value(field);
                let (line, column) = match offset {
                    Some(o) => offset_place(&source, o, place),
                    None => (place.line, place.column),
                };
                self.diags.push(Diagnostic {
                    file: self.file.to_owned(),
                    line,
                    column,
                    field: field.to_owned(),
                    message: format!("invalid regular expression: {message}"),
                    hint: None,
                });
                None
            }
        }
    }
}

/// A group a replacement refers to.
#[derive(Debug, PartialEq, Eq)]
enum Group {
    Number(usize),
    Name(String),
}

/// The groups `replacement` refers to, by the regex crate's rules (`Captures::expand`): `$$`
/// is a `$`; `${name}` and `$name` (the longest run of letters, digits and `_`) name a group,
/// by index when all digits; any other `$` is itself.
fn replacement_groups(replacement: &str) -> Vec<Group> {
    let b = replacement.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let group = |name: &str| match name.parse::<usize>() {
        Ok(n) => Group::Number(n),
        Err(_) => Group::Name(name.to_owned()),
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'$') => i += 2,
            Some(b'{') => match replacement[i + 2..].find('}') {
                Some(len) => {
                    out.push(group(&replacement[i + 2..i + 2 + len]));
                    i += 3 + len;
                }
                None => i += 1,
            },
            Some(c) if word(*c) => {
                let len = b[i + 1..].iter().take_while(|c| word(**c)).count();
                out.push(group(&replacement[i + 1..i + 1 + len]));
                i += 1 + len;
            }
            _ => i += 1,
        }
    }
    out
}

/// The regex crate's message for `source`, on one line, and the byte offset in `source`
/// it points at when its caret can be read. Its syntax errors look like
/// `regex parse error:\n    PATTERN\n    ^^^\nerror: MESSAGE`.
fn regex_error(text: &str, source: &str) -> (String, Option<usize>) {
    let lines: Vec<&str> = text.lines().collect();
    let message = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .map_or_else(|| lines.join(" "), str::to_owned);
    let offset = match lines[..] {
        [_, pattern, caret, ..] if pattern.strip_prefix("    ") == Some(source) => caret
            .strip_prefix("    ")
            .and_then(|c| c.find('^'))
            .and_then(|chars| source.char_indices().nth(chars).map(|(b, _)| b)),
        _ => None,
    };
    (message, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_groups_follow_the_regex_crate() {
        use Group::*;
        assert_eq!(
            replacement_groups("/v2/$1/${2}x/$name/${x-y}/$$/$/${"),
            [
                Number(1),
                Number(2),
                Name("name".into()),
                Name("x-y".into())
            ]
        );
        assert_eq!(replacement_groups("$1a"), [Name("1a".into())]);
        // Checked against the regex crate itself: what it expands is what we found.
        let re = regex::Regex::new("(?<name>a)(b)").unwrap();
        let caps = re.captures("ab").unwrap();
        let mut out = String::new();
        caps.expand("$1-${2}-$name-$$-$3-${", &mut out);
        assert_eq!(out, "a-b-a-$--${");
        assert_eq!(
            replacement_groups("$1-${2}-$name-$$-$3-${"),
            [Number(1), Number(2), Name("name".into()), Number(3)]
        );
    }

    #[test]
    fn regex_errors_keep_the_message_and_find_the_caret() {
        let source = String::from("ab(c"); // not a literal: clippy would refuse it
        let e = regex::Regex::new(&source).unwrap_err().to_string();
        let (message, offset) = regex_error(&e, &source);
        assert_eq!(message, "unclosed group");
        assert_eq!(offset, Some(2));
    }
}
