//! The two ways a try carries a request to a replica, side by side: each implements
//! `crate::tries::Exchange`, so retries, hedges, passive health and the retry budget are the
//! same code whichever carries it.
//!
//! * [`hyper`]: hyper's client — HTTP/1.1, h2c and h2 over TLS, streamed bodies (kept as
//!   they stream when a later try may need them).
//! * [`relay`]: the relay's bytes — plain HTTP/1.1, the body in hand, the response head
//!   parsed and its body left on the connection for the relay to copy.
//!
//! What a later try can have of the body is one rule for both
//! (`crate::pipeline::replay_limit`: at most `retry.max_replay_body` bytes, and only when a
//! request may be sent again at all).
pub(crate) mod hyper;
pub(crate) mod relay;
