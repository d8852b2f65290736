//! Child processes of the demo: every part of the demo runs as a child process of this same
//! binary (`std::env::current_exe()`), optionally inside a network namespace
//! (`ip netns exec NS <exe> ...`).
//!
//! Invariants:
//! * every spawned child is owned by a [`Children`] guard; dropping the guard (normal return,
//!   error, panic unwinding, or the signal path in `super`) sends SIGTERM to each child by PID,
//!   waits a bounded time, then SIGKILLs what is left; `kill_on_drop` is the backstop;
//! * a child's stdout and stderr go to `DIR/logs/<name>.log`; stdout lines are also kept in
//!   memory so the demo can wait for a readiness line ("... listening on ADDR");
//! * every wait is bounded by a deadline and its error names the child and its log file.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// How long a child gets to exit after SIGTERM before it is SIGKILLed.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// Where and how to run a child: the binary, and optionally the network namespace.
#[derive(Clone, Debug)]
pub struct Launcher {
    exe: PathBuf,
    logs: PathBuf,
}

/// What a child printed on stdout so far, and whether stdout has closed (the child exited).
#[derive(Clone, Debug, Default)]
pub struct Output {
    pub lines: Vec<String>,
    pub closed: bool,
}

/// One running child process.
#[derive(Debug)]
pub struct Running {
    pub name: String,
    pub log: PathBuf,
    pid: Option<u32>,
    child: Child,
    /// Fed by the task that copies the child's stdout into its log.
    output: watch::Receiver<Output>,
}

/// The guard owning every long-running child; see the module invariants.
#[derive(Debug, Default)]
pub struct Children {
    running: Vec<Running>,
}

/// The result of a short-lived child (`ca init`, `demo call` ...).
#[derive(Debug)]
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

// === impl Launcher ===

impl Launcher {
    /// Children run `exe`; their logs go to `logs/`.
    pub fn new(exe: PathBuf, logs: PathBuf) -> Self {
        Self { exe, logs }
    }

    pub fn exe(&self) -> &Path {
        &self.exe
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    fn command(&self, netns: Option<&str>, args: &[String]) -> Command {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.arg("netns").arg("exec").arg(ns).arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        cmd.args(args);
        // Logs are files: no terminal colour codes in them.
        cmd.env("NO_COLOR", "1");
        cmd.stdin(Stdio::null());
        cmd.kill_on_drop(true);
        cmd
    }

    /// Spawns a long-running child named `name`; its output goes to `DIR/logs/<name>.log`.
    pub fn spawn(
        &self,
        name: &str,
        netns: Option<&str>,
        args: &[String],
    ) -> anyhow::Result<Running> {
        let log = self.log_path(name);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot create log file {}", log.display()))?;
        let _ = writeln!(file, "# {}", describe(&self.exe, netns, args));
        let stderr = file
            .try_clone()
            .with_context(|| format!("cannot share log file {}", log.display()))?;
        let mut cmd = self.command(netns, args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::from(stderr));
        let mut child = cmd.spawn().with_context(|| {
            format!("cannot start {name}: {}", describe(&self.exe, netns, args))
        })?;
        let pid = child.id();
        let (tx, rx) = watch::channel(Output::default());
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(copy_stdout(stdout, file, tx));
        }
        Ok(Running {
            name: name.to_owned(),
            log,
            pid,
            child,
            output: rx,
        })
    }

    /// Runs a short-lived child to completion, bounded by `deadline`; its output is returned
    /// and appended to `DIR/logs/<log_name>.log`.
    pub async fn run(
        &self,
        log_name: &str,
        netns: Option<&str>,
        args: &[String],
        deadline: Duration,
    ) -> anyhow::Result<Finished> {
        let mut cmd = self.command(netns, args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let what = describe(&self.exe, netns, args);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        let out = match tokio::time::timeout(deadline, child.wait_with_output()).await {
            Ok(r) => r.with_context(|| format!("cannot wait for {what}"))?,
            // The child is killed when its handle, owned by the dropped future, is dropped.
            Err(_) => bail!(
                "{what} did not finish within {}",
                humantime::format_duration(deadline)
            ),
        };
        let finished = Finished {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let log = self.log_path(log_name);
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&log) {
            let _ = writeln!(
                f,
                "# {what}\n{}{}# exit: {}",
                finished.stdout, finished.stderr, finished.status
            );
        }
        Ok(finished)
    }

    /// Like [`run`](Self::run), but a non-zero exit is an error carrying the child's stderr.
    pub async fn run_ok(
        &self,
        log_name: &str,
        netns: Option<&str>,
        args: &[String],
        deadline: Duration,
    ) -> anyhow::Result<Finished> {
        let f = self.run(log_name, netns, args, deadline).await?;
        if !f.status.success() {
            bail!(
                "`fedgate {}` failed ({}): {}",
                args.join(" "),
                f.status,
                f.stderr.trim()
            );
        }
        Ok(f)
    }
}

// === impl Running ===

impl Running {
    /// Waits until the child prints a stdout line for which `find` returns `Some`, and returns
    /// that value. Fails if the child exits first or `deadline` passes.
    pub async fn wait_line<T>(
        &mut self,
        what: &str,
        deadline: Duration,
        mut find: impl FnMut(&str) -> Option<T>,
    ) -> anyhow::Result<T> {
        let mut rx = self.output.clone();
        let mut seen = 0;
        let started = Instant::now();
        loop {
            {
                let out = rx.borrow_and_update();
                for line in &out.lines[seen..] {
                    if let Some(v) = find(line) {
                        return Ok(v);
                    }
                }
                seen = out.lines.len();
                if out.closed {
                    bail!(
                        "{} exited before {what}; see {}",
                        self.name,
                        self.log.display()
                    );
                }
            }
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
                bail!(
                    "{} did not report {what} within {}; see {}",
                    self.name,
                    humantime::format_duration(deadline),
                    self.log.display()
                );
            }
        }
    }

    /// The child's PID while it has not been stopped.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Whether the child has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the child: SIGTERM, a bounded wait, then SIGKILL.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.pid.take() {
            signal(pid, Signal::SIGTERM);
            if tokio::time::timeout(TERM_GRACE, self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
            }
        }
    }

    /// The synchronous variant of [`stop`](Self::stop), for `Drop`.
    fn stop_blocking(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        signal(pid, Signal::SIGTERM);
        let started = Instant::now();
        // Polls for the child's exit (bounded by TERM_GRACE); Drop cannot await.
        while started.elapsed() < TERM_GRACE {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.start_kill();
        let _ = self.child.try_wait();
    }
}

// === impl Children ===

impl Children {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes ownership of `child`; returns its index for [`get`](Self::get).
    pub fn adopt(&mut self, child: Running) -> usize {
        self.running.push(child);
        self.running.len() - 1
    }

    pub fn get(&mut self, index: usize) -> &mut Running {
        &mut self.running[index]
    }

    /// Replaces the child at `index` (after a restart), stopping the old one first.
    pub async fn replace(&mut self, index: usize, child: Running) {
        self.running[index].stop().await;
        self.running[index] = child;
    }

    /// Names of children that have exited although nobody stopped them.
    pub fn exited(&mut self) -> Vec<String> {
        let mut dead = Vec::new();
        for c in &mut self.running {
            if c.pid.is_some() && c.has_exited() {
                dead.push(c.name.clone());
            }
        }
        dead
    }

    /// Stops every child, in reverse start order.
    pub async fn stop_all(&mut self) {
        for c in self.running.iter_mut().rev() {
            c.stop().await;
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in self.running.iter_mut().rev() {
            c.stop_blocking();
        }
    }
}

fn signal(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Copies a child's stdout into its log file and the line buffer; marks it closed at EOF.
async fn copy_stdout(
    stdout: tokio::process::ChildStdout,
    mut log: File,
    tx: watch::Sender<Output>,
) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let _ = writeln!(log, "{line}");
        // Bounded: keep at most the first lines a child prints; readiness lines come early.
        tx.send_modify(|o| {
            if o.lines.len() < 1000 {
                o.lines.push(line);
            }
        });
    }
    tx.send_modify(|o| o.closed = true);
}

/// The command line of a child, for logs and error messages.
pub fn describe(exe: &Path, netns: Option<&str>, args: &[String]) -> String {
    let mut s = String::new();
    if let Some(ns) = netns {
        s.push_str(&format!("ip netns exec {ns} "));
    }
    s.push_str(&exe.display().to_string());
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}
