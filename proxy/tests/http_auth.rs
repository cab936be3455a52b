//! Authentication and topic ACLs on HTTP listeners end to end: curl with `Basic` and
//! `Bearer` credentials, Server-Sent Events and WebSocket clients (node `ws`) with an
//! `access_token` query parameter, checked with confluent-kafka. Refused requests get 401
//! (with a challenge) or 403 and never reach Kafka; accepted records carry
//! `sluice.principal`; a client failing to authenticate does not disturb a good one.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{header, node_modules, script, Lines, Sluice};
use serde_json::Value;
use sluice_tests::{Broker, ClientAuth, ProduceRecord, TlsFiles};

const SECRET: &str = "http-auth integration secret, 32+ bytes";
const WAIT: Duration = Duration::from_secs(60);

fn token(sub: &str, secret: &str) -> String {
    token_until(sub, secret, jsonwebtoken::get_current_timestamp() + 600)
}

fn token_until(sub: &str, secret: &str, exp: u64) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": sub, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// What curl got: status, the `WWW-Authenticate` header, and the body.
#[derive(Debug)]
struct Answer {
    status: u16,
    challenge: Option<String>,
    body: Value,
}

/// `curl -i` with `args`, to `url`.
fn curl(args: &[&str], url: &str) -> Answer {
    let out = Command::new("curl")
        .args(["-si", "--max-time", "30"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let challenge = head.lines().find_map(|l| {
        let (name, value) = l.split_once(": ")?;
        name.eq_ignore_ascii_case("www-authenticate")
            .then(|| value.to_owned())
    });
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
    Answer {
        status,
        challenge,
        body,
    }
}

fn post(addr: SocketAddr, topic: &str, auth: &[&str], value: &str) -> Answer {
    let mut args = auth.to_vec();
    args.extend(["--data-binary", value]);
    curl(&args, &format!("http://{addr}/topics/{topic}"))
}

fn node(name: &str, args: &[&str]) -> Lines {
    let mut cmd = Command::new("node");
    cmd.arg(script(name))
        .args(args)
        .env("NODE_PATH", node_modules());
    Lines::spawn(cmd)
}

#[test]
fn basic_bearer_and_access_token_decide_who_writes_and_reads_what() {
    let broker = Broker::start().expect("broker");
    let kafka = broker.kafka().timeout(WAIT);
    for topic in ["devices.alice", "devices.bob", "alerts"] {
        kafka.create_topic(topic, 2, &[]).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let passwd = common::root().join("proxy/src/auth/testdata/passwd");
    let acl = r#"acl = [{ publish = "devices.{username}", subscribe = "devices.{username}" }, { subscribe = "alerts" }]"#;
    let keys = format!(
        "auth = \"password_file\"\npassword_file = \"{}\"\n{acl}\nwebsocket = {{ acks = true }}",
        passwd.display()
    );
    let config = common::config_with_http(&broker.bootstrap(), "", &keys)
        + &format!(
            "\n[[listeners]]\nname = \"jwt\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"http\"\nauth = \"jwt\"\njwt = {{ algorithm = \"HS256\", secret_file = \"{}\" }}\n{acl}\nwebsocket = {{ acks = true }}\n",
            secret.display()
        );
    let sluice = Sluice::start(&config).expect("sluice starts");
    let (basic, jwt) = (sluice.listeners["http"], sluice.listeners["jwt"]);
    let bob = token("bob", SECRET);
    let bearer_bob = format!("Authorization: Bearer {bob}");

    // A subscriber with a token in the URL, as a browser's EventSource would be, opened
    // first: the failing clients below must not disturb it.
    let sse = Lines::spawn({
        let mut cmd = Command::new("curl");
        cmd.args(["-sSN", "--max-time", "120"]).arg(format!(
            "http://{jwt}/topics/alerts/events?access_token={bob}&from=earliest"
        ));
        cmd
    });
    sse.find(WAIT, "the stream's opening id", |l| l.starts_with("id: "));

    // Missing, wrong and malformed credentials: 401 with a challenge and a JSON error.
    let mut refused = 0;
    for (addr, auth, scheme) in [
        (basic, vec![], "Basic"),
        (basic, vec!["-u", "alice:builder"], "Basic"),
        (basic, vec!["-u", "mallory:wonderland"], "Basic"),
        (basic, vec!["-H", "Authorization: Basic !!!"], "Basic"),
        (jwt, vec![], "Bearer"),
        (jwt, vec!["-u", "bob:builder"], "Bearer"),
    ] {
        let a = post(addr, "devices.alice", &auth, "refused");
        assert_eq!(a.status, 401, "{auth:?}: {a:?}");
        assert!(a.challenge.as_deref().unwrap().starts_with(scheme), "{a:?}");
        assert_eq!(a.body["error"]["status"], 401, "{a:?}");
        refused += 1;
    }
    let forged = token("bob", "another secret that is long enough!!");
    let a = post(
        jwt,
        "devices.bob",
        &["-H", &format!("Authorization: Bearer {forged}")],
        "forged",
    );
    assert_eq!(a.status, 401, "{a:?}");
    assert!(a.challenge.unwrap().contains("invalid_token"));
    refused += 1;
    // The token in the URL is for the GET endpoints only.
    let a = curl(
        &["--data-binary", "x"],
        &format!("http://{jwt}/topics/devices.bob?access_token={bob}"),
    );
    assert_eq!(a.status, 401, "{a:?}");
    refused += 1;

    // Authenticated, but the ACL forbids the topic: 403.
    let a = post(basic, "devices.bob", &["-u", "alice:wonderland"], "x");
    assert_eq!(a.status, 403, "{a:?}");
    let a = post(jwt, "alerts", &["-H", &bearer_bob], "x");
    assert_eq!(a.status, 403, "{a:?}");
    refused += 2;
    // The principal header is sluice's to set.
    let a = post(
        basic,
        "devices.alice",
        &[
            "-u",
            "alice:wonderland",
            "-H",
            "Sluice-Header-sluice.principal: bob",
        ],
        "spoofed",
    );
    assert_eq!(a.status, 400, "{a:?}");

    // Good credentials write, and each record says who wrote it.
    for i in 0..3 {
        let a = post(
            basic,
            "devices.alice",
            &["-u", "alice:wonderland"],
            &format!("a{i}"),
        );
        assert_eq!(a.status, 200, "{a:?}");
    }
    let a = post(jwt, "devices.bob", &["-H", &bearer_bob], "b0");
    assert_eq!(a.status, 200, "{a:?}");
    // A WebSocket producer with the token in the URL; refused without one, or on a topic
    // its ACL does not allow.
    let ws = format!("ws://{jwt}/topics/devices.bob");
    let mut producer = node(
        "ws_produce.js",
        &[&format!("{ws}?access_token={bob}"), "2", "ws"],
    );
    assert!(
        producer.wait_success(WAIT),
        "the WebSocket producer got its acks"
    );
    for (url, status) in [
        (ws.clone(), "401"),
        (
            format!("ws://{jwt}/topics/devices.alice?access_token={bob}"),
            "403",
        ),
    ] {
        let mut p = node(
            "ws_produce.js",
            &[&format!("expect-refusal:{status}:{url}"), "1", "x"],
        );
        assert!(p.wait_success(WAIT), "{url} refused with {status}");
        refused += 1;
    }

    // Subscribers: the SSE stream opened before everything above gets a record; Basic on
    // SSE and a token on a WebSocket subscriber work; without credentials, or on a topic
    // the ACL does not let them read, they are refused.
    kafka
        .produce("alerts", &[ProduceRecord::value("fire")])
        .unwrap();
    sse.find(WAIT, "the alert", |l| l == "data: fire");
    let own = Lines::spawn({
        let mut cmd = Command::new("curl");
        cmd.args(["-sSN", "--max-time", "120", "-u", "alice:wonderland"])
            .arg(format!(
                "http://{basic}/topics/devices.alice/events?from=earliest&format=json"
            ));
        cmd
    });
    let line = own.find(WAIT, "alice's record", |l| l.starts_with("data: "));
    let record: Value = serde_json::from_str(&line["data: ".len()..]).unwrap();
    assert_eq!(record["headers"]["sluice.principal"], "alice", "{record}");
    drop(own);
    let mut sub = node(
        "ws_subscribe.js",
        &[
            &format!("ws://{jwt}/topics/alerts/ws?access_token={bob}&from=earliest"),
            "1",
        ],
    );
    sub.find(WAIT, "the alert over WebSocket", |l| l.contains("fire"));
    assert!(sub.wait_success(WAIT));
    for (url, status) in [
        (format!("ws://{jwt}/topics/alerts/ws"), "401"),
        (
            format!("ws://{jwt}/topics/devices.alice/ws?access_token={bob}"),
            "403",
        ),
    ] {
        let mut s = node(
            "ws_subscribe.js",
            &[&format!("expect-refusal:{status}:{url}"), "0"],
        );
        assert!(s.wait_success(WAIT), "{url} refused with {status}");
        refused += 1;
    }
    for (url, status) in [
        (format!("http://{jwt}/topics/alerts/events"), 401),
        (
            format!("http://{basic}/topics/devices.bob/events?access_token={bob}"),
            401,
        ),
        (
            format!("http://{jwt}/topics/devices.alice/events?access_token={bob}"),
            403,
        ),
    ] {
        assert_eq!(curl(&[], &url).status, status, "{url}");
        refused += 1;
    }

    // Only what good credentials sent reached Kafka, with the principal.
    let alice = kafka.consume_all("devices.alice", 3, WAIT).unwrap();
    assert_eq!(alice.len(), 3, "exactly alice's three records");
    for r in &alice {
        assert_eq!(header(r, "sluice.principal"), Some(&b"alice"[..]));
        assert!(r.value.as_deref().unwrap().starts_with(b"a"));
    }
    let bob_records = kafka.consume_all("devices.bob", 3, WAIT).unwrap();
    let mut values: Vec<_> = bob_records
        .iter()
        .map(|r| {
            assert_eq!(header(r, "sluice.principal"), Some(&b"bob"[..]));
            String::from_utf8(r.value.clone().unwrap()).unwrap()
        })
        .collect();
    values.sort();
    assert_eq!(values, ["b0", "ws-0", "ws-1"]);
    assert_eq!(
        sluice
            .metric_where("sluice_connection_errors_total", "kind=\"auth\"")
            .unwrap(),
        refused,
        "each refusal counted once"
    );
}

/// `auth = "client_cert"` over HTTPS: the certificate's common name is the principal of
/// every request on the connection (an `Authorization` header is not looked at), for writes
/// and for Server-Sent Events; clients without a certificate fail the handshake.
#[test]
fn client_certificates_name_the_principal_over_https() {
    let broker = Broker::start().expect("broker");
    let kafka = broker.kafka().timeout(WAIT);
    for topic in ["certs.sluice-test-client", "certs.other"] {
        kafka.create_topic(topic, 1, &[]).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::generate(dir.path(), ClientAuth::Required).unwrap();
    let (cert, key) = files.client_identity().unwrap();
    let keys = format!(
        "auth = \"client_cert\"\ntls = {{ cert_file = {:?}, key_file = {:?}, client_ca_file = {:?} }}\nacl = [{{ publish = \"certs.{{username}}\", subscribe = \"certs.{{username}}\" }}]",
        files.server_cert, files.server_key, files.ca_cert
    );
    let config = common::config_with_http(&broker.bootstrap(), "", &keys);
    let sluice = Sluice::start(&config).expect("sluice starts");
    let base = format!("https://{}/topics", sluice.listeners["http"]);
    let ca = files.ca_cert.to_str().unwrap();
    let identity = ["--cacert", ca, "--cert", cert.to_str().unwrap()];
    let tls = [&identity[..], &["--key", key.to_str().unwrap()]].concat();

    let mut args = tls.clone();
    args.extend(["-u", "alice:wonderland", "--data-binary", "signed"]);
    let a = curl(&args, &format!("{base}/certs.sluice-test-client"));
    assert_eq!(a.status, 200, "{a:?}");
    let a = curl(&args, &format!("{base}/certs.other"));
    assert_eq!(a.status, 403, "{a:?}");
    let a = curl(&tls, &format!("{base}/certs.other/events"));
    assert_eq!(a.status, 403, "{a:?}");
    // No certificate: no HTTP at all.
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "30",
            "--cacert",
            ca,
            "--data-binary",
            "x",
        ])
        .arg(format!("{base}/certs.sluice-test-client"))
        .output()
        .unwrap();
    assert!(!out.status.success() && out.stdout.is_empty(), "{out:?}");

    let sse = Lines::spawn({
        let mut cmd = Command::new("curl");
        cmd.args(["-sSN", "--max-time", "120"])
            .args(&tls)
            .arg(format!(
                "{base}/certs.sluice-test-client/events?from=earliest&format=json"
            ));
        cmd
    });
    let line = sse.find(WAIT, "the record", |l| l.starts_with("data: "));
    let record: Value = serde_json::from_str(&line["data: ".len()..]).unwrap();
    assert_eq!(record["value"], "signed", "{record}");
    assert_eq!(
        record["headers"]["sluice.principal"], "sluice-test-client",
        "{record}"
    );
    let other = kafka.consume_all("certs.other", 0, WAIT).unwrap();
    assert!(other.is_empty(), "{other:?}");
    let refusals = sluice
        .metric_where("sluice_connection_errors_total", "kind=\"auth\"")
        .unwrap();
    assert_eq!(refusals, 2, "the two 403s");
}

/// Subscribers whose token expires (`exp` plus the 30 s leeway it was accepted with) are
/// ended: an event stream closes, a WebSocket gets close code 1008; a subscriber with a
/// good token keeps receiving.
#[test]
fn subscriber_streams_end_when_their_token_expires() {
    let broker = Broker::start().expect("broker");
    let kafka = broker.kafka().timeout(WAIT);
    kafka.create_topic("news", 1, &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let keys = format!(
        "auth = \"jwt\"\njwt = {{ algorithm = \"HS256\", secret_file = {secret:?} }}\nwebsocket = {{}}"
    );
    let config = common::config_with_http(&broker.bootstrap(), "", &keys);
    let sluice = Sluice::start(&config).expect("sluice starts");
    let http = sluice.listeners["http"];
    // Expired 20 s ago, so still accepted for about 10 s more.
    let expiring = token_until("short", SECRET, jsonwebtoken::get_current_timestamp() - 20);
    let lasting = token("long", SECRET);
    let events = |token: &str| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sSN", "--max-time", "120"]).arg(format!(
            "http://{http}/topics/news/events?access_token={token}"
        ));
        let sse = Lines::spawn(cmd);
        sse.find(WAIT, "the stream's opening id", |l| l.starts_with("id: "));
        sse
    };
    let short_events = events(&expiring);
    let long_events = events(&lasting);
    let short_socket = node(
        "ws_subscribe.js",
        &[
            &format!("ws://{http}/topics/news/ws?access_token={expiring}"),
            "1",
        ],
    );
    short_socket.find(WAIT, "the upgrade", |l| l.contains("open"));

    let close = short_socket.find(WAIT, "the close", |l| l.contains("close"));
    let close: Value = serde_json::from_str(&close).unwrap();
    assert_eq!(close["close"], 1008, "{close}");
    assert_eq!(close["reason"], "token expired", "{close}");
    let until = std::time::Instant::now() + WAIT;
    while let Some(line) = short_events.next(until, "the event stream's end") {
        assert!(
            !line.starts_with("data:"),
            "nothing was produced yet: {line}"
        );
    }
    kafka
        .produce("news", &[ProduceRecord::value("after")])
        .unwrap();
    long_events.find(WAIT, "the record", |l| l == "data: after");
}
