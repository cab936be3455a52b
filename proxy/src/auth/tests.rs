use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use codecs::mqtt::{MqttString, Will};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::config::{Config, DEFAULT_TOML};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/auth/testdata");
const SECRET: &str = "an HS256 secret of at least 32 bytes";

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

/// The default config plus an MQTT listener with `keys`; its authenticator for one shard.
fn listener(keys: &str) -> Result<ShardAuth, ConfigError> {
    let text = format!(
        "{DEFAULT_TOML}\n[[listeners]]\nname = \"secure\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"mqtt\"\n{keys}\n"
    );
    let config = Config::parse(&text, None)?;
    let l = config
        .listeners
        .iter()
        .find(|l| l.name == "secure")
        .unwrap();
    Ok(ShardAuth::new(l.authenticator.clone().expect("auth")))
}

fn connect(user: Option<&str>, password: Option<&str>) -> Connect {
    Connect {
        username: user.map(|u| MqttString::try_from(u.to_owned()).unwrap()),
        password: password.map(|p| Bytes::copy_from_slice(p.as_bytes())),
        protocol: codecs::mqtt::ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 0,
        client_id: MqttString::try_from(String::new()).unwrap(),
        will: None,
        properties: Default::default(),
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, Refused>) -> u8 {
    r.unwrap_err().0
}

#[test]
fn mosquitto_passwd_hashes_verify() {
    let auth = listener(&format!(
        "auth = \"password_file\"\npassword_file = \"{}\"",
        fixture("passwd")
    ))
    .unwrap();
    for (user, pass) in [
        ("alice", "wonderland"),
        ("bob", "builder"),
        ("carol", "sha512-only"),
    ] {
        let ok = auth
            .connect(&connect(Some(user), Some(pass)), "c", None)
            .unwrap();
        assert_eq!(ok.principal.as_deref(), Some(user));
        // Again, from the cache.
        assert!(auth
            .connect(&connect(Some(user), Some(pass)), "c", None)
            .is_ok());
    }
    for (user, pass) in [
        (Some("alice"), Some("builder")),
        (Some("alice"), Some("wonderland ")),
        (Some("mallory"), Some("wonderland")),
        (Some("alice"), None),
        (None, None),
    ] {
        assert_eq!(code(auth.connect(&connect(user, pass), "c", None)), 0x86);
    }
    assert_eq!(auth.cache.borrow().entries.len(), 6);
}

#[test]
fn bad_password_files_fail_naming_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad");
    std::fs::write(&bad, "alice:$7$101$notbase64!$AAAA\n").unwrap();
    for (path, what) in [
        (bad.as_path(), "line 1"),
        (Path::new("/nonexistent"), "read"),
    ] {
        let err = listener(&format!(
            "auth = \"password_file\"\npassword_file = \"{}\"",
            path.display()
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("listeners[4].password_file"), "{err}");
        assert!(
            err.contains(&path.display().to_string()) && err.contains(what),
            "{err}"
        );
    }
    let err = listener("auth = \"password_file\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("password_file` is required"), "{err}");
    let err = listener("auth = \"passwords\"").unwrap_err().to_string();
    assert!(err.contains("passwords"), "{err}");
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn hs256(claims: serde_json::Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn jwt_listener(dir: &Path, jwt: &str) -> Result<ShardAuth, ConfigError> {
    let secret = dir.join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let jwt = jwt.replace("SECRET", &secret.display().to_string());
    listener(&format!("auth = \"jwt\"\njwt = {jwt}"))
}

#[test]
fn hs256_tokens_check_signature_time_audience_and_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let auth = jwt_listener(
        dir.path(),
        "{ algorithm = \"HS256\", secret_file = \"SECRET\", audience = \"sluice\", issuer = \"idp\" }",
    )
    .unwrap();
    let good = json!({"sub": "dev-1", "exp": now() + 600, "aud": "sluice", "iss": "idp"});
    let ok = auth
        .connect(&connect(None, Some(&hs256(good.clone()))), "c", None)
        .unwrap();
    assert_eq!(ok.principal.as_deref(), Some("dev-1"));
    let mut cases = Vec::new();
    for (field, value) in [
        ("exp", json!(now() - 120)),
        ("nbf", json!(now() + 120)),
        ("aud", json!("other")),
        ("iss", json!("evil")),
    ] {
        let mut c = good.clone();
        c[field] = value;
        cases.push(hs256(c));
    }
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    cases.push(hs256(no_exp));
    let wrong_key = encode(
        &Header::default(),
        &good,
        &EncodingKey::from_secret(b"another secret of at least 32 bytes!"),
    )
    .unwrap();
    cases.push(wrong_key);
    cases.push("not.a.token".into());
    for token in cases {
        assert_eq!(
            code(auth.connect(&connect(None, Some(&token)), "c", None)),
            0x86
        );
    }
    // A token with no `sub` is refused too.
    let nosub = hs256(json!({"exp": now() + 600, "aud": "sluice", "iss": "idp"}));
    assert_eq!(
        code(auth.connect(&connect(None, Some(&nosub)), "c", None)),
        0x86
    );
}

#[test]
fn asymmetric_tokens_need_the_configured_algorithm_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let rsa_private = std::fs::read(fixture("rs256-private.pem")).unwrap();
    let rsa = EncodingKey::from_rsa_pem(&rsa_private).unwrap();
    let claims = json!({"sub": "dev-2", "exp": now() + 600});
    let rs = encode(&Header::new(jsonwebtoken::Algorithm::RS256), &claims, &rsa).unwrap();
    let auth = jwt_listener(
        dir.path(),
        &format!(
            "{{ algorithm = \"RS256\", public_key_file = \"{}\" }}",
            fixture("rs256-public.pem")
        ),
    )
    .unwrap();
    let ok = auth.connect(&connect(None, Some(&rs)), "c", None).unwrap();
    assert_eq!(ok.principal.as_deref(), Some("dev-2"));
    // HS256 signed with the public key's bytes must not pass (algorithm confusion).
    let public = std::fs::read(fixture("rs256-public.pem")).unwrap();
    let confused = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert_eq!(
        code(auth.connect(&connect(None, Some(&confused)), "c", None)),
        0x86
    );
    // An ES256 token against an RS256 listener.
    let ec = rcgen::KeyPair::generate().unwrap();
    let ec_key = EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap();
    let es = encode(
        &Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &ec_key,
    )
    .unwrap();
    assert_eq!(
        code(auth.connect(&connect(None, Some(&es)), "c", None)),
        0x86
    );

    let err = jwt_listener(
        dir.path(),
        "{ algorithm = \"RS256\", public_key_file = \"SECRET\" }",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("listeners[4].jwt.public_key_file"), "{err}");
    let err = jwt_listener(
        dir.path(),
        "{ algorithm = \"none\", secret_file = \"SECRET\" }",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("jwt.algorithm"), "{err}");
}

fn ec_jwk(key: &rcgen::KeyPair, kid: &str) -> serde_json::Value {
    let raw = key.public_key_raw(); // 0x04 || x || y
    json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
    })
}

#[test]
fn jwks_keys_are_picked_by_kid() {
    let dir = tempfile::tempdir().unwrap();
    let (k1, k2, k3) = (
        rcgen::KeyPair::generate().unwrap(),
        rcgen::KeyPair::generate().unwrap(),
        rcgen::KeyPair::generate().unwrap(),
    );
    let jwks = dir.path().join("jwks.json");
    let set = json!({"keys": [ec_jwk(&k1, "one"), ec_jwk(&k2, "two")]});
    std::fs::write(&jwks, set.to_string()).unwrap();
    let auth = jwt_listener(
        dir.path(),
        &format!(
            "{{ algorithm = \"ES256\", jwks_file = \"{}\", principal_claim = \"device\" }}",
            jwks.display()
        ),
    )
    .unwrap();
    let claims = json!({"device": "d-9", "exp": now() + 600});
    let token = |key: &rcgen::KeyPair, kid: Option<&str>| {
        let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = kid.map(str::to_owned);
        let key = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
        encode(&header, &claims, &key).unwrap()
    };
    let ok = auth
        .connect(&connect(None, Some(&token(&k2, Some("two")))), "c", None)
        .unwrap();
    assert_eq!(ok.principal.as_deref(), Some("d-9"));
    for t in [
        token(&k1, Some("two")),
        token(&k1, Some("three")),
        token(&k1, None),
        token(&k3, Some("one")),
    ] {
        assert_eq!(
            code(auth.connect(&connect(None, Some(&t)), "c", None)),
            0x86
        );
    }
    std::fs::write(&jwks, "{\"keys\": []}").unwrap();
    let err = jwt_listener(
        dir.path(),
        &format!(
            "{{ algorithm = \"ES256\", jwks_file = \"{}\" }}",
            jwks.display()
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("jwt.jwks_file") && err.contains("jwks.json"),
        "{err}"
    );
}

#[test]
fn acl_placeholders_fill_per_connection_and_cannot_widen() {
    let auth = listener(
        "acl = [{ publish = \"devices/{client_id}/#\" }, { publish = \"users/{username}/+\" }, { publish = \"public\" }]",
    )
    .unwrap();
    let acl = |client: &str, user: Option<&str>| {
        auth.connect(&connect(user, None), client, None)
            .unwrap()
            .acl
            .unwrap()
    };
    let a = acl("d1", Some("alice"));
    assert!(a.may_publish("devices/d1/temp") && a.may_publish("devices/d1"));
    assert!(a.may_publish("users/alice/x") && a.may_publish("public"));
    assert!(!a.may_publish("devices/d2/temp") && !a.may_publish("users/bob/x"));
    assert!(!a.may_publish("users/alice/x/y") && !a.may_publish("public/x"));
    // Wildcards, separators or nothing in a value drop the rule, never widen it.
    for (client, user) in [("+", Some("#")), ("a/b", None), ("#", Some(""))] {
        let a = acl(client, user);
        assert!(!a.may_publish("devices/x/y") && !a.may_publish("devices/a/b/c"));
        assert!(!a.may_publish("users/x/y") && !a.may_publish("users//y"));
        assert!(a.may_publish("public"));
    }
    // A will to a forbidden topic refuses the CONNECT.
    let mut c = connect(None, None);
    c.will = Some(Will {
        topic: MqttString::try_from("devices/other/status".to_owned()).unwrap(),
        payload: Bytes::new(),
        qos: codecs::mqtt::QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    assert_eq!(code(auth.connect(&c, "d1", None)), 0x87);
    let err = listener("acl = [{ publish = \"a/{who}\" }]")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("listeners[4].acl[0].publish") && err.contains("{who}"),
        "{err}"
    );
    let err = listener("acl = [{ publish = \"a/#/b\" }]")
        .unwrap_err()
        .to_string();
    assert!(err.contains("acl[0].publish"), "{err}");
}

#[test]
fn jwt_principal_fills_username_placeholders() {
    let dir = tempfile::tempdir().unwrap();
    let auth = jwt_listener(
        dir.path(),
        "{ algorithm = \"HS256\", secret_file = \"SECRET\" }\nacl = [{ publish = \"u/{username}/#\" }]",
    )
    .unwrap();
    let token = hs256(json!({"sub": "real", "exp": now() + 600}));
    // The MQTT user name is the client's say-so; the token's claim is what counts.
    let ok = auth
        .connect(&connect(Some("spoofed"), Some(&token)), "c", None)
        .unwrap();
    let acl = ok.acl.unwrap();
    assert!(acl.may_publish("u/real/x") && !acl.may_publish("u/spoofed/x"));
}

#[test]
fn mqtt_subscribe_rules_must_cover_the_whole_filter() {
    let auth = listener(
        "acl = [{ publish = \"devices/{username}/#\", subscribe = \"devices/{username}/#\" }, { subscribe = \"inbox/{client_id}/+\" }, { subscribe = \"alerts/+/fire\" }]",
    )
    .unwrap();
    let acl = auth
        .connect(&connect(Some("alice"), None), "d1", None)
        .unwrap()
        .acl
        .unwrap();
    let may = |f: &str| acl.may_subscribe(&crate::config::topic_filter(f));
    for allowed in [
        "devices/alice/#",
        "devices/alice",
        "devices/alice/+/temp",
        "$share/g/devices/alice/x",
        "inbox/d1/a",
        "inbox/d1/+",
        "alerts/+/fire",
        "alerts/eu/fire",
    ] {
        assert!(may(allowed), "{allowed}");
    }
    for refused in [
        "devices/#",
        "devices/+/temp",
        "devices/bob/x",
        "#",
        "$share/g/#",
        "inbox/d1/#",
        "inbox/d1",
        "inbox/d2/a",
        "alerts/#",
        "alerts/eu/+",
    ] {
        assert!(!may(refused), "{refused}");
    }
    // Publish rules grant no subscriptions, nor the reverse.
    assert!(!acl.may_publish("inbox/d1/a") && acl.may_publish("devices/alice/x"));
    // With only publish rules, an ACL'd listener allows no subscription.
    let auth = listener("acl = [{ publish = \"#\" }]").unwrap();
    let acl = auth
        .connect(&connect(None, None), "c", None)
        .unwrap()
        .acl
        .unwrap();
    assert!(!acl.may_subscribe(&crate::config::topic_filter("a")));
}

#[test]
fn client_certificates_name_mqtt_principals() {
    let dir = tempfile::tempdir().unwrap();
    let files =
        sluice_tests::TlsFiles::generate(dir.path(), sluice_tests::ClientAuth::Required).unwrap();
    let tls = format!(
        "tls = {{ cert_file = {:?}, key_file = {:?}, client_ca_file = {:?} }}",
        files.server_cert, files.server_key, files.ca_cert
    );
    let auth = listener(&format!(
        "auth = \"client_cert\"\n{tls}\nacl = [{{ publish = \"d/{{username}}/#\", subscribe = \"d/{{username}}/#\" }}]"
    ))
    .unwrap();
    // The CONNECT's user name and password are not checked: the certificate's name counts.
    let ok = auth
        .connect(&connect(Some("mallory"), Some("x")), "c", Some("dev-1"))
        .unwrap();
    assert_eq!(ok.principal.as_deref(), Some("dev-1"));
    let acl = ok.acl.unwrap();
    assert!(acl.may_publish("d/dev-1/t") && !acl.may_publish("d/mallory/t"));
    assert_eq!(code(auth.connect(&connect(None, None), "c", None)), 0x87);
    assert_eq!(auth.certificate(None), Some(Err(Denied::Missing)));
    assert!(matches!(
        auth.certificate(Some(b"not DER")),
        Some(Err(Denied::Invalid(_)))
    ));
    // Without require_client_cert, clients could come in without a certificate.
    let lax = tls.replace(" }", ", require_client_cert = false }");
    let err = listener(&format!("auth = \"client_cert\"\n{lax}"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("auth") && err.contains("require_client_cert"),
        "{err}"
    );
    // Other listeners take no certificate principal.
    let passwords = listener(&format!(
        "auth = \"password_file\"\npassword_file = \"{}\"",
        fixture("passwd")
    ))
    .unwrap();
    assert_eq!(passwords.certificate(Some(b"x")), None);
}

/// The default config with its `http` listener's keys extended; the parse error, if any.
fn http_listener(keys: &str) -> Result<ShardAuth, String> {
    let text = DEFAULT_TOML.replace(
        "protocol = \"http\"\n",
        &format!("protocol = \"http\"\n{keys}\n"),
    );
    let config = Config::parse(&text, None).map_err(|e| e.to_string())?;
    let l = config.listeners.iter().find(|l| l.name == "http").unwrap();
    Ok(ShardAuth::new(l.authenticator.clone().expect("auth")))
}

#[test]
fn each_listener_kind_takes_its_own_auth_keys() {
    // HTTP ACLs are Kafka topic patterns, not MQTT filters.
    let err = http_listener("acl = [{ publish = \"#\" }]").unwrap_err();
    assert!(err.contains("listeners[3].acl[0].publish"), "{err}");
    let err = http_listener("acl = [{ subscribe = \"t.{client_id}\" }]").unwrap_err();
    assert!(
        err.contains("acl[0].subscribe") && err.contains("placeholder"),
        "{err}"
    );
    let err = http_listener("acl = [{}]").unwrap_err();
    assert!(err.contains("acl[0].publish"), "{err}");
    let err = http_listener("auth = \"client_cert\"").unwrap_err();
    assert!(err.contains("listeners[3].auth"), "{err}");
    // MQTT rules are plain filters: a share is checked on its inner filter.
    let err = listener("acl = [{ subscribe = \"$share/g/#\" }]")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("acl[0].subscribe") && err.contains("inner filter"),
        "{err}"
    );
    let err = listener("acl = [{}]").unwrap_err().to_string();
    assert!(err.contains("acl[0].publish"), "{err}");
    // Stream listeners: no in-band credentials; client certificates need verified TLS.
    let stream = |keys: &str| {
        let text = DEFAULT_TOML.replace(
            "protocol = \"stream\"\n",
            &format!("protocol = \"stream\"\n{keys}\n"),
        );
        Config::parse(&text, None).unwrap_err().to_string()
    };
    let err = stream(&format!(
        "auth = \"password_file\"\npassword_file = \"{}\"",
        fixture("passwd")
    ));
    assert!(err.contains("auth") && err.contains("client_cert"), "{err}");
    let err = stream("auth = \"client_cert\"");
    assert!(err.contains("client_ca_file"), "{err}");
    let err = stream("acl = [{ subscribe = \"x\" }]");
    assert!(err.contains("acl[0].subscribe"), "{err}");
}

#[test]
fn http_credentials_and_topic_acls() {
    let auth = http_listener(&format!(
        "auth = \"password_file\"\npassword_file = \"{}\"\nacl = [{{ publish = \"devices.{{username}}\", subscribe = \"devices.{{username}}\" }}, {{ subscribe = \"alerts.*\" }}]",
        fixture("passwd")
    ))
    .unwrap();
    assert_eq!(auth.method(), AuthMethod::PasswordFile);
    assert_eq!(auth.verify(Credentials::None), Err(Denied::Missing));
    assert!(matches!(
        auth.verify(Credentials::Token(b"x")),
        Err(Denied::Invalid(_))
    ));
    assert!(matches!(
        auth.verify(Credentials::Password("alice", b"builder")),
        Err(Denied::Invalid(_))
    ));
    let alice = auth
        .verify(Credentials::Password("alice", b"wonderland"))
        .unwrap();
    assert_eq!(alice.as_deref(), Some("alice"));
    let acl = auth.topic_acl(alice.as_deref());
    assert!(acl.may_write("devices.alice") && acl.may_read("devices.alice"));
    assert!(!acl.may_write("devices.bob") && !acl.may_read("devices.bob"));
    assert!(acl.may_read("alerts.fire") && !acl.may_write("alerts.fire"));
    // A principal that would change a pattern's meaning fills no rule.
    for odd in ["a*", "a/b", ""] {
        let acl = auth.topic_acl(Some(odd));
        assert!(
            !acl.may_write("devices.a") && !acl.may_write("devices.abc"),
            "{odd:?}"
        );
        assert!(
            acl.may_read("alerts.x"),
            "rules without placeholders still apply"
        );
    }
}
