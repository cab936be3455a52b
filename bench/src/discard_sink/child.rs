//! The discard sink as a child process of a scenario (`sluice-bench discard-sink`), so that
//! its CPU time is its own and can be read from /proc.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};

use super::SinkSummary;
use crate::procs::EventChild;

/// A running discard sink; killed on drop, or stopped with its summary by
/// [`DiscardSinkProc::stop`].
#[derive(Debug)]
pub struct DiscardSinkProc {
    child: EventChild,
    addr: SocketAddr,
}

impl DiscardSinkProc {
    /// Starts a sink on a free loopback port whose topics default to `partitions`
    /// partitions, and waits for its `listening` line.
    pub fn start(partitions: i32) -> Result<DiscardSinkProc> {
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let mut child = EventChild::spawn(
            "the discard sink",
            Command::new(exe)
                .arg("discard-sink")
                .args(["--listen", "127.0.0.1:0"])
                .args(["--partitions", &partitions.to_string()])
                .stdin(Stdio::null())
                .stderr(Stdio::inherit()),
        )?;
        let line = child.wait_event("listening", Instant::now() + Duration::from_secs(10))?;
        let addr = line["addr"]
            .as_str()
            .ok_or_else(|| anyhow!("no address in the discard sink's line {line}"))?
            .parse()
            .context("the discard sink's address")?;
        Ok(DiscardSinkProc { child, addr })
    }

    /// `host:port` for clients.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Stops the sink (SIGTERM) and returns what it counted.
    pub fn stop(mut self) -> Result<SinkSummary> {
        self.child.terminate()?;
        let line = self
            .child
            .wait_event("summary", Instant::now() + Duration::from_secs(10))?;
        self.child.wait();
        serde_json::from_value(line).context("parsing the discard sink's summary")
    }
}
