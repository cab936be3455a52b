//! Authentication and publish ACLs end to end with mosquitto_pub (MQTT 3.1.1 and 5): a
//! mosquitto_passwd file, a JWT in the password, and `{username}` ACLs. Refused clients
//! and forbidden topics never reach Kafka; accepted records carry `sluice.principal`.

mod common;

use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{mosquitto_pub, Sluice};
use sluice_tests::Broker;

const SECRET: &str = "integration-test secret, 32+ bytes";

/// Runs mosquitto_pub to its end (killing it after 30 s) and returns its output.
fn run(addr: SocketAddr, args: &[&str]) -> Output {
    let mut child = mosquitto_pub(addr, args).unwrap();
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(30);
    sluice_tests::wait_until(Duration::from_secs(30), "mosquitto_pub exits", || {
        Instant::now() > deadline || child.try_wait().unwrap().is_some()
    });
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

fn succeeds(addr: SocketAddr, args: &[&str]) {
    let out = run(addr, args);
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fails(addr: SocketAddr, args: &[&str]) -> String {
    let out = run(addr, args);
    assert!(!out.status.success(), "mosquitto_pub {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn token(sub: &str) -> String {
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": sub, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[test]
fn passwords_jwts_and_acls_decide_what_reaches_kafka() {
    let broker = Broker::start().expect("broker");
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let passwd = common::root().join("proxy/src/auth/testdata/passwd");
    let config = common::config(&broker.bootstrap(), "")
        .replace(
            "receive_maximum = 100\n",
            &format!(
                "receive_maximum = 100\nauth = \"password_file\"\npassword_file = \"{}\"\nacl = [{{ publish = \"devices/{{username}}/#\" }}]\n",
                passwd.display()
            ),
        )
        .replace(
            "headers = [\"client_id\", \"user_properties\", \"content_type\", \"qos\"]",
            "headers = [\"client_id\", \"principal\"]",
        )
        + &format!(
            "\n[[listeners]]\nname = \"jwt\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"mqtt\"\nauth = \"jwt\"\njwt = {{ algorithm = \"HS256\", secret_file = \"{}\" }}\n\n[[routes]]\nlistener = \"jwt\"\nmqtt_topic = \"#\"\nkafka_topic = \"mqtt-messages\"\nheaders = [\"principal\"]\n",
            secret.display()
        );
    let sluice = Sluice::start(&config).expect("sluice starts");
    let (pw, jwt) = (sluice.mqtt, sluice.listeners["jwt"]);

    // Refused CONNECTs: wrong password, unknown user, a bad token.
    for v in ["mqttv311", "mqttv5"] {
        let err = fails(
            pw,
            &[
                "-V",
                v,
                "-u",
                "alice",
                "-P",
                "builder",
                "-q",
                "1",
                "-t",
                "devices/alice/x",
                "-m",
                "denied",
            ],
        );
        assert!(
            err.to_lowercase().contains("bad user name or password"),
            "{v}: {err}"
        );
        fails(
            pw,
            &[
                "-V",
                v,
                "-u",
                "mallory",
                "-P",
                "x",
                "-q",
                "1",
                "-t",
                "devices/mallory/x",
                "-m",
                "denied",
            ],
        );
        fails(
            jwt,
            &[
                "-V",
                v,
                "-u",
                "t",
                "-P",
                "not-a-jwt",
                "-q",
                "1",
                "-t",
                "a",
                "-m",
                "denied",
            ],
        );
    }
    // The ACL: alice may publish under devices/alice/ only.
    let out = run(
        pw,
        &[
            "-V",
            "mqttv5",
            "-u",
            "alice",
            "-P",
            "wonderland",
            "-q",
            "1",
            "-t",
            "devices/bob/x",
            "-m",
            "denied",
        ],
    );
    // mosquitto_pub 2.0 reports a refused PUBLISH but exits 0.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Not authorized"), "MQTT 5 PUBACK 0x87: {err}");
    fails(
        pw,
        &[
            "-V",
            "mqttv311",
            "-u",
            "alice",
            "-P",
            "wonderland",
            "-q",
            "1",
            "-t",
            "devices/bob/x",
            "-m",
            "denied",
        ],
    );

    // Accepted: the right passwords (PBKDF2 and SHA-512 entries) and a JWT.
    succeeds(
        pw,
        &[
            "-V",
            "mqttv311",
            "-u",
            "alice",
            "-P",
            "wonderland",
            "-q",
            "1",
            "-t",
            "devices/alice/t",
            "-m",
            "from-alice",
        ],
    );
    succeeds(
        pw,
        &[
            "-V",
            "mqttv5",
            "-u",
            "carol",
            "-P",
            "sha512-only",
            "-q",
            "1",
            "-t",
            "devices/carol/t",
            "-m",
            "from-carol",
        ],
    );
    let t = token("dev-1");
    succeeds(
        jwt,
        &[
            "-V", "mqttv5", "-u", "ignored", "-P", &t, "-q", "1", "-t", "anything", "-m",
            "from-jwt",
        ],
    );

    let records = broker
        .kafka()
        .consume_all("mqtt-messages", 3, Duration::from_secs(60))
        .expect("confluent-kafka reads mqtt-messages");
    let mut seen: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            let principal = r
                .headers
                .iter()
                .find(|(k, _)| k == "sluice.principal")
                .and_then(|(_, v)| v.clone())
                .unwrap_or_default();
            (
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
                String::from_utf8(principal).unwrap(),
            )
        })
        .collect();
    seen.sort();
    let expected = [
        ("from-alice", "alice"),
        ("from-carol", "carol"),
        ("from-jwt", "dev-1"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(
        seen, expected,
        "exactly the accepted messages, with principals"
    );
    // Six refused CONNECTs and two PUBLISHes outside the ACL.
    let refusals = sluice
        .metric_where("sluice_connection_errors_total", "kind=\"auth\"")
        .unwrap();
    assert_eq!(refusals, 8, "each refusal counted once");
}
