//! The scenario's side of the session clients: child processes, their commands and events.

use std::io::Write;
use std::process::{ChildStdin, Command, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _, Result};

use super::{Record, SessionArgs};
use crate::procs::EventChild;

/// One `sluice-bench sessions` process; killed on drop.
#[derive(Debug)]
pub struct SessionChild {
    child: EventChild,
    stdin: Option<ChildStdin>,
    /// Its latest `progress` (or `ready`) counters.
    latest: serde_json::Value,
    /// Whether it said `ready`.
    ready: bool,
}

impl SessionChild {
    pub fn spawn(name: &str, a: &SessionArgs) -> Result<SessionChild> {
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let mut cmd = Command::new(exe);
        cmd.arg("sessions")
            .args(["--addr", &a.addr.to_string()])
            .args(["--connections", &a.connections.to_string()])
            .args(["--first-index", &a.first_index.to_string()])
            .args(["--connect-rate", &a.connect_rate.to_string()])
            .args(["--mqtt", a.mqtt.arg()])
            .args(["--keepalive", &a.keepalive.to_string()])
            .args(["--prefix", &a.prefix])
            .args(["--reconnect-delay-ms", &a.reconnect_delay_ms.to_string()])
            .args(["--reconnect-jitter-ms", &a.reconnect_jitter_ms.to_string()])
            .args(["--reconnect-deadline", &a.reconnect_deadline.to_string()])
            .args(["--setup-deadline", &a.setup_deadline.to_string()])
            .stdin(Stdio::piped())
            .stderr(Stdio::inherit());
        if a.clean {
            cmd.arg("--clean");
        }
        if a.subscribe {
            cmd.arg("--subscribe");
        }
        let mut child = EventChild::spawn(name, &mut cmd)?;
        let stdin = child.take_stdin();
        Ok(SessionChild {
            child,
            stdin,
            latest: serde_json::Value::Null,
            ready: false,
        })
    }

    fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("already stopped"))?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Takes in the events that arrived; keeps the latest counters.
    fn poll(&mut self) {
        while let Some(v) = self.child.try_event() {
            self.ready |= v["event"] == "ready";
            if v["event"] == "progress" || v["event"] == "ready" {
                self.latest = v;
            }
        }
    }

    fn counter(&self, name: &str) -> u64 {
        self.latest[name].as_u64().unwrap_or(0)
    }
}

/// Session-client processes sharing one scenario's sessions.
#[derive(Debug)]
pub struct SessionGroup {
    pub children: Vec<SessionChild>,
}

impl SessionGroup {
    /// Splits `total` sessions over `processes` children; `args(count, first_index)` gives
    /// each child's arguments.
    pub fn spawn(
        total: u64,
        processes: u64,
        args: impl Fn(u64, u64) -> SessionArgs,
    ) -> Result<SessionGroup> {
        let children = crate::loadgen::split(total, processes)
            .enumerate()
            .map(|(i, (count, first))| {
                SessionChild::spawn(&format!("sessions {i}"), &args(count, first))
            })
            .collect::<Result<_>>()?;
        Ok(SessionGroup { children })
    }

    /// A counter (`connected`, `lost`, `resumed`, `received`, …) summed over the children,
    /// as of their latest progress events.
    pub fn counter(&mut self, name: &str) -> u64 {
        self.children
            .iter_mut()
            .map(|c| {
                c.poll();
                c.counter(name)
            })
            .sum()
    }

    /// Waits until every child's first handshakes are done; returns how many connected, and
    /// with `all`, an error if not all `total` did.
    pub fn wait_ready(&mut self, total: u64, deadline: Instant, all: bool) -> Result<u64> {
        let mut progress = crate::progress::Progress::count("sessions set up", total);
        loop {
            progress.set(self.counter("connected"));
            if self.children.iter().all(|c| c.ready) {
                break;
            }
            if Instant::now() > deadline {
                bail!("the session clients were not ready in time");
            }
            crate::procs::sleep(std::time::Duration::from_millis(20))?;
        }
        drop(progress);
        let failed = self.counter("failed");
        let connected = self.counter("connected");
        if connected < total || failed > 0 {
            let what =
                format!("only {connected} of {total} sessions were set up ({failed} failed)");
            if all {
                bail!(what);
            }
            eprintln!("{what}");
        }
        Ok(connected)
    }

    /// Tells every child to disconnect and reconnect all its connections at once.
    pub fn storm(&mut self) -> Result<()> {
        for c in &mut self.children {
            c.send("storm")?;
        }
        Ok(())
    }

    /// Stops every child; returns every connection's record and the final counters summed.
    pub fn finish(&mut self, deadline: Instant) -> Result<(Vec<Record>, serde_json::Value)> {
        for c in &mut self.children {
            c.stdin = None;
        }
        let mut records = Vec::new();
        let mut sums = serde_json::Map::new();
        for c in &mut self.children {
            let mut v = c.child.wait_event("report", deadline)?;
            let recs: Vec<Record> = serde_json::from_value(v["records"].take())
                .context("parsing a session client's records")?;
            records.extend(recs);
            if let Some(obj) = v.as_object() {
                for (k, x) in obj {
                    if let (Some(n), false) = (x.as_u64(), k == "wall_ns") {
                        let sum = sums.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
                        sums.insert(k.clone(), (sum + n).into());
                    }
                }
            }
            c.child.wait();
        }
        Ok((records, serde_json::Value::Object(sums)))
    }
}
