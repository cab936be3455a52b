//! The subscribing clients of the delivery tests: mosquitto_sub, the paho-mqtt session
//! client and paho-mqtt scripts, run as processes whose output the tests read.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::Sluice;

/// A mosquitto_sub that exits after `count` messages, printing
/// `topic|payload|qos|retain|content type|user properties` lines.
pub struct Subscriber {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Subscriber {
    /// A failed assertion must not leave mosquitto_sub running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Subscriber {
    /// Subscribes and waits for the SUBACK (sluice sends it once its Kafka readers are
    /// tailing, so everything produced afterwards is delivered).
    pub fn start(
        sluice: &Sluice,
        filter: &str,
        qos: u8,
        version: &str,
        count: usize,
    ) -> Subscriber {
        Subscriber::with_args(sluice, filter, qos, version, count, &[])
    }

    /// [`Subscriber::start`] with more mosquitto_sub arguments.
    pub fn with_args(
        sluice: &Sluice,
        filter: &str,
        qos: u8,
        version: &str,
        count: usize,
        extra: &[&str],
    ) -> Subscriber {
        // Line-buffered, so the SUBACK line arrives when it is printed.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(["-h", &sluice.mqtt.ip().to_string()])
            .args(["-p", &sluice.mqtt.port().to_string()])
            .args(["-t", filter, "-q", &qos.to_string(), "-V", version])
            .args(["-C", &count.to_string(), "-F", "%t|%p|%q|%r|%C|%P", "-d"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx.recv_timeout(left).expect("a SUBACK within 30 s");
            if line.contains("received SUBACK") {
                break;
            }
        }
        Subscriber { child, lines: rx }
    }

    /// The messages, once mosquitto_sub received its count and exited.
    pub fn messages(self) -> Vec<String> {
        let (out, status) = self.finish();
        assert!(
            status.success(),
            "mosquitto_sub exited with {status}: got {out:?}"
        );
        out
    }

    /// The messages and how mosquitto_sub exited (27: its `-W` timeout passed).
    pub fn finish(mut self) -> (Vec<String>, std::process::ExitStatus) {
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            // Debug lines start with "Client " or "Subscribed "; messages are
            // topic|payload|qos.
            if !line.starts_with("Client ") && !line.starts_with("Subscribed ") {
                out.push(line);
            }
        }
        // Its stdout closed: it is exiting (or the deadline passed and it is killed below).
        let mut exited = None;
        sluice_tests::poll_until(Duration::from_secs(5), || {
            exited = self.child.try_wait().unwrap();
            exited.is_some()
        });
        let _ = self.child.kill();
        let status = exited.unwrap_or_else(|| panic!("mosquitto_sub still waiting; got {out:?}"));
        out.sort();
        (out, status)
    }
}

/// proxy/tests/clients/session_client.py, running: its JSON events line by line.
pub struct SessionClient {
    child: Child,
    events: mpsc::Receiver<serde_json::Value>,
}

impl Drop for SessionClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SessionClient {
    pub fn start(sluice: &Sluice, client_id: &str, args: &[&str]) -> SessionClient {
        let mut child = Command::new(sluice_tests::python())
            .arg(super::script("session_client.py"))
            .args([
                &sluice.mqtt.ip().to_string(),
                &sluice.mqtt.port().to_string(),
                client_id,
            ])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line).expect("a JSON event");
                if tx.send(event).is_err() {
                    return;
                }
            }
        });
        SessionClient { child, events: rx }
    }

    /// Waits for the next event named `name`, returning it.
    pub fn wait(&self, name: &str) -> serde_json::Value {
        loop {
            let event = self
                .events
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no {name} event within 30 s"));
            if event["event"] == name {
                return event;
            }
        }
    }

    /// Every event until the client exits; it must exit 0.
    pub fn finish(mut self) -> Vec<serde_json::Value> {
        let events: Vec<_> =
            std::iter::from_fn(|| self.events.recv_timeout(Duration::from_secs(60)).ok()).collect();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "session client failed: {events:?}");
        events
    }
}

pub fn payloads(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "message")
        .map(|e| e["payload"].as_str().unwrap().to_owned())
        .collect()
}

/// A paho-mqtt script of proxy/tests/clients connected to `sluice` (its arguments: host
/// and port), and its output lines.
pub fn paho_script(sluice: &Sluice, name: &str) -> (super::Guard, Lines<BufReader<ChildStdout>>) {
    let mut child = super::Guard(
        Command::new(sluice_tests::python())
            .arg(super::script(name))
            .args([sluice.mqtt.ip().to_string(), sluice.mqtt.port().to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python runs"),
    );
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// The next line, a JSON object.
pub fn next_json(lines: &mut Lines<BufReader<ChildStdout>>) -> serde_json::Value {
    serde_json::from_str(&lines.next().expect("a line").unwrap()).unwrap()
}
