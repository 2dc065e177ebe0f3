//! Resource use of replicas, read from Linux `/proc`.
//!
//! A replica is a process *group* (it is spawned as a group leader), so its use is the sum
//! over every process whose group id is the replica's pgid: workers forked by a
//! pre-forking server count too. One walk of `/proc` per sampling period serves all
//! replicas: for each process, `/proc/PID/stat` gives its group (field 5) and its CPU
//! time in clock ticks (`utime` + `stime`, fields 14–15), `/proc/PID/statm` its resident
//! pages (field 2). CPU percent is the growth of the group's ticks between two samples
//! over the wall time between them (100 % = one core busy). On systems without `/proc`
//! the samples are simply empty.
use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// CPU ticks and resident memory of one process group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GroupUsage {
    /// utime + stime of every member, in clock ticks.
    pub(crate) cpu_ticks: u64,
    /// Resident memory of every member, in bytes.
    pub(crate) rss_bytes: u64,
    /// Members found.
    pub(crate) processes: u32,
}

/// Usage of every process group found in `/proc`, by pgid.
pub(crate) fn sample_all() -> HashMap<u32, GroupUsage> {
    let mut groups: HashMap<u32, GroupUsage> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return groups;
    };
    let page = page_size();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue; // exited meanwhile
        };
        let Some(fields) = parse_stat(&stat) else {
            continue;
        };
        let pages = std::fs::read_to_string(format!("/proc/{pid}/statm"))
            .ok()
            .and_then(|s| s.split_ascii_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0);
        let g = groups.entry(fields.pgrp).or_default();
        g.cpu_ticks += fields.cpu_ticks;
        g.rss_bytes += pages * page;
        g.processes += 1;
    }
    groups
}

/// The fields of `/proc/PID/stat` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatFields {
    pub(crate) ppid: u32,
    pub(crate) pgrp: u32,
    pub(crate) cpu_ticks: u64,
}

/// Parse `/proc/PID/stat`. The command name (field 2) is in parentheses and may contain
/// spaces and parentheses itself, so fields are counted from the *last* `)`.
pub(crate) fn parse_stat(stat: &str) -> Option<StatFields> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // f[0] is field 3 (state): field n is f[n - 3].
    let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(StatFields {
        ppid: u32::try_from(num(4)?).ok()?,
        pgrp: u32::try_from(num(5)?).ok()?,
        cpu_ticks: num(14)? + num(15)?,
    })
}

fn page_size() -> u64 {
    use nix::unistd::{SysconfVar, sysconf};
    sysconf(SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |v| v as u64)
}

fn clock_ticks_per_sec() -> f64 {
    use nix::unistd::{SysconfVar, sysconf};
    sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&v| v > 0)
        .map_or(100.0, |v| v as f64)
}

/// Turns successive tick counts of one group into CPU percent.
#[derive(Debug, Default, Clone)]
pub(crate) struct CpuMeter {
    last: Option<(Instant, u64)>,
}

impl CpuMeter {
    /// Record `ticks` at `now`; the CPU percent since the previous sample, if there was one.
    pub(crate) fn update(&mut self, now: Instant, ticks: u64) -> Option<f64> {
        let previous = self.last.replace((now, ticks));
        let (then, before) = previous?;
        let elapsed = now.saturating_duration_since(then);
        if elapsed < Duration::from_millis(1) {
            return None;
        }
        // Members that exited take their ticks with them: never report negative use.
        let used = ticks.saturating_sub(before) as f64 / clock_ticks_per_sec();
        Some(used / elapsed.as_secs_f64() * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let stat =
            "4242 (my (odd) name) S 1 4240 4240 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 1 1 1";
        let f = parse_stat(stat).unwrap();
        assert_eq!(
            f,
            StatFields {
                ppid: 1,
                pgrp: 4240,
                cpu_ticks: 10
            }
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn finds_our_own_group() {
        let pgid = nix::unistd::getpgrp().as_raw() as u32;
        let all = sample_all();
        let us = all.get(&pgid).expect("our process group is in /proc");
        assert!(us.processes >= 1);
        assert!(us.rss_bytes > 0);
    }

    #[test]
    fn cpu_percent_from_ticks() {
        let mut m = CpuMeter::default();
        let t0 = Instant::now();
        assert_eq!(m.update(t0, 1000), None);
        let hz = clock_ticks_per_sec();
        // One second of wall time, half a second of CPU: 50 %.
        let p = m
            .update(t0 + Duration::from_secs(1), 1000 + (hz / 2.0) as u64)
            .unwrap();
        assert!((p - 50.0).abs() < 1.0, "{p}");
        // Fewer ticks than before (a member exited): 0, not negative.
        assert_eq!(m.update(t0 + Duration::from_secs(2), 0), Some(0.0));
    }
}
