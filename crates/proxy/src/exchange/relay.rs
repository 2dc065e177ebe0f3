//! Carrying a request as the relay does ([`RelayExchange`]): its bytes, head and body,
//! written whole to a pooled or new connection (`Upstreams::checkout_socket`), and the
//! replica's response head parsed from what comes back (`crate::relay::wire`); the body is
//! left on the connection for the relay to copy. The body is in hand, so every try can have
//! it — within the shared replay rule (`crate::pipeline::replay_limit`), as on hyper's path.
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use shoal_balance::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::relay::wire::{self, ResponseHead};
use crate::relay::{HEAD_CHUNK, make_room};
use crate::tries::{Exchange, TryError};
use crate::upstream::Upstreams;

/// A request as the relay sends it: its bytes, ready to write to any replica.
pub(crate) struct RelayExchange {
    /// `None` once moved into the only try that may see it.
    request: Option<Bytes>,
    /// A later try may have a copy (`crate::pipeline::replay_limit`).
    replayable: bool,
    idempotent: bool,
    head_request: bool,
}

impl RelayExchange {
    /// `request`, head and body as written; `body_len`: its body's length, kept for a later
    /// try only within `replay_limit`. `idempotent`: the request may reach a replica twice;
    /// `head_request`: it is a HEAD (the response has no body whatever its head says).
    pub(crate) fn new(
        request: Bytes,
        body_len: usize,
        replay_limit: Option<u64>,
        idempotent: bool,
        head_request: bool,
    ) -> RelayExchange {
        RelayExchange {
            request: Some(request),
            replayable: replay_limit.is_some_and(|limit| body_len as u64 <= limit),
            idempotent,
            head_request,
        }
    }
}

/// A replica's response head, with the connection and the bytes read so far.
pub(crate) struct RelayResponse {
    pub(crate) upstream: TcpStream,
    /// The head, and whatever of the body came with it.
    pub(crate) buf: BytesMut,
    pub(crate) head: ResponseHead,
}

impl Exchange for RelayExchange {
    type Request = Bytes;
    type Response = RelayResponse;

    fn next_request(&mut self, keep_copy: bool) -> Option<Bytes> {
        if keep_copy && self.replayable {
            self.request.clone()
        } else {
            self.request.take()
        }
    }

    fn replayable(&self) -> bool {
        self.replayable
    }

    fn status(response: &RelayResponse) -> u16 {
        response.head.status
    }

    fn send(
        &self,
        upstreams: Arc<Upstreams>,
        backend: Arc<Backend>,
        req: Bytes,
    ) -> impl Future<Output = Result<RelayResponse, TryError<Bytes>>> + Send + 'static {
        relay_try(upstreams, backend, req, self.idempotent, self.head_request)
    }
}

/// One try: write the request, read the response head.
async fn relay_try(
    upstreams: Arc<Upstreams>,
    backend: Arc<Backend>,
    req: Bytes,
    idempotent: bool,
    head_request: bool,
) -> Result<RelayResponse, TryError<Bytes>> {
    let (mut upstream, pooled) = match upstreams.checkout_socket(backend.addr()).await {
        Ok(pair) => pair,
        Err(e) => return Err(TryError::Connect(e, req)),
    };
    if let Err(e) = upstream.write_all(&req).await {
        // A pooled connection the replica had closed: the request did not get through.
        return Err(if pooled {
            TryError::Unsent(req)
        } else {
            TryError::Sent(Box::new(e))
        });
    }
    let mut buf = BytesMut::with_capacity(HEAD_CHUNK);
    loop {
        make_room(&mut buf, HEAD_CHUNK);
        let read = upstream.read_buf(&mut buf).await;
        match read {
            Ok(n) if n > 0 => {}
            // A pooled connection closed as our request arrived (the replica's idle timeout
            // raced us): nothing was answered. Safe to send again where a repeat is.
            _ if pooled && buf.is_empty() && idempotent => return Err(TryError::Unsent(req)),
            Ok(_) => {
                return Err(TryError::Sent(
                    "the replica closed the connection before responding".into(),
                ));
            }
            Err(e) => return Err(TryError::Sent(Box::new(e))),
        }
        loop {
            match wire::parse_response(&buf, head_request) {
                Ok(None) => break,
                Err(e) => return Err(TryError::Sent(e.into())),
                Ok(Some(head)) if head.status == 101 => {
                    return Err(TryError::Sent(
                        "the replica switched protocols on a request that did not ask to".into(),
                    ));
                }
                // Interim responses (100 Continue, 103 Early Hints) are dropped, as hyper's
                // client does; the final response follows.
                Ok(Some(head)) if head.status < 200 => buf.advance(head.len),
                Ok(Some(head)) => {
                    return Ok(RelayResponse {
                        upstream,
                        buf,
                        head,
                    });
                }
            }
        }
    }
}
