//! MQTT ACLs end to end: paho-mqtt subscribers (MQTT 5 and 3.1.1) send one SUBSCRIBE with
//! allowed and forbidden filters and get a reason code per filter (0x87 Not authorized,
//! 3.1.1 0x80 Failure), then receive exactly what their granted filters match, published by
//! mosquitto_pub through the broker; and TLS client certificates as principals.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{header, publish, script, Lines, Sluice};
use serde_json::Value;
use sluice_tests::{Broker, ClientAuth, TlsFiles};

const WAIT: Duration = Duration::from_secs(60);

/// Starts tests/clients/acl_subscriber.py with `args` (then `--count`, filters).
fn subscriber(addr: SocketAddr, args: &[&str]) -> Lines {
    let mut cmd = Command::new(sluice_tests::python());
    cmd.arg(script("acl_subscriber.py"))
        .args([addr.ip().to_string(), addr.port().to_string()])
        .args(args);
    Lines::spawn(cmd)
}

/// The next event the client printed, as JSON.
fn event(client: &Lines, what: &str) -> Value {
    let line = client.find(WAIT, what, |l| l.starts_with('{'));
    serde_json::from_str(&line).unwrap()
}

/// The SUBACK's reason codes.
fn suback(client: &Lines) -> Vec<u64> {
    let e = event(client, "the SUBACK");
    assert_eq!(e["event"], "suback", "{e}");
    e["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect()
}

/// The (topic, payload) of the next `n` messages.
fn messages(client: &Lines, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|_| {
            let e = event(client, "a message");
            assert_eq!(e["event"], "message", "{e}");
            (
                e["topic"].as_str().unwrap().to_owned(),
                e["payload"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pair(topic: &str, payload: &str) -> (String, String) {
    (topic.to_owned(), payload.to_owned())
}

#[test]
fn subscribe_rules_grant_filters_one_by_one() {
    let broker = Broker::start().expect("broker");
    let passwd = common::root().join("proxy/src/auth/testdata/passwd");
    let acl = r#"acl = [{ publish = "devices/{username}/#", subscribe = "devices/{username}/#" }, { subscribe = "inbox/{client_id}" }, { publish = "inbox/#" }]"#;
    // One partition: records reach subscribers in the order they were published, so a
    // message that should not arrive would come before the last one that should.
    let config = common::config(&broker.bootstrap(), "")
        .replace("shards = 2\n", "shards = 2\ntopic_partitions = 1\n")
        .replace(
            "receive_maximum = 100\n",
            &format!(
                "receive_maximum = 100\nauth = \"password_file\"\npassword_file = \"{}\"\n{acl}\n",
                passwd.display()
            ),
        );
    let sluice = Sluice::start(&config).expect("sluice starts");
    let addr = sluice.mqtt;

    let alice = subscriber(
        addr,
        &[
            "--version",
            "5",
            "--id",
            "sub-a",
            "--user",
            "alice",
            "--password",
            "wonderland",
            "--count",
            "2",
            "devices/alice/#",
            "devices/#",
            "inbox/sub-a",
            "$share/g/devices/+/x",
        ],
    );
    assert_eq!(suback(&alice), [1, 0x87, 1, 0x87], "MQTT 5: per filter");
    let bob = subscriber(
        addr,
        &[
            "--version",
            "3",
            "--id",
            "sub-b",
            "--user",
            "bob",
            "--password",
            "builder",
            "--count",
            "2",
            "devices/alice/#",
            "devices/bob/+",
        ],
    );
    assert_eq!(suback(&bob), [0x80, 1], "MQTT 3.1.1: Failure");

    let send = |user: &str, password: &str, topic: &str, payload: &str| {
        let args = [
            "-V", "mqttv5", "-u", user, "-P", password, "-q", "1", "-t", topic, "-m", payload,
        ];
        publish(addr, &args, None).unwrap();
    };
    send("bob", "builder", "devices/bob/secret", "bob's");
    send("alice", "wonderland", "devices/alice/t", "alice's");
    send("bob", "builder", "inbox/sub-a", "for sub-a");
    send("bob", "builder", "devices/bob/last", "bob's last");

    assert_eq!(
        messages(&alice, 2),
        [
            pair("devices/alice/t", "alice's"),
            pair("inbox/sub-a", "for sub-a")
        ],
        "alice's refused devices/# brought nothing of bob's"
    );
    assert_eq!(
        messages(&bob, 2),
        [
            pair("devices/bob/secret", "bob's"),
            pair("devices/bob/last", "bob's last")
        ],
        "bob's refused devices/alice/# brought nothing of alice's"
    );
    let refusals = sluice
        .metric_where("sluice_connection_errors_total", "kind=\"auth\"")
        .unwrap();
    assert_eq!(refusals, 3, "each refused filter counted once");
}

/// `auth = "client_cert"`: the certificate's common name is the principal, whatever user
/// name the CONNECT carries; the ACL's `{username}` is that name, and records say so.
#[test]
fn client_certificates_name_the_principal() {
    let broker = Broker::start().expect("broker");
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::generate(dir.path(), ClientAuth::Required).unwrap();
    let (cert, key) = files.client_identity().unwrap();
    let (ca, cert, key) = (
        files.ca_cert.to_str().unwrap(),
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    );
    let config = common::config(&broker.bootstrap(), "") + &format!(
        "\n[[listeners]]\nname = \"mqtts\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"mqtt\"\nauth = \"client_cert\"\ntls = {{ cert_file = {:?}, key_file = {:?}, client_ca_file = {ca:?} }}\nacl = [{{ publish = \"devices/{{username}}/#\", subscribe = \"devices/{{username}}/#\" }}]\n\n[[routes]]\nlistener = \"mqtts\"\nmqtt_topic = \"#\"\nkafka_topic = \"mqtt-messages\"\nheaders = [\"principal\", \"username\"]\n",
        files.server_cert, files.server_key
    );
    let sluice = Sluice::start(&config).expect("sluice starts");
    let addr = sluice.listeners["mqtts"];
    let own = "devices/sluice-test-client";

    // The user name says mallory; the certificate says sluice-test-client.
    let tls = ["--cafile", ca, "--cert", cert, "--key", key];
    let mallory = ["--user", "mallory", "--password", "x"];
    let filters = ["devices/sluice-test-client/#", "devices/mallory/#"];
    let args = [
        &["--version", "5", "--id", "cert-sub", "--count", "1"][..],
        &mallory,
        &tls,
        &filters,
    ]
    .concat();
    let sub = subscriber(addr, &args);
    assert_eq!(suback(&sub), [1, 0x87]);
    let pub_args = |topic: &'static str| {
        let mut args = tls.to_vec();
        args.extend([
            "-V", "mqttv5", "-u", "mallory", "-P", "x", "-q", "1", "-t", topic, "-m", "via cert",
        ]);
        args
    };
    // A PUBLISH outside the certificate's topics: PUBACK 0x87 (mosquitto_pub exits 0).
    let mut refused = common::mosquitto_pub(addr, &pub_args("devices/mallory/x")).unwrap();
    drop(refused.stdin.take());
    let out = refused.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Not authorized"), "{err}");
    // Without a certificate the handshake fails.
    let anonymous = publish(
        addr,
        &[
            "--cafile",
            ca,
            "-q",
            "1",
            "-t",
            "devices/x/y",
            "-m",
            "no cert",
        ],
        None,
    );
    assert!(anonymous.is_err(), "a client without a certificate got in");
    publish(addr, &pub_args("devices/sluice-test-client/t"), None).unwrap();

    assert_eq!(
        messages(&sub, 1),
        [pair(&format!("{own}/t"), "via cert")],
        "the subscriber got its own topic's message"
    );
    let records = broker
        .kafka()
        .consume_all("mqtt-messages", 1, WAIT)
        .expect("confluent-kafka reads mqtt-messages");
    assert_eq!(records.len(), 1, "only the allowed PUBLISH reached Kafka");
    let r = &records[0];
    assert_eq!(
        header(r, "sluice.principal"),
        Some(&b"sluice-test-client"[..])
    );
    assert_eq!(header(r, "mqtt.username"), Some(&b"mallory"[..]));
    let refusals = sluice
        .metric_where("sluice_connection_errors_total", "kind=\"auth\"")
        .unwrap();
    assert_eq!(refusals, 2, "the refused filter and the refused PUBLISH");
}

/// A connection authenticated with a JWT ends when the token does (its `exp` plus the 30 s
/// leeway it was accepted with): MQTT 5 gets DISCONNECT 0xA0 Maximum connect time, 3.1.1
/// is closed, and a client whose token is still good keeps receiving.
#[test]
fn connections_end_when_their_token_expires() {
    const SECRET: &str = "token-expiry integration secret, 32+ bytes";
    let broker = Broker::start().expect("broker");
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let config = common::config(&broker.bootstrap(), "").replace(
        "receive_maximum = 100\n",
        &format!(
            "receive_maximum = 100\nauth = \"jwt\"\njwt = {{ algorithm = \"HS256\", secret_file = {secret:?} }}\n"
        ),
    );
    let sluice = Sluice::start(&config).expect("sluice starts");
    let addr = sluice.mqtt;
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let token = |sub: &str, exp: u64| {
        let claims = serde_json::json!({"sub": sub, "exp": exp});
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };
    let now = jsonwebtoken::get_current_timestamp();
    // Expired 20 s ago, so still accepted for about 10 s more.
    let (expiring, lasting) = (token("short", now - 20), token("long", now + 600));
    let client = |version: &str, id: &str, token: &str| {
        let args = [
            "--version",
            version,
            "--id",
            id,
            "--user",
            "u",
            "--password",
            token,
            "--count",
            "1",
            "news",
        ];
        let c = subscriber(addr, &args);
        assert_eq!(suback(&c), [1], "{id}");
        c
    };
    let long = client("5", "long", &lasting);
    let short5 = client("5", "short5", &expiring);
    let short3 = client("3", "short3", &expiring);

    let e = event(&short5, "the MQTT 5 client's disconnection");
    assert_eq!(e["event"], "disconnected", "{e}");
    assert_eq!(e["reason"], 0xA0, "Maximum connect time: {e}");
    let e = event(&short3, "the MQTT 3.1.1 client's disconnection");
    assert_eq!(e["event"], "disconnected", "{e}");
    publish(
        addr,
        &[
            "-u",
            "u",
            "-P",
            &lasting,
            "-q",
            "1",
            "-t",
            "news",
            "-m",
            "still here",
        ],
        None,
    )
    .unwrap();
    assert_eq!(messages(&long, 1), [pair("news", "still here")]);
}
