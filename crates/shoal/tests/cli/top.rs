//! `shoal top` in a real terminal: a private tmux server runs it against a real `shoal up`;
//! the test reads the screen with `capture-pane` and types with `send-keys`.
use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sample_service;
use crate::support::*;

const T: Duration = Duration::from_secs(20);

/// A tmux server of our own (`tmux -L NAME`), with one session running one command in a
/// 160x45 window. Dropping it kills the server, so a failing test leaves nothing behind.
struct Tmux {
    socket: String,
    /// The server's socket file, removed at the end too (tmux leaves it behind).
    socket_path: String,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let mut tmux = Tmux {
            socket: format!("shoal-top-test-{}-{nanos}", std::process::id()),
            socket_path: String::new(),
        };
        let out = tmux_top_session(&tmux.socket, command);
        assert!(out.status.success(), "tmux new-session: {}", stderr(&out));
        let out = tmux.run(&["display-message", "-p", "#{socket_path}"]);
        tmux.socket_path = stdout(&out).trim().to_owned();
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        tmux(&self.socket, args)
    }

    /// The visible screen, or None once the session is gone.
    fn screen(&self) -> Option<String> {
        let out = self.run(&["capture-pane", "-p", "-t", "top"]);
        out.status.success().then(|| stdout(&out))
    }

    fn keys(&self, keys: &str) {
        let out = self.run(&["send-keys", "-t", "top", "-l", keys]);
        assert!(out.status.success(), "tmux send-keys: {}", stderr(&out));
    }

    /// Wait until the screen shows every one of `texts`; return it.
    fn wait_screen(&self, what: &str, texts: &[&str]) -> String {
        // On a timeout, dropping `self` prints the last screen.
        poll(what, T, Duration::from_millis(100), &mut || {
            let screen = self.screen()?;
            texts.iter().all(|t| screen.contains(t)).then_some(screen)
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(screen) = self.screen()
        {
            eprintln!("--- shoal top screen ---\n{screen}");
        }
        let _ = self.run(&["kill-server"]);
        if !self.socket_path.is_empty() {
            let _ = std::fs::remove_file(&self.socket_path);
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn top_shows_services_and_replicas_live_and_scales_with_plus() {
    let stack = Stack::new(&sample_service("web", 2, ""), &[("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("web", 2, T);
    let admin = stack.admin.to_string();

    // Not a terminal: a clear error instead of escape codes.
    let piped = stack.run(&["top", "--admin", &admin]);
    assert_eq!(piped.status.code(), Some(1), "{}", stderr(&piped));
    assert!(
        stderr(&piped).contains("needs a terminal"),
        "{}",
        stderr(&piped)
    );

    // The exit code lands in a file, since the pane closes with the program.
    let dir = stack.path().display().to_string();
    let command =
        format!("'{SHOAL}' top --admin {admin} 2>'{dir}/top.stderr'; echo $? >'{dir}/top.exit'");
    let tmux = Tmux::start(&command);
    let screen = tmux.wait_screen(
        "the service and its replicas on screen",
        &[
            "shoal top",
            "▶ web",
            "2/2",
            "replicas of web",
            "web/0",
            "web/1",
        ],
    );
    assert!(
        screen.contains("REQ/S") && screen.contains("IN-FLIGHT"),
        "{screen}"
    );
    // Events so far: replicas started and ready.
    assert!(screen.contains("ready"), "{screen}");
    // Traffic shows up as requests/s: `▶ web running 2/2 RATE ERRORS …`.
    poll(
        "a request rate on web's row",
        T,
        Duration::from_millis(100),
        &mut || {
            assert_eq!(stack.get("/whoami").unwrap().status, 200);
            let screen = tmux.screen()?;
            let row: Vec<&str> = screen
                .lines()
                .find(|l| l.contains("▶ web"))?
                .split_whitespace()
                .collect();
            (row.get(4)?.parse::<f64>().ok()? > 0.0 && row.get(5)? == &"0.0%").then_some(())
        },
    );

    tmux.keys("+");
    wait_for("desired 3 in the admin API", T, || {
        (stack.service("web")?["desired"] == 3).then_some(())
    });
    let screen = tmux.wait_screen(
        "the third replica on screen",
        &["web: scaled to 3 replicas", "3/3", "web/2"],
    );
    assert!(screen.contains("web/2"), "{screen}");

    tmux.keys("q");
    wait_for("shoal top to quit", T, || {
        tmux.screen().is_none().then_some(())
    });
    let exit = wait_for("shoal top's exit code", T, || {
        Some(read(&stack.path().join("top.exit"))).filter(|s| !s.is_empty())
    });
    assert_eq!(
        exit.trim(),
        "0",
        "stderr: {}",
        read(&stack.path().join("top.stderr"))
    );
}

#[test]
fn top_with_a_wrong_admin_address_fails_before_drawing() {
    let dir = tempfile::tempdir().unwrap();
    let nobody = format!("127.0.0.1:{}", free_port());
    let out = run_in(dir.path(), &["top", "--admin", &nobody]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot reach the admin API at {nobody}")),
        "{err}"
    );
    assert!(
        !stdout(&out).contains("\x1b[?1049h"),
        "no alternate screen: {:?}",
        stdout(&out)
    );
}
