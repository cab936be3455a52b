//! A load-generator child process, driven by a scenario: `sluice-bench loadgen --control`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};

use super::{LoadgenArgs, Mode, Report};
use crate::procs;

/// A running `loadgen --control` process; killed on drop.
#[derive(Debug)]
pub struct LoadgenChild {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<serde_json::Value>,
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
            .args(["--keepalive", &args.keepalive.to_string()])
            .args([
                "--mode",
                match args.mode {
                    Mode::Idle => "idle",
                    Mode::Publish => "publish",
                },
            ])
            .args(["--rate", &args.rate.to_string()])
            .args(["--duration", &args.duration.to_string()])
            .args(["--qos", &args.qos.to_string()])
            .args(["--size", &args.size.to_string()])
            .args(["--inflight", &args.inflight.to_string()])
            .args(["--shards", &args.shards.to_string()])
            .args(["--first-index", &args.first_index.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = procs::spawn_guarded(&mut cmd).context("starting a loadgen child")?;
        let stdout = child.stdout.take().expect("piped");
        let stdin = child.stdin.take();
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
        Ok(LoadgenChild {
            child,
            stdin,
            events,
            name: name.to_owned(),
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the event named `name` (other events are skipped) until `deadline`.
    pub fn wait_event(&mut self, name: &str, deadline: Instant) -> Result<serde_json::Value> {
        loop {
            procs::check_interrupted()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("{}: no `{name}` event in time", self.name);
            }
            match self
                .events
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(v) if v["event"] == name => return Ok(v),
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.try_wait().ok().flatten();
                    bail!("{}: exited ({status:?}) before `{name}`", self.name);
                }
            }
        }
    }

    /// Tells the child to start publishing.
    pub fn go(&mut self) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("{}: already stopped", self.name))?;
        stdin.write_all(b"go\n")?;
        stdin.flush()?;
        Ok(())
    }

    /// Tells the child to close its connections (ends its stdin).
    pub fn stop(&mut self) {
        self.stdin = None;
    }

    /// Stops the child and returns its report.
    pub fn finish(&mut self, deadline: Instant) -> Result<Report> {
        self.stop();
        let v = self.wait_event("report", deadline)?;
        let report: Report = serde_json::from_value(v).context("parsing a loadgen report")?;
        let _ = self.child.wait();
        Ok(report)
    }
}

impl Drop for LoadgenChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
