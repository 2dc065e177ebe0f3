//! Replica output: one reader task per pipe, a size-rotated file per replica, optional echo.
//!
//! Every replica's stdout and stderr are pipes, and they must always be drained — a
//! replica whose pipe fills up blocks on its next write. A task per pipe reads lines
//! (bounded to [`MAX_LINE`] bytes, so a binary blob without newlines cannot grow memory;
//! the rest of an over-long line is dropped and the line is marked `[truncated]`) and
//! hands each one to the replica's [`ReplicaLog`]:
//!
//! - the log file [`log_file`]`(dir, service, index)` is appended to and survives
//!   restarts of the replica; when a write would take it past `max_bytes` it is rotated
//!   the way logrotate and supervisord do: `x.log.{keep-1}` → `x.log.{keep}` … `x.log` →
//!   `x.log.1`, so `.1` is the newest old file and at most `keep` old files exist;
//! - with `echo`, the line is also printed to shoal's stdout as `users.0 | line`, the
//!   prefix coloured per service when `color` is set.
//!
//! File writes are small, unbuffered appends done under a short lock; a file that cannot
//! be written is reported once and then skipped, while the pipe keeps being drained.
//!
//! The last non-blank line of each replica incarnation is also kept in memory, per pipe
//! ([`ReplicaLog::last_line`]): a rolled-back rollout quotes it as the reason, and the
//! file cannot tell it apart from what the previous incarnation of the same index wrote.
//! The last line of stderr is quoted if there is one, else the last of stdout: the two
//! pipes are read by separate tasks, so which of their lines was written last is not
//! known, and an error is usually on stderr.
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;

use crate::spec::LogPolicy;

/// Longest line kept, in bytes; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 16 * 1024;

/// The log file of one replica: `dir/SERVICE.INDEX.log` (rotated files add `.1`, `.2`, …).
pub fn log_file(dir: &Path, service: &str, replica: u32) -> PathBuf {
    dir.join(format!("{service}.{replica}.log"))
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// An append-only file rotated by size.
#[derive(Debug)]
struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl RotatingFile {
    fn open(path: PathBuf, max_bytes: u64, keep: u32) -> io::Result<RotatingFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path,
            file,
            size,
            max_bytes: max_bytes.max(1),
            keep,
        })
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        self.file.write_all(&buf)?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            std::fs::remove_file(&self.path).or_else(ignore_not_found)?;
        } else {
            for n in (1..self.keep).rev() {
                std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1))
                    .or_else(ignore_not_found)?;
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn ignore_not_found(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// Where the lines of one replica go: its file, and optionally shoal's stdout.
#[derive(Debug)]
pub(crate) struct ReplicaLog {
    file: Option<RotatingFile>,
    /// `users.0 | ` (coloured if asked) when echoing.
    echo_prefix: Option<String>,
    /// The last non-blank line of stdout, and of stderr.
    last: [Option<String>; 2],
}

/// Which pipe of a replica a reader drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pipe {
    Stdout = 0,
    Stderr = 1,
}

impl ReplicaLog {
    pub(crate) fn open(policy: &LogPolicy, service: &str, index: u32) -> ReplicaLog {
        let path = log_file(&policy.dir, service, index);
        let file = match RotatingFile::open(path.clone(), policy.max_bytes, policy.keep) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open replica log file");
                None
            }
        };
        let echo_prefix = policy.echo.then(|| {
            let name = format!("{service}.{index}");
            if policy.color {
                format!("\x1b[{}m{name}\x1b[0m | ", color_for(service))
            } else {
                format!("{name} | ")
            }
        });
        ReplicaLog {
            file,
            echo_prefix,
            last: [None, None],
        }
    }

    /// The last non-blank line this replica incarnation wrote to stderr, else to stdout.
    pub(crate) fn last_line(&self) -> Option<&str> {
        let [out, err] = &self.last;
        err.as_deref().or(out.as_deref())
    }

    fn line(&mut self, pipe: Pipe, line: &[u8]) {
        if !line.trim_ascii().is_empty() {
            self.last[pipe as usize] = Some(String::from_utf8_lossy(line).trim_end().to_owned());
        }
        if let Some(file) = &mut self.file
            && let Err(e) = file.write_line(line)
        {
            tracing::warn!(path = %file.path.display(), error = %e, "cannot write replica log; dropping its output");
            self.file = None;
        }
        if let Some(prefix) = &self.echo_prefix {
            let mut out = io::stdout().lock();
            let _ = out.write_all(prefix.as_bytes());
            let _ = out.write_all(line);
            let _ = out.write_all(b"\n");
        }
    }
}

/// A stable ANSI foreground colour (31–36) per service name.
fn color_for(service: &str) -> u8 {
    let h = service
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    31 + (h % 6) as u8
}

/// Read `pipe` line by line into `log` until EOF.
pub(crate) fn spawn_reader<R>(pipe: R, which: Pipe, log: Arc<Mutex<ReplicaLog>>) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let emit = |line: &[u8]| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .line(which, line);
        };
        if let Err(e) = read_lines(pipe, MAX_LINE, emit).await {
            tracing::debug!(error = %e, "replica pipe closed with an error");
        }
    })
}

/// Call `emit` for every line of `pipe`, keeping at most `max` bytes of each.
async fn read_lines<R, F>(pipe: R, max: usize, mut emit: F) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    F: FnMut(&[u8]),
{
    const MARK: &[u8] = b" [truncated]";
    let mut reader = BufReader::with_capacity(8 * 1024, pipe);
    let mut line = Vec::new();
    let mut truncated = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            if !line.is_empty() || truncated {
                if truncated {
                    line.extend_from_slice(MARK);
                }
                emit(&line);
            }
            return Ok(());
        }
        let (chunk, consumed, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = max.saturating_sub(line.len());
        if chunk.len() > room {
            truncated = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(consumed);
        if end {
            if truncated {
                line.extend_from_slice(MARK);
            }
            emit(&line);
            line.clear();
            truncated = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_and_bounded() {
        let mut input = b"one\r\ntwo\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100_000));
        input.extend_from_slice(b"\nlast");
        let mut got: Vec<Vec<u8>> = Vec::new();
        read_lines(&input[..], 1000, |l| got.push(l.to_vec()))
            .await
            .unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], b"one\r");
        assert_eq!(got[1], b"two");
        assert_eq!(got[2].len(), 1000 + b" [truncated]".len());
        assert!(got[2].ends_with(b" [truncated]"));
        assert_eq!(got[3], b"last");
    }

    #[test]
    fn files_rotate_and_keep_a_bounded_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_file(dir.path(), "users", 0);
        assert!(path.ends_with("users.0.log"));
        let mut f = RotatingFile::open(path.clone(), 100, 2).unwrap();
        for i in 0..100 {
            f.write_line(format!("line {i:04} of the log").as_bytes())
                .unwrap();
        }
        assert!(path.exists());
        assert!(rotated(&path, 1).exists());
        assert!(rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists());
        for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            assert!(
                std::fs::metadata(&p).unwrap().len() <= 100,
                "{}",
                p.display()
            );
        }
        // The newest line is in the live file, the one before it in .1 (or the live file).
        let live = std::fs::read_to_string(&path).unwrap();
        assert!(live.ends_with("line 0099 of the log\n"), "{live}");
        let older = std::fs::read_to_string(rotated(&path, 1)).unwrap();
        assert!(older.lines().all(|l| l < "line 0099"), "{older}");
    }

    #[test]
    fn the_last_non_blank_line_of_stderr_else_stdout_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ReplicaLog::open(&LogPolicy::new(dir.path()), "users", 0);
        assert_eq!(log.last_line(), None);
        log.line(Pipe::Stdout, b"starting");
        assert_eq!(log.last_line(), Some("starting"));
        log.line(Pipe::Stderr, b"fatal: cannot bind  ");
        log.line(Pipe::Stderr, b"   ");
        log.line(Pipe::Stdout, b"exiting");
        assert_eq!(log.last_line(), Some("fatal: cannot bind"), "stderr first");
    }

    #[test]
    fn colours_are_stable_per_service() {
        assert_eq!(color_for("users"), color_for("users"));
        assert!((31..=36).contains(&color_for("music")));
    }
}
