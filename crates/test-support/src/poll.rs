//! Polling with a deadline: the only way tests wait for something to become true.
use std::fmt::Debug;
use std::time::Duration;

use tokio::time::Instant;

/// Long enough for anything that should happen "soon" on a loaded two-core machine.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How long to wait between two checks.
const INTERVAL: Duration = Duration::from_millis(10);

/// Run `check` until it returns `Ok`, and return that value; panic with the last error if
/// `within` passes first. `check` runs at least once.
///
/// ```no_run
/// # async fn f(backend: &shoal_test_support::Backend) {
/// use shoal_test_support::{DEADLINE, eventually};
/// eventually(DEADLINE, || async {
///     match backend.in_flight() {
///         1 => Ok(()),
///         n => Err(format!("{n} requests in flight")),
///     }
/// })
/// .await;
/// # }
/// ```
pub async fn eventually<T, E, F, Fut>(within: Duration, mut check: F) -> T
where
    E: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(e) if Instant::now() >= deadline => {
                panic!("still not true after {within:?}: {e:?}")
            }
            Err(_) => tokio::time::sleep(INTERVAL).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_the_first_success() {
        let mut calls = 0;
        let got = eventually(Duration::from_secs(1), || {
            calls += 1;
            let n = calls;
            async move { if n == 3 { Ok(n) } else { Err(n) } }
        })
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "still not true after 1s: \"never\"")]
    async fn panics_with_the_last_error_after_the_deadline() {
        eventually(Duration::from_secs(1), || async { Err::<(), _>("never") }).await;
    }
}
