//! `shoal k8s render --explain`: which stack-file field became which Kubernetes object and
//! field, what was not carried over, and what will probably not work as written.
use std::fmt::Write as _;

/// The explanation of one render.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Explain {
    /// One section per service, then the gateway's.
    pub sections: Vec<Section>,
    /// Stack-file settings with no Kubernetes counterpart in this render, and why.
    pub not_carried: Vec<String>,
    /// Settings that will probably not work as written on a cluster.
    pub warnings: Vec<String>,
}

/// What one part of the stack file became.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    /// E.g. "service `users`".
    pub title: String,
    /// `(shoal field, Kubernetes object and field)`.
    pub rows: Vec<(String, String)>,
    /// Free-form remarks about this section.
    pub notes: Vec<String>,
}

impl Section {
    pub(crate) fn new(title: impl Into<String>) -> Section {
        Section {
            title: title.into(),
            ..Section::default()
        }
    }

    pub(crate) fn row(&mut self, shoal: impl Into<String>, kubernetes: impl Into<String>) {
        self.rows.push((shoal.into(), kubernetes.into()));
    }

    pub(crate) fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }
}

impl Explain {
    /// The explanation as text for a terminal: a two-column table per section.
    pub fn to_text(&self, header: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{header}");
        for s in &self.sections {
            let _ = writeln!(out, "\n{}", s.title);
            let width = s
                .rows
                .iter()
                .map(|(k, _)| k.chars().count())
                .max()
                .unwrap_or(0);
            for (k, v) in &s.rows {
                let pad = width - k.chars().count();
                let _ = writeln!(out, "  {k}{:pad$}  → {v}", "");
            }
            for n in &s.notes {
                let _ = writeln!(out, "  note: {n}");
            }
        }
        if !self.not_carried.is_empty() {
            let _ = writeln!(out, "\nnot carried over");
            for n in &self.not_carried {
                let _ = writeln!(out, "  - {n}");
            }
        }
        if !self.warnings.is_empty() {
            let _ = writeln!(out, "\nwarnings");
            for w in &self.warnings {
                let _ = writeln!(out, "  - {w}");
            }
        }
        out
    }

    pub(crate) fn not_carried(&mut self, text: impl Into<String>) {
        let text = text.into();
        if !self.not_carried.contains(&text) {
            self.not_carried.push(text);
        }
    }

    pub(crate) fn warn(&mut self, text: impl Into<String>) {
        self.warnings.push(text.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_aligned_and_lists_follow() {
        let mut s = Section::new("service `a`");
        s.row("image", "Deployment a: image");
        s.row("replicas: 2", "Deployment a: spec.replicas 2");
        s.note("hello");
        let mut e = Explain {
            sections: vec![s],
            ..Explain::default()
        };
        e.not_carried("restart");
        e.not_carried("restart");
        e.warn("careful");
        assert_eq!(
            e.to_text("head"),
            "head\n\nservice `a`\n  image        → Deployment a: image\n  replicas: 2  → Deployment a: spec.replicas 2\n  note: hello\n\nnot carried over\n  - restart\n\nwarnings\n  - careful\n"
        );
    }
}
