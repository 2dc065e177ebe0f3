//! The body type that flows through the gateway, and small constructors.
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Errors a body can carry (client or upstream I/O, or our own).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every request and response body in the gateway: streamed, never buffered whole.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `text`.
pub fn full(text: impl Into<Bytes>) -> ProxyBody {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Box any body whose errors convert into [`BoxError`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}
