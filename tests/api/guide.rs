//! The consumer loops of docs/FOLLOWING.md, run as the guide shows them against a service: each
//! prints every event once, and a consumer stopped and started again goes on from its saved
//! position with nothing repeated or missed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{TestApp, event, spawn_app};

#[path = "../../examples/follow.rs"]
#[allow(dead_code)]
mod example;

const GUIDE: &str = include_str!("../../docs/FOLLOWING.md");

/// The code block of `fence` (`sh`, `rust`) that first follows the heading `heading` in the guide.
fn guide_block(heading: &str, fence: &str) -> &'static str {
    let section = &GUIDE[GUIDE.find(heading).expect("the guide has the heading")..];
    let open = format!("```{fence}\n");
    let start = section.find(&open).expect("the section has the block") + open.len();
    let len = section[start..].find("```\n").expect("the block ends");
    &section[start..start + len]
}

/// A consumer of the guide while it runs.
enum Consumer {
    /// The shell loop, run by bash in its own process group, in `dir` (its `position` file and
    /// its printed lines, `out`).
    Shell {
        child: Box<tokio::process::Child>,
        dir: PathBuf,
        out: PathBuf,
    },
    /// The Rust `follow`, in a task, with what it handled and saved.
    Rust {
        task: tokio::task::JoinHandle<()>,
        lines: Arc<Mutex<Vec<String>>>,
        saved: Arc<Mutex<Option<String>>>,
    },
}

impl Consumer {
    /// The loop's `run`-th run, with `token` as `CALRY_HOOKS_TOKEN` (or none).
    fn shell(app: &TestApp, dir: &Path, run: usize, token: Option<&str>) -> Consumer {
        let script = dir.join("follow.sh");
        std::fs::write(&script, guide_block("## In shell", "sh")).unwrap();
        let out = dir.join(format!("out-{run}"));
        let tmp = dir.join("tmp"); // where its `mktemp` writes
        std::fs::create_dir_all(&tmp).unwrap();
        let mut command = tokio::process::Command::new("bash");
        match token {
            Some(token) => command.env("CALRY_HOOKS_TOKEN", token),
            None => command.env_remove("CALRY_HOOKS_TOKEN"),
        };
        let child = command
            .arg(&script)
            .current_dir(dir)
            .env("CALRY_HOOKS_URL", &app.address)
            .env("TMPDIR", &tmp)
            .stdout(std::fs::File::create(&out).unwrap())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("bash runs");
        Consumer::Shell {
            child: Box::new(child),
            dir: dir.to_owned(),
            out,
        }
    }

    fn rust(app: &TestApp, after: Option<String>) -> Consumer {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let saved = Arc::new(Mutex::new(after.clone()));
        let (handled, save) = (lines.clone(), saved.clone());
        let base = app.address.clone();
        let task = tokio::spawn(async move {
            let handle = move |e: &Value| handled.lock().unwrap().push(example::line(e));
            let save = move |next: &str| *save.lock().unwrap() = Some(next.to_owned());
            let refused = example::follow(&base, None, after, handle, save).await;
            panic!("the feed refused the consumer: {refused}");
        });
        Consumer::Rust { task, lines, saved }
    }

    /// The lines it printed: hook id, type, workspace.
    fn lines(&self) -> Vec<String> {
        match self {
            Consumer::Shell { out, .. } => std::fs::read_to_string(out)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect(),
            Consumer::Rust { lines, .. } => lines.lock().unwrap().clone(),
        }
    }

    fn position(&self) -> Option<String> {
        match self {
            Consumer::Shell { dir, .. } => std::fs::read_to_string(dir.join("position"))
                .ok()
                .map(|p| p.trim_end().to_owned()),
            Consumer::Rust { saved, .. } => saved.lock().unwrap().clone(),
        }
    }

    /// Waits until it has saved `end` (the feed's end: every line it prints for what comes
    /// before is out by then), and stops it there.
    async fn stop_at(self, end: &str) -> (Vec<String>, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.position().as_deref() != Some(end) {
            assert!(
                Instant::now() < deadline,
                "the consumer never saved {end}; it printed {:?} and saved {:?}",
                self.lines(),
                self.position()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (lines, position) = (self.lines(), self.position().unwrap());
        self.stop().await;
        (lines, position)
    }

    async fn stop(self) {
        match self {
            Consumer::Shell { mut child, .. } => {
                // The loop and the curl waiting in it, as Ctrl-C or a service manager stops
                // them: a SIGTERM to them all (its `trap` runs then), a SIGKILL if that fails.
                let group = child.id().unwrap() as libc::pid_t;
                unsafe { libc::kill(-group, libc::SIGTERM) };
                let waited = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                if waited.is_err() {
                    unsafe { libc::kill(-group, libc::SIGKILL) };
                    child.wait().await.unwrap();
                    panic!("the shell loop did not stop on SIGTERM");
                }
            }
            Consumer::Rust { task, .. } => task.abort(),
        }
    }
}

/// The feed's end once `hook` is its last event (it shows within a second of its `201`).
async fn end_at(app: &TestApp, hook: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let page = app.get_json("/feed?limit=1000").await;
        // Empty while an older transaction (another test's, in another database) holds every
        // event back, until the service's next look at the horizon passes over it: read again.
        let last = page["items"].as_array().unwrap().last();
        if last.is_some_and(|item| item["hookId"] == hook) {
            return page["next"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "{hook} never showed in the feed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two events stored before the consumer starts, one while it follows; it is stopped, one of
/// them is delivered again and a new one stored; started again from its position, it prints the
/// new one alone.
async fn follow_stop_and_resume(start: impl Fn(&TestApp, Option<String>, usize) -> Consumer) {
    let app = spawn_app().await;
    let deliver = |hook: &'static str| {
        let body = event(
            hook,
            "w",
            Some("a"),
            "sync.complete",
            "2024-03-01T10:00:00Z",
        );
        let app = &app;
        async move { app.deliver(&body).await.status().as_u16() }
    };
    assert_eq!(deliver("g1").await, 201);
    assert_eq!(deliver("g2").await, 201);
    let consumer = start(&app, None, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(deliver("g3").await, 201);
    let end = end_at(&app, "g3").await;
    let (lines, position) = consumer.stop_at(&end).await;
    let line = |hook: &str| format!("{hook} sync.complete w");
    assert_eq!(lines, [line("g1"), line("g2"), line("g3")]);

    assert_eq!(deliver("g3").await, 200);
    assert_eq!(deliver("g4").await, 201);
    let consumer = start(&app, Some(position), 2);
    let end = end_at(&app, "g4").await;
    let (lines, _) = consumer.stop_at(&end).await;
    assert_eq!(lines, [line("g4")], "the run after the restart");
}

#[tokio::test]
async fn the_guides_shell_loop_follows_and_resumes_from_its_position() {
    let dir = crate::helpers::scratch("guide", "");
    std::fs::create_dir_all(&dir).unwrap();
    // The loop keeps its position in ./position, which the second run finds there, saved again
    // meanwhile with a CRLF ending (as an editor on Windows would).
    follow_stop_and_resume(|app, _, run| {
        if run == 2 {
            let saved = std::fs::read_to_string(dir.join("position")).unwrap();
            std::fs::write(dir.join("position"), format!("{}\r\n", saved.trim_end())).unwrap();
        }
        Consumer::shell(app, &dir, run, None)
    })
    .await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With a token, the shell loop reads the feed without the token on any command line (which
/// `ps` shows to every user of the machine).
#[tokio::test]
async fn the_guides_shell_loop_sends_its_token_where_no_process_list_shows_it() {
    let app = spawn_app().await;
    let body = event(
        "t1",
        "w",
        Some("a"),
        "sync.complete",
        "2024-03-01T10:00:00Z",
    );
    assert_eq!(app.deliver(&body).await.status(), 201);
    let token = calry_hooks::auth::create(&app.pool, "", true, &[])
        .await
        .unwrap()
        .token;
    let dir = crate::helpers::scratch("guide-token", "");
    std::fs::create_dir_all(&dir).unwrap();
    let consumer = Consumer::shell(&app, &dir, 1, Some(&token));
    let deadline = Instant::now() + Duration::from_secs(20);
    while consumer.lines() != ["t1 sync.complete w"] {
        assert!(
            Instant::now() < deadline,
            "the loop printed nothing with its token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // It waits in its long poll now, its curl running: no process shows the token.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut looked = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(command) = std::fs::read(entry.path().join("cmdline")) {
            looked += 1;
            let command = String::from_utf8_lossy(&command).replace('\0', " ");
            assert!(
                !command.contains(&token),
                "a command line holds the token: {command}"
            );
        }
    }
    assert!(looked > 2, "{looked} processes looked at");
    // The file that held it goes when the loop is stopped.
    assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 1);
    consumer.stop().await;
    let left: Vec<_> = std::fs::read_dir(dir.join("tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "the token's file is left: {left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_guides_rust_consumer_follows_and_resumes_from_its_position() {
    assert!(
        include_str!("../../examples/follow.rs").contains(guide_block("## In Rust", "rust")),
        "docs/FOLLOWING.md shows examples/follow.rs's `follow`, as it is"
    );
    follow_stop_and_resume(|app, after, _| Consumer::rust(app, after)).await;
}

/// A request the service refuses (here a position it did not give out) stops both loops, saying
/// why, where they used to ask again every 5 s for ever, the shell one in silence.
#[tokio::test]
async fn the_guides_consumers_stop_on_a_refused_request_and_say_why() {
    let app = spawn_app().await;
    let dir = crate::helpers::scratch("guide-refused", "");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("follow.sh"), guide_block("## In shell", "sh")).unwrap();
    // Also what curl would refuse in a URL (a glob's bracket, a control character, a quote):
    // the loop took that for a network failure and asked again for ever.
    for garbage in [
        "garbage\n",
        "[\"cDE6MTA\"]\n",
        "cDE6MTA\u{1a}\n",
        "{\"next\":1}\n",
    ] {
        std::fs::write(dir.join("position"), garbage).unwrap();
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::process::Command::new("bash")
                .arg("follow.sh")
                .current_dir(&dir)
                .env("CALRY_HOOKS_URL", &app.address)
                .env_remove("CALRY_HOOKS_TOKEN")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("the shell loop stops on {garbage:?}"))
        .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{garbage:?}: {said}");
        assert!(
            said.starts_with("feed: 400: ") && said.contains("after"),
            "{garbage:?}: {said}"
        );
    }

    let refused = tokio::time::timeout(
        Duration::from_secs(20),
        example::follow(&app.address, None, Some("garbage".into()), |_| {}, |_| {}),
    )
    .await
    .expect("the Rust loop stops");
    assert_eq!(refused.as_u16(), 400);
    std::fs::remove_dir_all(&dir).unwrap();
}
