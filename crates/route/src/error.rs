//! The one error type of the crate: a message and the byte offset it points at.

/// A parse error with the byte offset (0-based, into the rule source) where it was
/// detected, so the config loader can turn it into file:line:column.
///
/// The offset is always on a `char` boundary and at most `source.len()` (an offset equal
/// to the length means "at the end of the rule").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// Byte offset into the rule source where the problem was detected.
    pub offset: usize,
    /// Human-readable description of what was expected.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> Self {
        Self {
            offset,
            message: message.into(),
        }
    }
}
