//! The generator watching itself: CPU time of this process from `/proc/self/stat`
//! (`utime` + `stime`, fields 14–15, in clock ticks) against wall time. When it is close to
//! the generator threads' whole capacity, the generator — not the server — may be what
//! limits the throughput and inflates latency.
use std::time::Duration;

/// Share of the generator threads' capacity above which it counts as saturated.
pub const SATURATED: f64 = 0.9;

/// CPU time this process has used so far; `None` where `/proc` is not available.
pub fn process_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // f[0] is field 3 (state); field n is f[n - 3].
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / ticks_per_second()))
}

fn ticks_per_second() -> f64 {
    use nix::unistd::{SysconfVar, sysconf};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// CPU used between two readings, as a share of `threads` cores over `wall`.
pub fn utilization(cpu: Duration, wall: Duration, threads: u32) -> f64 {
    if wall.is_zero() || threads == 0 {
        return 0.0;
    }
    cpu.as_secs_f64() / wall.as_secs_f64() / f64::from(threads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_time() {
        let before = process_cpu().expect("/proc/self/stat");
        // Burn a little CPU so the count can only grow.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(process_cpu().unwrap() >= before);
    }

    #[test]
    fn utilization_is_per_thread() {
        let u = utilization(Duration::from_secs(3), Duration::from_secs(2), 2);
        assert!((u - 0.75).abs() < 1e-9);
        assert_eq!(utilization(Duration::from_secs(1), Duration::ZERO, 1), 0.0);
    }
}
