//! A load-generator child process, driven by a scenario: `sluice-bench loadgen --control`.

use std::io::Write;
use std::process::{ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};

use super::{LoadgenArgs, Mode, Report};
use crate::procs::{self, EventChild};
use crate::progress::Progress;

/// A running `loadgen --control` process; killed on drop.
#[derive(Debug)]
pub struct LoadgenChild {
    child: EventChild,
    stdin: Option<ChildStdin>,
    name: String,
}

impl LoadgenChild {
    /// Starts a child with `args` (its `--control` is forced on).
    pub fn spawn(name: &str, args: &LoadgenArgs) -> Result<LoadgenChild> {
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let mut cmd = Command::new(exe);
        cmd.arg("loadgen")
            .arg("--control")
            .args(["--addr", &args.addr.to_string()])
            .args(["--connections", &args.connections.to_string()])
            .args(["--connect-rate", &args.connect_rate.to_string()])
            .args(["--mqtt", args.mqtt.arg()])
            .args(["--wire", args.wire.arg()])
            .args(["--path", &args.path])
            .args(["--keepalive", &args.keepalive.to_string()])
            .args([
                "--mode",
                match args.mode {
                    Mode::Idle => "idle",
                    Mode::Publish => "publish",
                    Mode::Subscribe => "subscribe",
                },
            ])
            .args(["--rate", &args.rate.to_string()])
            .args(["--duration", &args.duration.to_string()])
            .args(["--qos", &args.qos.to_string()])
            .args(["--size", &args.size.to_string()])
            .args(["--inflight", &args.inflight.to_string()])
            .args(["--shards", &args.shards.to_string()])
            .args(["--first-index", &args.first_index.to_string()])
            .args(["--connect-retries", &args.connect_retries.to_string()])
            .args(["--filter", &args.filter])
            .stdin(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = EventChild::spawn(name, &mut cmd)?;
        let stdin = child.take_stdin();
        Ok(LoadgenChild {
            child,
            stdin,
            name: name.to_owned(),
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Waits for the event named `name` (other events are skipped) until `deadline`.
    pub fn wait_event(&mut self, name: &str, deadline: Instant) -> Result<serde_json::Value> {
        self.child.wait_event(name, deadline)
    }

    /// Waits for the event named `name` until `deadline`, handing the other events that
    /// arrive meanwhile to `other`.
    pub fn wait_event_with(
        &mut self,
        name: &str,
        deadline: Instant,
        other: impl FnMut(serde_json::Value),
    ) -> Result<serde_json::Value> {
        self.child.wait_event_with(name, deadline, other)
    }

    /// The next event that has already arrived, if any; an error if the child exited.
    pub fn poll_event(&mut self, awaited: &str) -> Result<Option<serde_json::Value>> {
        self.child.poll_event(awaited)
    }

    fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("{}: already stopped", self.name))?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Tells the child to start publishing.
    pub fn go(&mut self) -> Result<()> {
        self.send("go")
    }

    /// Tells subscribers how many messages each stream was sent; the child answers with a
    /// `received` event once they have them all (or stop getting more).
    pub fn expect(&mut self, per_stream: &[u64]) -> Result<()> {
        let counts: Vec<String> = per_stream.iter().map(u64::to_string).collect();
        self.send(&format!("expect {}", counts.join(" ")))
    }

    /// Tells the child to close its connections (ends its stdin).
    pub fn stop(&mut self) {
        self.stdin = None;
    }

    /// Stops the child and returns its report.
    pub fn finish(&mut self, deadline: Instant) -> Result<Report> {
        self.stop();
        let v = self.child.wait_event("report", deadline)?;
        let report: Report = serde_json::from_value(v).context("parsing a loadgen report")?;
        self.child.wait();
        Ok(report)
    }
}

/// The `connected` and `failed` counts of a `connecting` or `connected` event.
fn counts(v: &serde_json::Value) -> (u64, u64) {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    (n("connected"), n("failed"))
}

/// `total` connections split evenly over `processes` (at least 1, at most `total`):
/// each process's (count, first index).
pub fn split(total: u64, processes: u64) -> impl Iterator<Item = (u64, u64)> {
    let processes = processes.clamp(1, total.max(1));
    (0..processes).map(move |i| {
        let first = i * (total / processes) + i.min(total % processes);
        (total / processes + u64::from(i < total % processes), first)
    })
}

/// Load-generator children sharing one scenario's connections.
#[derive(Debug)]
pub struct Group {
    pub children: Vec<LoadgenChild>,
    /// Connections of all children.
    total: u64,
}

/// What a group's `connected` events add up to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Connected {
    pub connected: u64,
    pub failed: u64,
    /// Handshakes attempted again (`--connect-retries`).
    pub retries: u64,
    /// The slowest child's time to its last CONNACK (or SUBACK).
    pub seconds: f64,
    /// Children that never reported `connected` by the deadline: their last progress
    /// (`connecting`) is counted above, and they are named on stderr.
    pub stalled: usize,
}

impl Group {
    /// Splits `total` connections evenly over `processes` children, numbered on from 0;
    /// `args(count, first_index)` gives each child's arguments.
    pub fn spawn(
        total: u64,
        processes: u64,
        args: impl Fn(u64, u64) -> LoadgenArgs,
    ) -> Result<Group> {
        let children = split(total, processes)
            .enumerate()
            .map(|(i, (count, first))| {
                LoadgenChild::spawn(&format!("loadgen {i}"), &args(count, first))
            })
            .collect::<Result<_>>()?;
        Ok(Group { children, total })
    }

    /// Waits for every child's `connected` event (one deadline for all), showing the
    /// progress of the connect phase (from the children's `connecting` events) on stderr
    /// ([`Progress`]). A child still connecting at the deadline counts
    /// with its last progress and as `stalled`: a scenario measures what is open rather
    /// than losing the run to one load generator.
    pub fn wait_connected(&mut self, deadline: Instant) -> Result<Connected> {
        let n = self.children.len();
        let mut connected: Vec<Option<serde_json::Value>> = vec![None; n];
        let mut latest = vec![(0, 0); n];
        let mut progress = Progress::count("connected", self.total);
        let mut stalled = 0;
        while connected.iter().any(Option::is_none) {
            procs::check_interrupted()?;
            if Instant::now() >= deadline {
                for i in (0..n).filter(|i| connected[*i].is_none()) {
                    let (up, failed) = latest[i];
                    progress.println(&format!(
                        "  load generator {} (pid {}) had no `connected` event in time: {up} connected, {failed} failed at its last report",
                        i,
                        self.children[i].pid()
                    ));
                    stalled += 1;
                }
                break;
            }
            for (i, c) in self.children.iter_mut().enumerate() {
                while connected[i].is_none() {
                    let Some(v) = c.poll_event("connected")? else {
                        break;
                    };
                    match v["event"].as_str() {
                        Some("connected") => connected[i] = Some(v),
                        Some("connecting") => latest[i] = counts(&v),
                        _ => {}
                    }
                }
            }
            let (up, failed) = (0..n).fold((0, 0), |(u, f), i| {
                let (cu, cf) = connected[i].as_ref().map_or(latest[i], counts);
                (u + cu, f + cf)
            });
            if failed > 0 {
                progress.detail(format!("{failed} failed"));
            }
            progress.set(up);
            procs::sleep(Duration::from_millis(100))?;
        }
        let mut sum = Connected {
            stalled,
            ..Connected::default()
        };
        for (i, v) in connected.iter().enumerate() {
            let (up, failed) = v.as_ref().map_or(latest[i], counts);
            sum.connected += up;
            sum.failed += failed;
            if let Some(v) = v {
                sum.retries += v["retries"].as_u64().unwrap_or(0);
                sum.seconds = sum.seconds.max(v["seconds"].as_f64().unwrap_or(0.0));
            }
        }
        Ok(sum)
    }

    /// Waits until all `total` connections, opened at `connect_rate` per second in all,
    /// are up (subscribers: subscribed); an error if any failed.
    pub fn wait_all_connected(&mut self, total: u64, connect_rate: f64) -> Result<()> {
        let deadline = Instant::now()
            + Duration::from_secs_f64(total as f64 / connect_rate)
            + Duration::from_secs(90);
        let up = self.wait_connected(deadline)?;
        if up.stalled > 0 {
            bail!("{} load generator(s) stalled while connecting", up.stalled);
        }
        if up.connected < total {
            bail!(
                "only {} of {total} connections were set up ({} failed)",
                up.connected,
                up.failed
            );
        }
        Ok(())
    }

    /// Stops every child and returns their reports combined.
    pub fn finish(&mut self, deadline: Instant) -> Result<Report> {
        // All close at once: one after the other, a dozen children of ~17k connections
        // each outlast any sensible deadline.
        for c in &mut self.children {
            c.stop();
        }
        let mut reports = Vec::new();
        for c in &mut self.children {
            reports.push(c.finish(deadline)?);
        }
        Ok(Report::combine(&reports))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_cover_every_connection_once() {
        let parts: Vec<(u64, u64)> = super::split(10, 3).collect();
        assert_eq!(parts, vec![(4, 0), (3, 4), (3, 7)]);
        assert_eq!(super::split(2, 5).count(), 2);
    }
}
