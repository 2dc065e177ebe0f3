//! Which URL each request goes to: smooth weighted round robin (nginx's), by request number.
//! Pure arithmetic, no I/O and no clock.
//!
//! nginx's smooth weighted round robin (SWRR) adds each target's weight to its running
//! value, picks the largest, and subtracts the sum of the weights `W` from the winner. The
//! sequence repeats every `W` picks (after dividing the weights by their common factor), so
//! any `W` consecutive picks give each target exactly its weight, and a target never gets
//! more in a row than its share demands (`a@8 b@4 c@1`: `a b a a b a c a b a a b a`).
//!
//! The choice must be shared by every connection of every generator thread: a picker per
//! connection starts them all on the same target, so with `-c 50` the URLs would come in
//! blocks of 50. [`Rotation`] therefore maps the run's request number (one shared counter,
//! the same one that bounds `-n` and times the open model) to a target through one period of
//! the sequence, computed once; picking is then a lookup, with nothing shared but that
//! counter. Weights whose period is too long for a table ([`TABLE_MAX`]) share one picker
//! behind a lock instead: the same sequence, in the order requests take their number.
use std::sync::Mutex;

/// The longest period (sum of the weights, divided by their common factor) kept as a table.
pub const TABLE_MAX: u64 = 1 << 16;

/// nginx's smooth weighted round robin, one pick at a time.
#[derive(Debug, Clone)]
struct Swrr {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl Swrr {
    fn new(weights: &[u64]) -> Swrr {
        let weights: Vec<i64> = weights
            .iter()
            .map(|&w| i64::try_from(w).unwrap_or(i64::MAX))
            .collect();
        Swrr {
            total: weights.iter().sum(),
            current: vec![0; weights.len()],
            weights,
        }
    }

    fn next(&mut self) -> usize {
        let mut best = (0, i64::MIN);
        for (i, (c, w)) in self.current.iter_mut().zip(&self.weights).enumerate() {
            *c += w;
            if *c > best.1 {
                best = (i, *c);
            }
        }
        self.current[best.0] -= self.total;
        best.0
    }
}

/// Request number → target index, in smooth weighted round-robin order.
#[derive(Debug)]
pub struct Rotation(Inner);

#[derive(Debug)]
enum Inner {
    /// One period of the sequence: request `i` goes to `table[i % len]`.
    Table(Vec<u32>),
    /// A period too long to tabulate: one shared picker.
    Shared(Mutex<Swrr>),
}

impl Rotation {
    /// The rotation over targets with these weights (each at least 1; at least one).
    pub fn new(weights: &[u32]) -> Rotation {
        Rotation::with_table_max(weights, TABLE_MAX)
    }

    fn with_table_max(weights: &[u32], table_max: u64) -> Rotation {
        let g = weights
            .iter()
            .fold(0u64, |g, &w| gcd(g, u64::from(w)))
            .max(1);
        let reduced: Vec<u64> = weights.iter().map(|&w| u64::from(w) / g).collect();
        let period: u64 = reduced.iter().sum::<u64>().max(1);
        let mut swrr = Swrr::new(&reduced);
        if period <= table_max {
            // Target indices fit u32: there are at most `period` targets.
            Rotation(Inner::Table(
                (0..period).map(|_| swrr.next() as u32).collect(),
            ))
        } else {
            Rotation(Inner::Shared(Mutex::new(swrr)))
        }
    }

    /// The target of request number `i` (from 0).
    pub fn target(&self, i: u64) -> usize {
        match &self.0 {
            Inner::Table(t) => t[(i % t.len() as u64) as usize] as usize,
            Inner::Shared(p) => p.lock().unwrap_or_else(|e| e.into_inner()).next(),
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(r: &Rotation, n: u64) -> Vec<usize> {
        (0..n).map(|i| r.target(i)).collect()
    }

    /// The longest run of each target.
    fn longest_runs(s: &[usize], targets: usize) -> Vec<usize> {
        let mut best = vec![0; targets];
        let mut run = 0;
        for (i, &x) in s.iter().enumerate() {
            run = if i > 0 && s[i - 1] == x { run + 1 } else { 1 };
            best[x] = best[x].max(run);
        }
        best
    }

    #[test]
    fn eight_four_one_is_nginx_s_sequence() {
        let r = Rotation::new(&[8, 4, 1]);
        let (a, b, c) = (0, 1, 2);
        assert_eq!(seq(&r, 13), [a, b, a, a, b, a, c, a, b, a, a, b, a]);
    }

    #[test]
    fn every_window_of_the_weights_sum_has_exact_shares() {
        for weights in [&[8, 4, 1][..], &[3, 1, 2], &[5, 5], &[1, 1, 1, 7], &[6, 4]] {
            let r = Rotation::new(weights);
            let w: u32 = weights.iter().sum();
            let s = seq(&r, 10 * u64::from(w));
            for window in s.windows(w as usize) {
                for (t, &weight) in weights.iter().enumerate() {
                    let n = window.iter().filter(|&&x| x == t).count();
                    assert_eq!(n, weight as usize, "{weights:?}: {window:?}");
                }
            }
        }
    }

    #[test]
    fn runs_are_no_longer_than_the_shares_demand() {
        let r = Rotation::new(&[8, 4, 1]);
        let s = seq(&r, 1300);
        // Across period boundaries too.
        assert_eq!(longest_runs(&s, 3), [2, 1, 1]);
        let r = Rotation::new(&[1, 1]);
        assert_eq!(seq(&r, 4), [0, 1, 0, 1]);
        assert_eq!(seq(&Rotation::new(&[7]), 3), [0, 0, 0]);
    }

    #[test]
    fn the_choice_depends_on_the_request_number_only() {
        // Whichever connection or thread takes a number, it gets the same target.
        let r = Rotation::new(&[8, 4, 1]);
        let forward = seq(&r, 130);
        let backward: Vec<usize> = (0..130u64).rev().map(|i| r.target(i)).collect();
        assert!(forward.iter().eq(backward.iter().rev()));
        let count = |t| forward.iter().filter(|&&x| x == t).count();
        assert_eq!((count(0), count(1), count(2)), (80, 40, 10));
    }

    #[test]
    fn a_common_factor_does_not_lengthen_the_period() {
        let a = Rotation::new(&[800, 400, 100]);
        let b = Rotation::new(&[8, 4, 1]);
        assert_eq!(seq(&a, 26), seq(&b, 26));
        let Inner::Table(t) = &a.0 else {
            panic!("tabulated")
        };
        assert_eq!(t.len(), 13);
    }

    #[test]
    fn a_period_too_long_for_a_table_shares_one_picker() {
        let r = Rotation::with_table_max(&[8, 4, 1], 12);
        assert!(matches!(r.0, Inner::Shared(_)));
        let s = seq(&r, 13);
        assert_eq!(s, seq(&Rotation::new(&[8, 4, 1]), 13));
        // Huge weights: still exact shares, evenly spread.
        let r = Rotation::new(&[u32::MAX, u32::MAX - 1]);
        let s = seq(&r, 1000);
        assert_eq!(longest_runs(&s, 2), [1, 1]);
    }
}
