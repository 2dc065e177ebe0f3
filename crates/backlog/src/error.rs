//! Why a read failed.

use std::time::Duration;

/// A failed read. Its text names the source, says what failed, and quotes the broker's own
/// message (e.g. `NOT_FOUND - no queue 'orders' in vhost '/'`); it never contains a
/// password: credentials are not in [`crate::Source`], and a password the broker echoes
/// back is replaced by `***`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BacklogError {
    /// The broker could not be reached or the connection was lost (refused, reset, DNS).
    #[error("{context}: cannot reach the broker: {message}")]
    Unreachable {
        /// The [`crate::Source`] as displayed.
        context: String,
        /// What failed.
        message: String,
    },
    /// No answer within the reader's timeout: the broker hangs or is overloaded.
    #[error("{context}: no answer within {} ms", timeout.as_millis())]
    Timeout {
        /// The [`crate::Source`] as displayed.
        context: String,
        /// The bound that passed.
        timeout: Duration,
    },
    /// The broker refused the credentials, or refused access to the object.
    #[error("{context}: access refused: {message}")]
    Auth {
        /// The [`crate::Source`] as displayed.
        context: String,
        /// The broker's message.
        message: String,
    },
    /// The stream, group, queue, vhost or topic does not exist.
    #[error("{context}: not found: {message}")]
    NotFound {
        /// The [`crate::Source`] as displayed.
        context: String,
        /// The broker's message.
        message: String,
    },
    /// The broker answered with an error this crate does not classify, or with something
    /// that is not the expected reply.
    #[error("{context}: broker error: {message}")]
    Protocol {
        /// The [`crate::Source`] as displayed.
        context: String,
        /// The broker's message, or what was unexpected.
        message: String,
    },
    /// The source asks for something this crate does not do (TLS, SASL, unacked counts
    /// over AMQP); reading again will not help.
    #[error("{context}: not supported: {message}")]
    Unsupported {
        /// The [`crate::Source`] as displayed.
        context: String,
        /// What is not supported, and what to do instead.
        message: String,
    },
    /// The source is malformed (bad URL, password in the URL, empty name); reading again
    /// will not help.
    #[error("{context}: invalid source: {message}")]
    Invalid {
        /// The [`crate::Source`] as displayed.
        context: String,
        /// What is wrong.
        message: String,
    },
}

impl BacklogError {
    /// Whether reading again may succeed (the broker may come back, the object may be
    /// created); `false` for a source that cannot work as configured.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            BacklogError::Unsupported { .. } | BacklogError::Invalid { .. }
        )
    }
}

/// A failure before it is given its context; what the backends return.
#[derive(Debug)]
pub(crate) enum Failure {
    Unreachable(String),
    Timeout(Duration),
    Auth(String),
    NotFound(String),
    Protocol(String),
    Unsupported(String),
    Invalid(String),
}

impl Failure {
    pub(crate) fn into_error(self, context: String, password: Option<&str>) -> BacklogError {
        let redact = |message: String| match password {
            // Short passwords would garble messages; a broker does not echo them anyway.
            Some(password) if password.len() >= 4 && message.contains(password) => {
                message.replace(password, "***")
            }
            _ => message,
        };
        match self {
            Failure::Unreachable(message) => BacklogError::Unreachable {
                context,
                message: redact(message),
            },
            Failure::Timeout(timeout) => BacklogError::Timeout { context, timeout },
            Failure::Auth(message) => BacklogError::Auth {
                context,
                message: redact(message),
            },
            Failure::NotFound(message) => BacklogError::NotFound {
                context,
                message: redact(message),
            },
            Failure::Protocol(message) => BacklogError::Protocol {
                context,
                message: redact(message),
            },
            Failure::Unsupported(message) => BacklogError::Unsupported {
                context,
                message: redact(message),
            },
            Failure::Invalid(message) => BacklogError::Invalid {
                context,
                message: redact(message),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echoed_password_is_redacted() {
        let error = Failure::Auth("user app with password hunter2secret refused".into())
            .into_error("redis h:1 stream s group g".into(), Some("hunter2secret"));
        let text = error.to_string();
        assert_eq!(
            text,
            "redis h:1 stream s group g: access refused: user app with password *** refused"
        );
        assert!(!format!("{error:?}").contains("hunter2secret"));
    }

    #[test]
    fn display_says_what_failed_with_the_brokers_message() {
        let error = Failure::NotFound("NOGROUP No such key 'sales' or consumer group 'agg'".into())
            .into_error("redis 127.0.0.1:6379 stream sales group agg".into(), None);
        assert_eq!(
            error.to_string(),
            "redis 127.0.0.1:6379 stream sales group agg: not found: \
             NOGROUP No such key 'sales' or consumer group 'agg'"
        );
        let timeout = Failure::Timeout(Duration::from_secs(2)).into_error("x".into(), None);
        assert_eq!(timeout.to_string(), "x: no answer within 2000 ms");
        assert!(timeout.is_transient());
        assert!(
            !Failure::Invalid("y".into())
                .into_error("x".into(), None)
                .is_transient()
        );
    }
}
