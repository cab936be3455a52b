//! Stream listeners authenticate with TLS client certificates: the certificate's common
//! name is the principal (stamped as `sluice.principal`) and the listener's `acl` must let
//! it write the route's topic. A Python `ssl` client sends lines; confluent-kafka checks
//! what landed.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{header, Sluice};
use sluice_tests::{python, Broker, ClientAuth, TlsFiles};

/// Sends `lines` over TLS to `port`, with the client certificate when `identity` is given;
/// reads until the server closes. The output says whether the handshake and writes worked.
fn send_lines(port: u16, ca: &Path, identity: Option<(&Path, &Path)>, lines: &str) -> Output {
    let (cert, key) = identity.map_or((String::new(), String::new()), |(c, k)| {
        (c.display().to_string(), k.display().to_string())
    });
    let script = r#"
import socket, ssl, sys
port, ca, cert, key, data = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
if cert:
    ctx.load_cert_chain(cert, key)
with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(data.encode())
        # close_notify, then wait for the server to close.
        raw = s.unwrap()
        while raw.recv(4096):
            pass
print("sent")
"#;
    Command::new(python())
        .args(["-c", script, &port.to_string()])
        .arg(ca)
        .args([&cert, &key, lines])
        .output()
        .expect("python runs")
}

#[test]
fn client_certificates_name_the_principal_and_the_acl_guards_the_topic() {
    let broker = Broker::start().expect("broker");
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::generate(dir.path(), ClientAuth::Required).unwrap();
    let tls = format!(
        "tls = {{ cert_file = {:?}, key_file = {:?}, client_ca_file = {:?} }}",
        files.server_cert, files.server_key, files.ca_cert
    );
    let listener = |name: &str, acl: &str, topic: &str| {
        format!(
            "\n[[listeners]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"stream\"\ncodec = \"lines\"\nauth = \"client_cert\"\n{tls}\nacl = [{{ publish = \"{acl}\" }}]\n\n[[routes]]\nlistener = \"{name}\"\nkafka_topic = \"{topic}\"\nkey = \"\"\nheaders = [\"principal\"]\n"
        )
    };
    let config = common::config(&broker.bootstrap(), "")
        + &listener("devices", "lines.{username}", "lines.sluice-test-client")
        + &listener("others", "others.*", "lines.forbidden");
    let sluice = Sluice::start(&config).expect("sluice starts");
    let identity = files.client_identity();

    // No certificate: the server refuses the handshake (the client may not notice, as
    // TLS 1.3 clients send data before hearing about it), and nothing is written: the
    // topic below holds exactly the three records of the good client.
    let port = sluice.listeners["devices"].port();
    send_lines(port, &files.ca_cert, None, "anonymous\n");
    // A certificate whose principal the ACL does not allow: closed before anything is read.
    let others = sluice.listeners["others"].port();
    send_lines(others, &files.ca_cert, identity, "forbidden\n");
    // The certificate's common name is the principal.
    let out = send_lines(port, &files.ca_cert, identity, "one\ntwo\nthree\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let kafka = broker.kafka().timeout(Duration::from_secs(60));
    let records = kafka
        .consume_all("lines.sluice-test-client", 3, Duration::from_secs(60))
        .unwrap();
    let mut values: Vec<_> = records
        .iter()
        .map(|r| {
            assert_eq!(
                header(r, "sluice.principal"),
                Some(&b"sluice-test-client"[..])
            );
            String::from_utf8(r.value.clone().unwrap()).unwrap()
        })
        .collect();
    values.sort();
    assert_eq!(values, ["one", "three", "two"]);
    let forbidden = kafka
        .consume_all("lines.forbidden", 0, Duration::from_secs(30))
        .unwrap();
    assert!(forbidden.is_empty(), "{forbidden:?}");
    let auth = sluice
        .metric_where("sluice_connection_errors_total", "kind=\"auth\"")
        .unwrap();
    assert_eq!(auth, 1, "the refused connection is counted");
}
