//! Diagnostics: every problem in a stack file, with where it is and what was expected.
use std::fmt;

/// One problem in a stack file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// File name as given by the user (or `<demo>` for the built-in stack).
    pub file: String,
    /// 1-based line; 0 when the problem is not tied to a place (e.g. unreadable file).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted path of the field, e.g. `routes[0].service`; empty for the whole file.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
    /// A suggestion, e.g. "did you mean `replicas`?".
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        } else {
            write!(f, "{}: ", self.file)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// All problems found in a stack file (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "error: {d}")?;
        }
        Ok(())
    }
}

impl Diagnostics {
    /// The problems, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
}

/// The nearest name in `candidates` to `given`, if it is close enough to be a likely typo.
pub fn nearest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let given_lower = given.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&given_lower, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "did you mean `x`?" for the nearest candidate.
pub(crate) fn did_you_mean<'a>(
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    nearest(given, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["replicas", "servers", "command", "health"];
        assert_eq!(nearest("replcas", names), Some("replicas"));
        assert_eq!(nearest("Servers", names), Some("servers"));
        assert_eq!(nearest("banana", names), None);
    }

    #[test]
    fn displays_file_line_column_field_and_hint() {
        let d = Diagnostic {
            file: "shoal.yaml".into(),
            line: 4,
            column: 7,
            field: "services.users".into(),
            message: "unknown field `replcas`".into(),
            hint: Some("did you mean `replicas`?".into()),
        };
        assert_eq!(
            d.to_string(),
            "shoal.yaml:4:7: services.users: unknown field `replcas`; did you mean `replicas`?"
        );
    }
}
