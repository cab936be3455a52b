//! Child processes the harness starts (tansu, stunnel): output captured in a log file,
//! signalled only while not yet reaped (so a recycled pid is never hit), and stopped and
//! reaped on drop.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::wait::poll_until;

/// How long a process gets to exit after the polite signal before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct Service {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    log: PathBuf,
    /// Length of the log when this process started: earlier runs wrote what is before it.
    log_start: u64,
    drop_signal: Signal,
}

impl Service {
    /// Spawns `cmd` with stdin closed and stdout and stderr appended to `log`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot create log file {}", log.display()))?;
        let log_start = file.metadata()?.len();
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            status: None,
            log: log.to_owned(),
            log_start,
            drop_signal: Signal::SIGTERM,
        })
    }

    /// The signal drop sends first (default SIGTERM).
    pub(crate) fn set_drop_signal(&mut self, signal: Signal) {
        self.drop_signal = signal;
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status if the process has ended (and is now reaped).
    pub(crate) fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    pub(crate) fn signal(&mut self, signal: Signal) -> Result<()> {
        if let Some(status) = self.exit_status() {
            anyhow::bail!("{} already exited ({status})", self.name);
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, signal).with_context(|| format!("cannot send {signal} to {}", self.name))
    }

    /// Waits up to `deadline` for the process to exit on its own.
    pub(crate) fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        poll_until(deadline, || self.exit_status().is_some());
        self.status
    }

    /// Sends `polite` (after SIGCONT, in case the process is paused), waits, then SIGKILLs.
    pub(crate) fn stop_with(&mut self, polite: Signal) -> ExitStatus {
        if let Some(status) = self.exit_status() {
            return status;
        }
        let _ = self.signal(Signal::SIGCONT);
        let _ = self.signal(polite);
        if let Some(status) = self.wait_exit(STOP_GRACE) {
            return status;
        }
        eprintln!(
            "{} (pid {}) ignored {polite} for {STOP_GRACE:?}; killing it",
            self.name,
            self.pid()
        );
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for a killed child");
        self.status = Some(status);
        status
    }

    /// What this process has written to its log so far.
    pub(crate) fn new_output(&self) -> String {
        match fs::read(&self.log) {
            Ok(bytes) => {
                let start = (self.log_start as usize).min(bytes.len());
                String::from_utf8_lossy(&bytes[start..]).into_owned()
            }
            Err(_) => String::new(),
        }
    }

    /// The last `lines` lines of the log, for error messages.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop_with(self.drop_signal);
    }
}

pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let skipped = all.len().saturating_sub(lines);
            let mut out = String::new();
            if skipped > 0 {
                out.push_str(&format!("[... {skipped} earlier lines ...]\n"));
            }
            for line in &all[skipped..] {
                out.push_str(line);
                out.push('\n');
            }
            out
        }
        Err(e) => format!("[cannot read {}: {e}]\n", path.display()),
    }
}
