//! The load generator's own behaviour, against a server that never answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Connections of the test; few enough for any machine.
const CONNECTIONS: usize = 40;

/// `sluice-bench loadgen --control` opening `connections` idle connections to `addr`, its
/// stdin and stdout piped.
fn loadgen(addr: SocketAddr, connections: usize, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .args(["loadgen", "--control", "--addr", &addr.to_string()])
        .args(["--connections", &connections.to_string()])
        .args(["--connect-rate", "1000", "--shards", "1"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning the load generator")
}

/// A stopping load generator abandons the handshakes still in progress instead of waiting
/// out their CONNACK timeout (30 s): on an overloaded machine a million-connection run
/// otherwise cannot close in time. The server here accepts every TCP connection and never
/// sends a CONNACK, so every handshake is in progress when the run stops.
#[test]
fn stopping_abandons_handshakes_in_progress() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    {
        let accepted = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming().flatten() {
                held.push(s);
                accepted.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let mut child = loadgen(addr, CONNECTIONS, &[]);
    let stdout = child.stdout.take().expect("stdout");
    let (events, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = events.send(v);
            }
        }
    });

    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted.load(Ordering::SeqCst) < CONNECTIONS {
        assert!(
            Instant::now() < deadline,
            "the load generator did not connect"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(child.stdin.take()); // the scenario's "stop"

    // Well inside the 30 s CONNACK timeout that a handshake would otherwise wait out.
    let deadline = Instant::now() + Duration::from_secs(15);
    let report = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = received
            .recv_timeout(left)
            .expect("no report before the CONNACK timeout");
        if v["event"] == "report" {
            break v;
        }
    };
    assert_eq!(report["abandoned"], CONNECTIONS as u64, "{report}");
    assert_eq!(report["connected"], 0, "{report}");
    assert_eq!(report["connack_timeouts"], 0, "{report}");
    let status = child.wait().expect("waiting for the load generator");
    assert!(status.success(), "{status}");
}

/// With `--connect-retries 1`, a connection the server closed before CONNACK is attempted
/// again and counted: here the server closes the first attempt of every connection and
/// answers the second.
#[test]
fn a_closed_handshake_is_retried_and_counted() {
    const N: usize = 10;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (i, s) in listener.incoming().flatten().enumerate() {
            if i < N {
                drop(s); // the first attempts: closed before CONNACK
                continue;
            }
            let mut s = s;
            let mut connect = [0u8; 2];
            // CONNECT's fixed header; the rest of it is not needed to answer.
            if s.read_exact(&mut connect).is_ok() {
                let _ = s.write_all(&[0x20, 0x02, 0x00, 0x00]); // CONNACK, accepted
            }
            held.push(s);
        }
    });
    let mut child = loadgen(addr, N, &["--connect-retries", "1"]);
    let stdout = child.stdout.take().expect("stdout");
    let mut events = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok());
    // Bounded by the load generator's own connect deadline.
    let connected = events
        .find(|v| v["event"] == "connected")
        .expect("a connected event");
    assert_eq!(connected["connected"], N as u64, "{connected}");
    assert_eq!(connected["retries"], N as u64, "{connected}");
    assert_eq!(connected["failed"], 0, "{connected}");
    drop(child.stdin.take());
    let report = events.find(|v| v["event"] == "report").expect("a report");
    assert_eq!(report["connected"], N as u64, "{report}");
    assert!(child.wait().expect("waiting").success());
}
