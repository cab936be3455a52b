//! The discard sink as a child process of a scenario (`sluice-bench discard-sink`), so that
//! its CPU time is its own and can be read from /proc.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};

use super::SinkSummary;
use crate::procs;

/// A running discard sink; killed on drop, or stopped with its summary by
/// [`DiscardSinkProc::stop`].
#[derive(Debug)]
pub struct DiscardSinkProc {
    child: Child,
    addr: SocketAddr,
    events: Receiver<serde_json::Value>,
}

impl DiscardSinkProc {
    /// Starts a sink on a free loopback port whose topics default to `partitions`
    /// partitions, and waits for its `listening` line.
    pub fn start(partitions: i32) -> Result<DiscardSinkProc> {
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let mut child = procs::spawn_guarded(
            Command::new(exe)
                .arg("discard-sink")
                .args(["--listen", "127.0.0.1:0"])
                .args(["--partitions", &partitions.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .context("starting the discard sink")?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        let mut sink = DiscardSinkProc {
            child,
            addr: ([127, 0, 0, 1], 0).into(),
            events,
        };
        let line = sink.wait_event("listening", Instant::now() + Duration::from_secs(10))?;
        sink.addr = line["addr"]
            .as_str()
            .ok_or_else(|| anyhow!("no address in the discard sink's line {line}"))?
            .parse()
            .context("the discard sink's address")?;
        Ok(sink)
    }

    /// `host:port` for clients.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the sink (SIGTERM) and returns what it counted.
    pub fn stop(mut self) -> Result<SinkSummary> {
        let pid = libc::pid_t::try_from(self.child.id()).context("a process id")?;
        // SAFETY: kill has no memory-safety preconditions; the pid is our own live child.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            bail!(
                "cannot signal the discard sink: {}",
                std::io::Error::last_os_error()
            );
        }
        let line = self.wait_event("summary", Instant::now() + Duration::from_secs(10))?;
        let _ = self.child.wait();
        serde_json::from_value(line).context("parsing the discard sink's summary")
    }

    fn wait_event(&mut self, name: &str, deadline: Instant) -> Result<serde_json::Value> {
        loop {
            procs::check_interrupted()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("the discard sink printed no `{name}` line in time");
            }
            match self
                .events
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(v) if v["event"] == name => return Ok(v),
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.try_wait().ok().flatten();
                    bail!("the discard sink exited ({status:?}) before its `{name}` line");
                }
            }
        }
    }
}

impl Drop for DiscardSinkProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
