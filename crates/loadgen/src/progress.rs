//! The live progress bar on stderr: elapsed time (or requests) against the bound, and the
//! last complete second's rate, errors and p99.
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::plan::Plan;
use crate::report::{Second, ms, num};

/// A progress bar, or nothing.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    by_requests: bool,
    errors: u64,
}

impl Progress {
    pub(crate) fn new(enabled: bool, plan: &Plan) -> Progress {
        let (len, by_requests) = match (plan.duration, plan.requests) {
            (Some(d), _) => (d.as_secs().max(1), false),
            (None, Some(n)) => (n, true),
            (None, None) => (0, false),
        };
        let bar = enabled.then(|| {
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
            let unit = match (by_requests, plan.scenario.is_some()) {
                (false, _) => "s",
                (true, false) => "req",
                (true, true) => " flows",
            };
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{spinner}} [{{bar:30}}] {{pos}}/{{len}}{unit}  {{msg}}"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            by_requests,
            errors: 0,
        }
    }

    /// A second of the run is complete.
    pub(crate) fn second(&mut self, s: &Second, requests_so_far: u64) {
        self.errors += s.failed;
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "{} req/s  errors {}  p99 {}",
                num(s.responses as f64),
                self.errors,
                ms(s.p99)
            ));
            if self.by_requests {
                bar.set_position(requests_so_far);
            }
        }
    }

    /// Time passed.
    pub(crate) fn tick(&mut self, elapsed: Duration) {
        if let Some(bar) = &self.bar
            && !self.by_requests
        {
            bar.set_position(elapsed.as_secs());
        }
    }

    /// The run is over: clear the bar before the summary is printed.
    pub(crate) fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
