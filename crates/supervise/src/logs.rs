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
//! Files keep what the replica wrote, escape codes included. The echo strips ANSI escape
//! sequences ([`strip_ansi`]) unless `color` is set, so output piped to a file stays plain;
//! `shoal logs` decides the same way for its own output.
//!
//! Reading back ([`LogReader`], for `GET /api/v1/services/{name}/logs`) is `tail -F` over
//! a service's files: the last lines of each replica, then what each file gains, found by
//! polling. A replica is followed by file identity (inode): when its file is rotated, the
//! rest of the old file (now `.1`) is read before the new one, and a file that appears
//! later (a replica scaled up) is read from its start. Only complete lines are read, so a
//! line being written is never split or read twice.
//!
//! The last non-blank line of each replica incarnation is also kept in memory, per pipe
//! ([`ReplicaLog::last_line`]): a rolled-back rollout quotes it as the reason, and the
//! file cannot tell it apart from what the previous incarnation of the same index wrote.
//! The last line of stderr is quoted if there is one, else the last of stdout: the two
//! pipes are read by separate tasks, so which of their lines was written last is not
//! known, and an error is usually on stderr.
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;

use crate::spec::LogPolicy;

/// Longest line kept, in bytes; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 16 * 1024;

/// The log file of one replica: `dir/SERVICE.INDEX.log` (rotated files add `.1`, `.2`, …).
/// The one place the name is made: the CLI, the app and the tests call this (and
/// [`rotated_log_file`]) rather than spell it.
pub fn log_file(dir: &Path, service: &str, replica: u32) -> PathBuf {
    dir.join(format!("{service}.{replica}.log"))
}

/// The `n`th rotated file of a replica's log: `.1` is the newest old file (see the module
/// doc).
pub fn rotated_log_file(dir: &Path, service: &str, replica: u32, n: u32) -> PathBuf {
    rotated(&log_file(dir, service, replica), n)
}

/// The replica whose live log file of `service` is named `file_name`: the inverse of
/// [`log_file`]. None for another service's file or a rotated one.
fn replica_of(file_name: &str, service: &str) -> Option<u32> {
    file_name
        .strip_prefix(service)?
        .strip_prefix('.')?
        .strip_suffix(".log")?
        .parse()
        .ok()
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
    /// Keep the replica's own escape codes when echoing.
    color: bool,
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
        let echo_prefix = policy
            .echo
            .then(|| line_prefix(service, index, policy.color));
        ReplicaLog {
            file,
            echo_prefix,
            color: policy.color,
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
            let text = String::from_utf8_lossy(line);
            let plain;
            let text: &str = if self.color {
                &text
            } else {
                plain = strip_ansi(&text);
                &plain
            };
            let mut out = io::stdout().lock();
            let _ = out.write_all(prefix.as_bytes());
            let _ = out.write_all(text.as_bytes());
            let _ = out.write_all(b"\n");
        }
    }
}

/// `users.0 | `, the name coloured per service when `color` is set: how `shoal up` and
/// `shoal logs` prefix a replica's lines.
pub fn line_prefix(service: &str, index: u32, color: bool) -> String {
    if color {
        format!("\x1b[{}m{service}.{index}\x1b[0m | ", color_for(service))
    } else {
        format!("{service}.{index} | ")
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

/// `line` without its ANSI escape sequences (ECMA-48), everything else kept:
///
/// - CSI, `ESC [` or the one-character U+009B: parameter bytes `0x30..=0x3F`, intermediate
///   bytes `0x20..=0x2F`, one final byte `0x40..=0x7E` (colours, cursor moves, erasing);
/// - OSC `ESC ]`, DCS `ESC P`, SOS `ESC X`, PM `ESC ^`, APC `ESC _`: a string up to BEL or
///   ST (`ESC \`), as terminals take window titles and hyperlinks;
/// - any other escape: `ESC`, intermediate bytes `0x20..=0x2F`, one final byte
///   `0x30..=0x7E` (e.g. `ESC ( B`, `ESC 7`).
///
/// A sequence cut off by the end of the line is dropped up to there: a line never ends
/// inside a half escape that would garble the terminal.
pub fn strip_ansi(line: &str) -> Cow<'_, str> {
    if !line.contains(['\x1b', '\u{9b}']) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        let csi = match c {
            '\u{9b}' => true,
            '\x1b' => match chars.next_if(|c| matches!(c, '[' | ']' | 'P' | 'X' | '^' | '_')) {
                Some('[') => true,
                Some(_) => {
                    // A control string: up to BEL or ST.
                    while let Some(c) = chars.next() {
                        if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                    false
                }
                None => {
                    skip_in(&mut chars, '\x20', '\x2f');
                    chars.next_if(|c| ('\x30'..='\x7e').contains(c));
                    false
                }
            },
            c => {
                out.push(c);
                false
            }
        };
        if csi {
            skip_in(&mut chars, '\x30', '\x3f');
            skip_in(&mut chars, '\x20', '\x2f');
            chars.next_if(|c| ('\x40'..='\x7e').contains(c));
        }
    }
    Cow::Owned(out)
}

/// Skip the characters in `lo..=hi`.
fn skip_in(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, lo: char, hi: char) {
    while chars.next_if(|c| (lo..=hi).contains(c)).is_some() {}
}

/// One line of a replica's log, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The replica's index.
    pub replica: u32,
    /// The line, without its newline (invalid UTF-8 replaced).
    pub line: String,
}

/// Where reading a replica's file got to.
#[derive(Debug)]
struct Cursor {
    /// The file's identity, to notice its rotation.
    ino: u64,
    /// Just after the last complete line read.
    offset: u64,
}

/// Reads a service's log files back: [`tail`](Self::tail) first, then
/// [`read_new`](Self::read_new) repeatedly to follow them (see the module doc). Blocking
/// file I/O: call it off the async workers.
#[derive(Debug)]
pub struct LogReader {
    dir: PathBuf,
    service: String,
    replica: Option<u32>,
    cursors: BTreeMap<u32, Cursor>,
}

impl LogReader {
    /// A reader of `service`'s files in `dir`, of every replica or of `replica` only.
    pub fn new(dir: impl Into<PathBuf>, service: &str, replica: Option<u32>) -> LogReader {
        LogReader {
            dir: dir.into(),
            service: service.to_owned(),
            replica,
            cursors: BTreeMap::new(),
        }
    }

    /// The replica indexes that have a log file (of the one asked for, if any), sorted.
    pub fn replicas(&self) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<u32> = entries
            .filter_map(|e| {
                let name = e.ok()?.file_name();
                let index = replica_of(name.to_str()?, &self.service)?;
                self.replica.is_none_or(|r| r == index).then_some(index)
            })
            .collect();
        found.sort_unstable();
        found
    }

    /// The last `n` complete lines of each replica, replica by replica (from the newest
    /// rotated file too when the live one has fewer); following starts after them.
    pub fn tail(&mut self, n: usize) -> Vec<LogLine> {
        let mut out = Vec::new();
        for replica in self.replicas() {
            let path = log_file(&self.dir, &self.service, replica);
            let Ok((ino, text, offset)) = read_complete(&path, 0) else {
                continue;
            };
            let mut lines: Vec<&[u8]> = split_lines(&text).collect();
            let older;
            if lines.len() < n
                && let Ok((_, t, _)) = read_complete(&rotated(&path, 1), 0)
            {
                older = t;
                let mut all: Vec<&[u8]> = split_lines(&older).collect();
                all.append(&mut lines);
                lines = all;
            }
            let skip = lines.len().saturating_sub(n);
            out.extend(lines[skip..].iter().map(|l| line_of(replica, l)));
            self.cursors.insert(replica, Cursor { ino, offset });
        }
        out
    }

    /// The complete lines written since the last call, replica by replica: files that
    /// appeared since are read from their start, a rotated file's rest before its
    /// successor.
    pub fn read_new(&mut self) -> Vec<LogLine> {
        let mut out = Vec::new();
        for replica in self.replicas() {
            let path = log_file(&self.dir, &self.service, replica);
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let cursor = self.cursors.entry(replica).or_insert(Cursor {
                ino: meta.ino(),
                offset: 0,
            });
            if cursor.ino != meta.ino() {
                // Rotated: what was not read yet is at the end of `.1`.
                let old = rotated(&path, 1);
                if let Ok((ino, text, _)) = read_complete(&old, cursor.offset)
                    && ino == cursor.ino
                {
                    out.extend(split_lines(&text).map(|l| line_of(replica, l)));
                }
                *cursor = Cursor {
                    ino: meta.ino(),
                    offset: 0,
                };
            } else if meta.len() < cursor.offset {
                // Truncated in place: start over.
                cursor.offset = 0;
            }
            if meta.len() > cursor.offset
                && let Ok((ino, text, end)) = read_complete(&path, cursor.offset)
                && ino == cursor.ino
            {
                out.extend(split_lines(&text).map(|l| line_of(replica, l)));
                cursor.offset = end;
            }
        }
        out
    }
}

/// The complete lines of `path` from `offset` on: (inode, bytes, offset after them).
fn read_complete(path: &Path, offset: u64) -> io::Result<(u64, Vec<u8>, u64)> {
    let mut file = File::open(path)?;
    let ino = file.metadata()?.ino();
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    buf.truncate(complete);
    Ok((ino, buf, offset + complete as u64))
}

fn split_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.strip_suffix(b"\n")
        .unwrap_or(text)
        .split(|&b| b == b'\n')
        .filter(move |_| !text.is_empty())
}

fn line_of(replica: u32, line: &[u8]) -> LogLine {
    LogLine {
        replica,
        line: String::from_utf8_lossy(line).into_owned(),
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
    fn a_log_file_name_is_read_back_as_its_replica() {
        let dir = Path::new("/state/logs");
        let name = |p: PathBuf| p.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(name(log_file(dir, "web", 3)), "web.3.log");
        assert_eq!(name(rotated_log_file(dir, "web", 3, 2)), "web.3.log.2");
        assert_eq!(replica_of(&name(log_file(dir, "web", 3)), "web"), Some(3));
        assert_eq!(replica_of(&name(log_file(dir, "webby", 0)), "web"), None);
        assert_eq!(replica_of(&name(log_file(dir, "web", 0)), "webby"), None);
        assert_eq!(
            replica_of(&name(rotated_log_file(dir, "web", 0, 1)), "web"),
            None
        );
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
    fn ansi_sequences_are_stripped_and_text_kept() {
        let cases = [
            ("plain text", "plain text"),
            ("\x1b[31mred\x1b[0m", "red"),
            ("\x1b[2m2026\x1b[0m \x1b[32m INFO\x1b[0m x", "2026  INFO x"),
            ("\x1b[38;5;208mor\x1b[38;2;1;2;3mange", "orange"),
            ("\x1b[?25lhidden cursor\x1b[?25h", "hidden cursor"),
            ("\x1b[1 qbar", "bar"),
            ("\u{9b}1mcsi8", "csi8"),
            ("\x1b]0;title\x07after", "after"),
            ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),
            ("\x1bPdcs\x1b\\x", "x"),
            ("\x1b(Bcharset", "charset"),
            ("\x1b7saved\x1b8", "saved"),
            ("cut \x1b[31", "cut "),
            ("cut \x1b]title", "cut "),
            ("lone \x1b", "lone "),
            ("tab\tand ünïcode ✓", "tab\tand ünïcode ✓"),
        ];
        for (input, want) in cases {
            assert_eq!(strip_ansi(input), want, "{input:?}");
        }
        assert!(matches!(strip_ansi("no escapes"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_reader_tails_then_follows_new_files_and_rotations_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut f0 = RotatingFile::open(log_file(dir.path(), "web", 0), 64, 2).unwrap();
        for i in 0..5 {
            f0.write_line(format!("zero {i}").as_bytes()).unwrap();
        }
        // Another service's file, and a half-written line, are not read.
        std::fs::write(log_file(dir.path(), "webby", 0), "other\n").unwrap();
        let mut reader = LogReader::new(dir.path(), "web", None);
        let text = |lines: Vec<LogLine>| -> Vec<String> {
            lines
                .into_iter()
                .map(|l| format!("{}:{}", l.replica, l.line))
                .collect()
        };
        assert_eq!(text(reader.tail(2)), ["0:zero 3", "0:zero 4"]);
        assert_eq!(text(reader.read_new()), Vec::<String>::new());

        let mut f1 = RotatingFile::open(log_file(dir.path(), "web", 1), 64, 2).unwrap();
        f1.write_line(b"one 0").unwrap();
        f0.file.write_all(b"zero 5\nzero 6 half").unwrap();
        f0.size += 18;
        assert_eq!(text(reader.read_new()), ["0:zero 5", "1:one 0"]);
        f0.file.write_all(b"\n").unwrap();
        f0.size += 1;
        // Past 64 bytes: rotated; the lines before and after the rotation come once each.
        for i in 7..12 {
            f0.write_line(format!("zero {i}").as_bytes()).unwrap();
        }
        assert!(rotated(&f0.path, 1).exists());
        assert_eq!(
            text(reader.read_new()),
            [
                "0:zero 6 half",
                "0:zero 7",
                "0:zero 8",
                "0:zero 9",
                "0:zero 10",
                "0:zero 11"
            ]
        );
        assert_eq!(reader.replicas(), [0, 1]);
        let mut one = LogReader::new(dir.path(), "web", Some(1));
        assert_eq!(one.replicas(), [1]);
        assert_eq!(text(one.tail(10)), ["1:one 0"]);
        // Fewer lines in the live file than asked: the newest rotated file fills in.
        let mut again = LogReader::new(dir.path(), "web", Some(0));
        let tail = text(again.tail(100));
        assert_eq!(tail.last().unwrap(), "0:zero 11");
        assert!(tail.len() > 3, "{tail:?}");
    }

    #[test]
    fn colours_are_stable_per_service() {
        assert_eq!(color_for("users"), color_for("users"));
        assert!((31..=36).contains(&color_for("music")));
    }
}
