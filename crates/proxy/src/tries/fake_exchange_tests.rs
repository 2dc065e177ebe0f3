//! `Tries` on its own: retries, hedges and the retry budget, with a fake [`Exchange`] whose
//! replicas do what each test scripts, under tokio's paused clock. No socket is opened: a
//! test says what each replica does with a try and reads which replicas were tried, when,
//! and what the client got.
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, Method};
use shoal_balance::{Backend, Down};
use tokio::time::Instant;

use super::{Answer, BalanceKey, Exchange, Outbound, TryError};
use crate::error::ProxyError;
use crate::table::RoutingTable;
use crate::upstream::{ConnectError, Upstreams};

/// What a fake replica does with one try.
#[derive(Debug, Clone, Copy)]
enum Does {
    /// Answers with this status after this long.
    Answer(u16, Duration),
    /// Refuses the connection: nothing was sent.
    Refuse,
    /// Takes the request, then resets the connection before answering.
    Reset,
    /// Its pooled connection had closed before the request was written.
    Unsent,
    /// Provably did not process it (HTTP/2 `REFUSED_STREAM`).
    RefusedStream,
    /// Never answers.
    Hang,
}

fn answers(status: u16) -> Does {
    Does::Answer(status, Duration::ZERO)
}

/// The replicas of the fake service, by backend key: what each does with its tries in turn
/// (the last one again for every later try), and the log of tries.
#[derive(Default)]
struct Replicas {
    script: Mutex<HashMap<String, VecDeque<Does>>>,
    /// Backend key and time since the test's start of every try, in order.
    tried: Mutex<Vec<(String, Duration)>>,
}

impl Replicas {
    fn next(&self, key: &str) -> Does {
        let mut script = self.script.lock().unwrap();
        let steps = script.get_mut(key).expect("a scripted replica");
        if steps.len() > 1 {
            steps.pop_front().unwrap()
        } else {
            steps[0]
        }
    }

    fn tried(&self) -> Vec<String> {
        let tried = self.tried.lock().unwrap();
        tried.iter().map(|(k, _)| k.clone()).collect()
    }

    fn tried_at(&self) -> Vec<Duration> {
        let tried = self.tried.lock().unwrap();
        tried.iter().map(|(_, at)| *at).collect()
    }
}

/// A request carried by the fake: its number, the first try's being 1.
struct FakeExchange {
    replicas: Arc<Replicas>,
    start: Instant,
    /// Whether a later try can have a copy (a body in hand).
    replayable: bool,
    copies_made: u32,
}

impl Exchange for FakeExchange {
    type Request = u32;
    /// The status, and the key of the replica that answered.
    type Response = (u16, String);

    fn next_request(&mut self, _keep_copy: bool) -> Option<u32> {
        if !self.replayable && self.copies_made > 0 {
            return None;
        }
        self.copies_made += 1;
        Some(self.copies_made)
    }

    fn replayable(&self) -> bool {
        self.replayable
    }

    fn status(response: &(u16, String)) -> u16 {
        response.0
    }

    fn send(
        &self,
        _upstreams: Arc<Upstreams>,
        backend: Arc<Backend>,
        req: u32,
    ) -> impl Future<Output = Result<(u16, String), TryError<u32>>> + Send + 'static {
        let key = backend.key().to_owned();
        let replicas = Arc::clone(&self.replicas);
        let since = Instant::now().saturating_duration_since(self.start);
        replicas.tried.lock().unwrap().push((key.clone(), since));
        let does = replicas.next(&key);
        async move {
            match does {
                Does::Answer(status, after) => {
                    tokio::time::sleep(after).await;
                    Ok((status, key))
                }
                Does::Refuse => Err(TryError::Connect(
                    ConnectError::Failed("connection refused".into()),
                    req,
                )),
                Does::Reset => Err(TryError::Sent("connection reset by peer".into())),
                Does::Unsent => Err(TryError::Unsent(req)),
                Does::RefusedStream => Err(TryError::Unprocessed {
                    error: "stream refused".into(),
                    replica_failed: true,
                }),
                Does::Hang => std::future::pending().await,
            }
        }
    }
}

const A: &str = "http://a.test";
const B: &str = "http://b.test";
const C: &str = "http://c.test";

/// A service `api` of three replicas `a`, `b`, `c` (picked in that order), behind one route
/// with the given `retry:` settings, and what its replicas do.
struct Fixture {
    table: RoutingTable,
    replicas: Arc<Replicas>,
    start: Instant,
}

impl Fixture {
    fn new(retry: &str, script: &[(&str, &[Does])]) -> Fixture {
        let yaml = format!(
            "services:\n  api:\n    servers: [{A}, {B}, {C}]\n    health: false\n    \
             retry: {retry}\n    timeouts: {{ response_header: 5s }}\n\
             routes:\n  - match: PathPrefix(`/`)\n    service: api\n"
        );
        let stack = shoal_config::parse(&yaml, "shoal.yaml").unwrap();
        let table = RoutingTable::for_tests(&stack);
        let replicas = Arc::new(Replicas::default());
        {
            let mut steps = replicas.script.lock().unwrap();
            for (key, does) in script {
                steps.insert((*key).to_owned(), does.iter().copied().collect());
            }
        }
        Fixture {
            table,
            replicas,
            start: Instant::now(),
        }
    }

    fn backend(&self, key: &str) -> Arc<Backend> {
        let service = &self.table.routes[0].targets[0].service;
        let backends = service.balancer.backends();
        Arc::clone(backends.iter().find(|b| b.key() == key).unwrap())
    }

    fn counter(&self, which: fn(&crate::health::Counters) -> &std::sync::atomic::AtomicU64) -> u64 {
        let service = &self.table.routes[0].targets[0].service;
        which(&service.health.counters).load(std::sync::atomic::Ordering::Relaxed)
    }

    fn retries(&self) -> u64 {
        self.counter(|c| &c.retries)
    }

    fn hedges(&self) -> u64 {
        self.counter(|c| &c.hedges)
    }

    /// Send one request with `method` (a body in hand unless `replayable` is false).
    async fn send(&self, method: Method, replayable: bool) -> Result<(u16, String), ProxyError> {
        let target = &self.table.routes[0].targets[0];
        // As the gateway does when it lets a request through.
        target.service.budget.record_request(Instant::now());
        let outbound = Outbound::new(&self.table, target, Instant::now());
        let idempotent = super::is_idempotent(&target.retry, &method, &HeaderMap::new());
        let exchange = FakeExchange {
            replicas: Arc::clone(&self.replicas),
            start: self.start,
            replayable,
            copies_made: 0,
        };
        let key = BalanceKey::default();
        outbound
            .run(exchange, idempotent, &key)
            .await
            .map(|Answer { response, .. }| response)
    }

    async fn get(&self) -> Result<(u16, String), ProxyError> {
        self.send(Method::GET, true).await
    }

    async fn post(&self) -> Result<(u16, String), ProxyError> {
        self.send(Method::POST, true).await
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Retries and hedges with a per-try timeout of 100 ms (and the default budget, which a
/// test does not spend: 10 retries a second).
const RETRY: &str = "{ attempts: 3, per_try_timeout: 100ms }";

#[tokio::test(start_paused = true)]
async fn a_refused_connect_goes_to_the_next_replica_for_any_method_without_budget() {
    let f = Fixture::new(
        "{ attempts: 3, budget: { ratio: 0, min_per_sec: 0 } }",
        &[(A, &[Does::Refuse]), (B, &[answers(200)])],
    );
    assert_eq!(f.post().await.unwrap(), (200, B.to_owned()));
    assert_eq!(f.replicas.tried(), [A, B]);
    assert_eq!(f.retries(), 0, "nothing was sent: not a retry");
    assert!(f.backend(A).is_down_for(Down::Ejected), "refused: ejected");
}

#[tokio::test(start_paused = true)]
async fn every_replica_refusing_is_a_502_after_one_try_each() {
    let f = Fixture::new(
        "{ attempts: 2 }",
        &[
            (A, &[Does::Refuse]),
            (B, &[Does::Refuse]),
            (C, &[Does::Refuse]),
        ],
    );
    let e = f.get().await.unwrap_err();
    assert!(matches!(e, ProxyError::Connect { .. }), "{e:?}");
    assert_eq!(
        f.replicas.tried(),
        [A, B, C],
        "attempts do not bound connect failures"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retryable_status_of_an_idempotent_request_goes_to_another_replica() {
    let f = Fixture::new(RETRY, &[(A, &[answers(503)]), (B, &[answers(200)])]);
    assert_eq!(f.get().await.unwrap(), (200, B.to_owned()));
    assert_eq!(f.replicas.tried(), [A, B]);
    assert_eq!(f.retries(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_retryable_status_of_a_post_is_its_answer() {
    let f = Fixture::new(RETRY, &[(A, &[answers(503)]), (B, &[answers(200)])]);
    assert_eq!(f.post().await.unwrap(), (503, A.to_owned()));
    assert_eq!(f.replicas.tried(), [A]);
    assert_eq!(f.retries(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_status_not_in_on_status_is_the_answer() {
    let f = Fixture::new(RETRY, &[(A, &[answers(500)]), (B, &[answers(200)])]);
    assert_eq!(f.get().await.unwrap(), (500, A.to_owned()));
    assert_eq!(f.replicas.tried(), [A]);
}

#[tokio::test(start_paused = true)]
async fn a_body_that_cannot_be_replayed_is_sent_once() {
    let f = Fixture::new(RETRY, &[(A, &[answers(503)]), (B, &[answers(200)])]);
    assert_eq!(
        f.send(Method::GET, false).await.unwrap(),
        (503, A.to_owned())
    );
    assert_eq!(f.replicas.tried(), [A]);
}

#[tokio::test(start_paused = true)]
async fn attempts_bound_the_tries_and_the_last_retryable_answer_is_the_client_s() {
    let f = Fixture::new(
        "{ attempts: 2, per_try_timeout: off }",
        &[
            (A, &[answers(503)]),
            (B, &[answers(502)]),
            (C, &[answers(200)]),
        ],
    );
    assert_eq!(f.get().await.unwrap(), (502, B.to_owned()));
    assert_eq!(f.replicas.tried(), [A, B]);
}

#[tokio::test(start_paused = true)]
async fn a_reset_after_sending_is_retried_for_a_get_and_a_502_for_a_post() {
    let f = Fixture::new(RETRY, &[(A, &[Does::Reset]), (B, &[answers(200)])]);
    assert_eq!(f.get().await.unwrap(), (200, B.to_owned()));
    assert_eq!(f.retries(), 1);

    let f = Fixture::new(RETRY, &[(A, &[Does::Reset]), (B, &[answers(200)])]);
    let e = f.post().await.unwrap_err();
    assert!(matches!(e, ProxyError::Upstream { .. }), "{e:?}");
    assert_eq!(f.replicas.tried(), [A], "a POST may have been processed");
}

#[tokio::test(start_paused = true)]
async fn an_unsent_request_goes_again_to_the_same_replica_without_budget() {
    let f = Fixture::new(
        "{ attempts: 1, budget: { ratio: 0, min_per_sec: 0 } }",
        &[(A, &[Does::Unsent, answers(200)]), (B, &[answers(201)])],
    );
    assert_eq!(f.post().await.unwrap(), (200, A.to_owned()));
    assert_eq!(f.replicas.tried(), [A, A]);
    assert_eq!(f.retries(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_unprocessed_post_is_retried_on_another_replica_from_the_budget() {
    let f = Fixture::new(RETRY, &[(A, &[Does::RefusedStream]), (B, &[answers(200)])]);
    assert_eq!(f.post().await.unwrap(), (200, B.to_owned()));
    assert_eq!(f.retries(), 1);

    let f = Fixture::new(
        "{ attempts: 3, budget: { ratio: 0, min_per_sec: 0 } }",
        &[(A, &[Does::RefusedStream]), (B, &[answers(200)])],
    );
    let e = f.post().await.unwrap_err();
    assert!(matches!(e, ProxyError::Upstream { .. }), "{e:?}");
    assert_eq!(f.replicas.tried(), [A], "no budget, no retry");
}

#[tokio::test(start_paused = true)]
async fn a_slow_try_is_hedged_after_the_per_try_timeout_and_the_first_answer_wins() {
    let f = Fixture::new(
        RETRY,
        &[(A, &[Does::Hang]), (B, &[Does::Answer(200, ms(10))])],
    );
    let sent = Instant::now();
    assert_eq!(f.get().await.unwrap(), (200, B.to_owned()));
    assert_eq!(
        sent.elapsed(),
        ms(110),
        "hedged at 100 ms, answered 10 ms later"
    );
    assert_eq!(f.replicas.tried(), [A, B]);
    assert_eq!(f.replicas.tried_at(), [ms(0), ms(100)]);
    assert_eq!(f.hedges(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_first_try_answering_after_the_hedge_started_still_wins() {
    let f = Fixture::new(
        RETRY,
        &[
            (A, &[Does::Answer(200, ms(120))]),
            (B, &[Does::Answer(200, ms(500))]),
        ],
    );
    let sent = Instant::now();
    assert_eq!(f.get().await.unwrap(), (200, A.to_owned()));
    assert_eq!(sent.elapsed(), ms(120));
    assert_eq!(f.replicas.tried(), [A, B]);
}

#[tokio::test(start_paused = true)]
async fn a_post_is_not_hedged() {
    let f = Fixture::new(
        RETRY,
        &[(A, &[Does::Answer(200, ms(300))]), (B, &[answers(200)])],
    );
    assert_eq!(f.post().await.unwrap(), (200, A.to_owned()));
    assert_eq!(f.replicas.tried(), [A]);
    assert_eq!(f.hedges(), 0);
}

#[tokio::test(start_paused = true)]
async fn hedges_stop_at_attempts_and_the_response_header_timeout_ends_the_wait() {
    let f = Fixture::new(
        "{ attempts: 2, per_try_timeout: 100ms }",
        &[(A, &[Does::Hang]), (B, &[Does::Hang]), (C, &[Does::Hang])],
    );
    let sent = Instant::now();
    let e = f.get().await.unwrap_err();
    assert!(matches!(e, ProxyError::Timeout(_)), "{e:?}");
    assert_eq!(
        sent.elapsed(),
        Duration::from_secs(5),
        "the service's response_header"
    );
    assert_eq!(f.replicas.tried(), [A, B]);
    assert_eq!(f.replicas.tried_at(), [ms(0), ms(100)]);
}

#[tokio::test(start_paused = true)]
async fn without_budget_a_slow_try_is_not_hedged() {
    let f = Fixture::new(
        "{ attempts: 3, per_try_timeout: 100ms, budget: { ratio: 0, min_per_sec: 0 } }",
        &[(A, &[Does::Answer(200, ms(300))]), (B, &[answers(200)])],
    );
    let sent = Instant::now();
    assert_eq!(f.get().await.unwrap(), (200, A.to_owned()));
    assert_eq!(sent.elapsed(), ms(300));
    assert_eq!(f.replicas.tried(), [A]);
    assert_eq!(f.hedges(), 0);
}

/// Half as many retries as requests over the last 10 s, and no floor: whichever request of
/// the service wants a retry gets it only if the service's traffic allows it.
#[tokio::test(start_paused = true)]
async fn the_budget_is_a_share_of_the_service_s_recent_requests() {
    let f = Fixture::new(
        "{ attempts: 3, per_try_timeout: off, budget: { ratio: 50%, min_per_sec: 0 } }",
        &[
            (A, &[answers(503)]),
            (B, &[answers(503)]),
            (C, &[answers(503)]),
        ],
    );
    // The tries of one more request.
    async fn tries_of_one(f: &Fixture) -> usize {
        let before = f.replicas.tried().len();
        assert_eq!(f.get().await.unwrap().0, 503);
        f.replicas.tried().len() - before
    }
    // 1 request: half a retry, none. 2 requests: one retry. 3: still one. 4: two.
    assert_eq!(tries_of_one(&f).await, 1);
    assert_eq!(tries_of_one(&f).await, 2);
    assert_eq!(tries_of_one(&f).await, 1);
    assert_eq!(tries_of_one(&f).await, 2);
    assert_eq!(f.retries(), 2);
    // Ten seconds on, the window has forgotten them: a lone request is not retried.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(tries_of_one(&f).await, 1);
    assert_eq!(f.retries(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_replica_still_silent_at_the_response_header_timeout_is_charged_with_it() {
    let f = Fixture::new(
        "{ attempts: 1, per_try_timeout: off }",
        &[(A, &[Does::Hang]), (B, &[answers(200)])],
    );
    let e = f.get().await.unwrap_err();
    assert!(matches!(e, ProxyError::Timeout(_)), "{e:?}");
    let failures = f
        .backend(A)
        .outlier()
        .consecutive_failures
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(failures, 1);
}
