//! A time-stamped history of values, read through sliding windows.
//!
//! An entry recorded at `t` is inside the window of length `w` ending at `now` when
//! `t > now - w` (strictly newer than the cutoff, HPA's `timestamp.After(cutoff)`), so a
//! window of zero holds nothing and, with 1 s ticks, a 5 s window holds the last 5 ticks
//! before `now`.

use std::collections::VecDeque;
use std::time::Duration;

/// Values with the time they were recorded, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct History<T> {
    entries: VecDeque<(Duration, T)>,
}

impl<T: Copy> History<T> {
    /// Records `value` at `at` (times are expected not to decrease).
    pub(crate) fn push(&mut self, at: Duration, value: T) {
        self.entries.push_back((at, value));
    }

    /// The values inside the window of length `window` ending at `now`.
    pub(crate) fn within(&self, now: Duration, window: Duration) -> impl Iterator<Item = T> + '_ {
        self.entries
            .iter()
            .filter(move |&&(at, _)| inside(at, now, window))
            .map(|&(_, v)| v)
    }

    /// Forgets the entries outside the window of length `keep` ending at `now`.
    pub(crate) fn prune(&mut self, now: Duration, keep: Duration) {
        while let Some(&(at, _)) = self.entries.front() {
            if inside(at, now, keep) {
                break;
            }
            self.entries.pop_front();
        }
    }
}

/// Whether `at` is strictly newer than `now - window`.
pub(crate) fn inside(at: Duration, now: Duration, window: Duration) -> bool {
    at.saturating_add(window) > now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn window_is_strictly_after_the_cutoff() {
        let mut h = History::default();
        for t in 0..10 {
            h.push(s(t), t);
        }
        assert_eq!(h.within(s(10), s(3)).collect::<Vec<_>>(), vec![8, 9]);
        assert_eq!(h.within(s(9), s(3)).collect::<Vec<_>>(), vec![7, 8, 9]);
        assert_eq!(h.within(s(9), Duration::ZERO).count(), 0);
        h.prune(s(10), s(3));
        assert_eq!(h.within(s(10), s(100)).collect::<Vec<_>>(), vec![8, 9]);
    }
}
