use super::*;

fn config(mechanism: SaslMechanism, username: &str, password: &str) -> SaslConfig {
    SaslConfig {
        mechanism,
        username: username.to_owned(),
        password: password.to_owned(),
    }
}

fn respond(step: Result<SaslStep, SaslError>) -> Vec<u8> {
    match step {
        Ok(SaslStep::Respond(bytes)) => bytes,
        other => panic!("expected a response, got {other:?}"),
    }
}

#[test]
fn mechanism_names_round_trip() {
    for (mechanism, name) in [
        (SaslMechanism::Plain, "PLAIN"),
        (SaslMechanism::ScramSha256, "SCRAM-SHA-256"),
        (SaslMechanism::ScramSha512, "SCRAM-SHA-512"),
    ] {
        assert_eq!(mechanism.name(), name);
        assert_eq!(mechanism.to_string(), name);
        assert_eq!(name.parse::<SaslMechanism>(), Ok(mechanism));
        assert_eq!(name.to_lowercase().parse::<SaslMechanism>(), Ok(mechanism));
    }
    assert_eq!("Scram-Sha-512".parse(), Ok(SaslMechanism::ScramSha512));
    assert_eq!(
        "GSSAPI".parse::<SaslMechanism>(),
        Err(SaslError::UnknownMechanism("GSSAPI".into()))
    );
    assert_eq!(
        "SCRAM-SHA-1".parse::<SaslMechanism>(),
        Err(SaslError::UnknownMechanism("SCRAM-SHA-1".into()))
    );
}

#[test]
fn debug_never_prints_the_password() {
    let cfg = config(SaslMechanism::ScramSha256, "alice", "hunter2-secret");
    let mut session = SaslSession::with_nonce(&cfg, "abc");
    let _ = session.initial_response();
    for text in [format!("{cfg:?}"), format!("{session:?}")] {
        assert!(!text.contains("hunter2-secret"), "{text}");
        assert!(text.contains("alice"), "{text}");
    }
}

#[test]
fn validate_rejects_nul_and_empty_username() {
    assert!(config(SaslMechanism::Plain, "u", "p").validate().is_ok());
    assert!(matches!(
        config(SaslMechanism::Plain, "u\0admin", "p").validate(),
        Err(SaslError::InvalidCredentials(_))
    ));
    assert!(matches!(
        config(SaslMechanism::Plain, "u", "p\0").validate(),
        Err(SaslError::InvalidCredentials(_))
    ));
    assert!(matches!(
        config(SaslMechanism::ScramSha256, "", "p").validate(),
        Err(SaslError::InvalidCredentials(_))
    ));
}

#[test]
fn plain_sends_exact_bytes_and_completes() {
    let mut session = SaslSession::new(&config(SaslMechanism::Plain, "alice", "s3cr=t,"));
    assert!(!session.is_complete());
    assert_eq!(session.initial_response(), b"\0alice\0s3cr=t,");
    assert!(!session.is_complete());
    assert_eq!(session.step(b""), Ok(SaslStep::Done));
    assert!(session.is_complete());
    assert_eq!(session.step(b""), Err(SaslError::UnexpectedStep));
    assert!(!session.is_complete());
}

#[test]
fn step_before_initial_response_is_unexpected() {
    for mechanism in [SaslMechanism::Plain, SaslMechanism::ScramSha256] {
        let mut session = SaslSession::with_nonce(&config(mechanism, "u", "p"), "n");
        assert_eq!(
            session.step(b"r=n1,s=QQ==,i=4096"),
            Err(SaslError::UnexpectedStep)
        );
    }
}

#[test]
fn initial_response_twice_does_not_restart() {
    let cfg = config(SaslMechanism::ScramSha256, "user", "pencil");
    let mut session = SaslSession::with_nonce(&cfg, "rOprNGfwEbeRWgbNEkqO");
    let first = session.initial_response();
    assert_eq!(session.initial_response(), first);
    respond(session.step(RFC7677_SERVER_FIRST.as_bytes()));
    assert_eq!(session.initial_response(), first);
    assert_eq!(
        session.step(RFC7677_SERVER_FINAL.as_bytes()),
        Ok(SaslStep::Done)
    );
}

const RFC7677_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC7677_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
     p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC7677_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

/// RFC 7677 section 3, byte for byte.
#[test]
fn scram_sha256_rfc7677_vector() {
    let cfg = config(SaslMechanism::ScramSha256, "user", "pencil");
    let mut session = SaslSession::with_nonce(&cfg, "rOprNGfwEbeRWgbNEkqO");
    assert_eq!(
        session.initial_response(),
        b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    );
    let client_final = respond(session.step(RFC7677_SERVER_FIRST.as_bytes()));
    assert_eq!(
        String::from_utf8(client_final).unwrap(),
        RFC7677_CLIENT_FINAL
    );
    assert!(!session.is_complete());
    assert_eq!(
        session.step(RFC7677_SERVER_FINAL.as_bytes()),
        Ok(SaslStep::Done)
    );
    assert!(session.is_complete());
}

#[test]
fn scram_escapes_username() {
    let cfg = config(SaslMechanism::ScramSha512, "a,b=c", "p");
    let mut session = SaslSession::with_nonce(&cfg, "xyz");
    assert_eq!(session.initial_response(), b"n,,n=a=2Cb=3Dc,r=xyz");
}

#[test]
fn random_nonces_are_valid_and_distinct() {
    let cfg = config(SaslMechanism::ScramSha256, "u", "p");
    let a = String::from_utf8(SaslSession::new(&cfg).initial_response()).unwrap();
    let b = String::from_utf8(SaslSession::new(&cfg).initial_response()).unwrap();
    assert_ne!(a, b);
    let nonce = a.strip_prefix("n,,n=u,r=").unwrap();
    assert!(nonce.len() >= 24);
    assert!(nonce
        .bytes()
        .all(|c| (0x21..=0x7e).contains(&c) && c != b','));
}

/// A minimal SCRAM server written independently from the client code (direct `Hmac<D>` use), so a
/// wrong key derivation or HMAC in the client shows up as a rejected proof.
mod server {
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256, Sha512};

    pub struct Credentials {
        pub salt: Vec<u8>,
        pub iterations: u32,
        pub stored_key: Vec<u8>,
        pub server_key: Vec<u8>,
    }

    #[derive(Clone, Copy)]
    pub enum Hash {
        Sha256,
        Sha512,
    }

    pub fn hmac(hash: Hash, key: &[u8], data: &[u8]) -> Vec<u8> {
        match hash {
            Hash::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Hash::Sha512 => {
                let mut m = Hmac::<Sha512>::new_from_slice(key).unwrap();
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn h(hash: Hash, data: &[u8]) -> Vec<u8> {
        match hash {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// PBKDF2 written out from RFC 8018 (single block: dkLen == hLen).
    fn hi(hash: Hash, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut block = salt.to_vec();
        block.extend_from_slice(&1u32.to_be_bytes());
        let mut u = hmac(hash, password, &block);
        let mut out = u.clone();
        for _ in 1..iterations {
            u = hmac(hash, password, &u);
            out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
        }
        out
    }

    pub fn credentials(hash: Hash, password: &str, salt: &[u8], iterations: u32) -> Credentials {
        let salted = hi(hash, password.as_bytes(), salt, iterations);
        Credentials {
            salt: salt.to_vec(),
            iterations,
            stored_key: h(hash, &hmac(hash, &salted, b"Client Key")),
            server_key: hmac(hash, &salted, b"Server Key"),
        }
    }

    pub struct Exchange {
        pub client_first_bare: String,
        pub server_first: String,
        pub nonce: String,
    }

    pub fn first(creds: &Credentials, client_first: &[u8], server_nonce: &str) -> Exchange {
        let client_first = std::str::from_utf8(client_first).unwrap();
        let bare = client_first.strip_prefix("n,,").unwrap();
        let client_nonce = bare.split(',').nth(1).unwrap().strip_prefix("r=").unwrap();
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&creds.salt),
            creds.iterations
        );
        Exchange {
            client_first_bare: bare.to_owned(),
            server_first,
            nonce,
        }
    }

    /// Verifies the client proof; `Ok(server-final)` or `Err(e=...)` like a broker.
    pub fn finish(
        hash: Hash,
        creds: &Credentials,
        ex: &Exchange,
        client_final: &[u8],
    ) -> Result<String, String> {
        let client_final = std::str::from_utf8(client_final).unwrap();
        let (without_proof, proof) = client_final.rsplit_once(",p=").unwrap();
        assert_eq!(without_proof, format!("c=biws,r={}", ex.nonce));
        let auth = format!(
            "{},{},{without_proof}",
            ex.client_first_bare, ex.server_first
        );
        let signature = hmac(hash, &creds.stored_key, auth.as_bytes());
        let proof = BASE64.decode(proof).unwrap();
        assert_eq!(proof.len(), signature.len());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if h(hash, &client_key) != creds.stored_key {
            return Err("e=invalid-proof".into());
        }
        let server_signature = hmac(hash, &creds.server_key, auth.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)))
    }
}

fn round_trip(mechanism: SaslMechanism, hash: server::Hash) {
    let creds = server::credentials(hash, "p@ss,w=rd", b"0123456789abcdef", 4096);
    let cfg = config(mechanism, "bob", "p@ss,w=rd");
    let mut session = SaslSession::new(&cfg);
    let ex = server::first(&creds, &session.initial_response(), "SRVNONCE+/42");
    let client_final = respond(session.step(ex.server_first.as_bytes()));
    let server_final = server::finish(hash, &creds, &ex, &client_final).expect("proof accepted");
    assert_eq!(session.step(server_final.as_bytes()), Ok(SaslStep::Done));
    assert!(session.is_complete());
}

#[test]
fn scram_sha512_round_trip_with_reference_server() {
    round_trip(SaslMechanism::ScramSha512, server::Hash::Sha512);
}

#[test]
fn scram_sha256_round_trip_with_reference_server() {
    round_trip(SaslMechanism::ScramSha256, server::Hash::Sha256);
}

#[test]
fn wrong_password_is_rejected_by_the_server() {
    let hash = server::Hash::Sha512;
    let creds = server::credentials(hash, "right", b"salty", 4096);
    let mut session = SaslSession::new(&config(SaslMechanism::ScramSha512, "bob", "wrong"));
    let ex = server::first(&creds, &session.initial_response(), "S");
    let client_final = respond(session.step(ex.server_first.as_bytes()));
    let error = server::finish(hash, &creds, &ex, &client_final).unwrap_err();
    assert_eq!(
        session.step(error.as_bytes()),
        Err(SaslError::ServerError("invalid-proof".into()))
    );
    assert!(!session.is_complete());
    assert_eq!(session.step(b"v=AAAA"), Err(SaslError::UnexpectedStep));
}

/// Drives a SHA-512 exchange to the server-final message and returns the session and that message.
fn at_server_final() -> (SaslSession, String) {
    let hash = server::Hash::Sha512;
    let creds = server::credentials(hash, "pw", b"salt-salt", 4096);
    let mut session = SaslSession::new(&config(SaslMechanism::ScramSha512, "bob", "pw"));
    let ex = server::first(&creds, &session.initial_response(), "S");
    let client_final = respond(session.step(ex.server_first.as_bytes()));
    let server_final = server::finish(hash, &creds, &ex, &client_final).unwrap();
    (session, server_final)
}

#[test]
fn corrupted_server_signature_is_rejected() {
    let (_, good) = at_server_final();
    let mut signature = BASE64.decode(good.strip_prefix("v=").unwrap()).unwrap();
    for (i, bit) in [(0, 0x01), (31, 0x80), (63, 0x10)] {
        let (mut session, _) = at_server_final();
        signature[i] ^= bit;
        let forged = format!("v={}", BASE64.encode(&signature));
        signature[i] ^= bit;
        assert_eq!(
            session.step(forged.as_bytes()),
            Err(SaslError::BadServerSignature)
        );
        assert!(!session.is_complete());
    }
}

#[test]
fn truncated_or_foreign_signature_is_rejected() {
    let (mut session, good) = at_server_final();
    let signature = BASE64.decode(good.strip_prefix("v=").unwrap()).unwrap();
    // A SHA-256-sized prefix of the right SHA-512 signature must not pass.
    let truncated = format!("v={}", BASE64.encode(&signature[..32]));
    assert_eq!(
        session.step(truncated.as_bytes()),
        Err(SaslError::BadServerSignature)
    );

    // An impostor that does not know the password signs with a key of its own choosing.
    let (mut session, _) = at_server_final();
    let forged = server::hmac(server::Hash::Sha512, b"guess", b"anything");
    let forged = format!("v={}", BASE64.encode(forged));
    assert_eq!(
        session.step(forged.as_bytes()),
        Err(SaslError::BadServerSignature)
    );
}

#[test]
fn rfc7677_server_final_from_a_different_exchange_is_rejected() {
    let cfg = config(SaslMechanism::ScramSha256, "user", "pencil");
    let mut session = SaslSession::with_nonce(&cfg, "rOprNGfwEbeRWgbNEkqO");
    session.initial_response();
    let other_server_first = RFC7677_SERVER_FIRST.replace("k0,", "k1,");
    respond(session.step(other_server_first.as_bytes()));
    assert_eq!(
        session.step(RFC7677_SERVER_FINAL.as_bytes()),
        Err(SaslError::BadServerSignature)
    );
}

fn after_server_first(server_first: &[u8]) -> Result<SaslStep, SaslError> {
    let cfg = config(SaslMechanism::ScramSha256, "user", "pencil");
    let mut session = SaslSession::with_nonce(&cfg, "abc");
    session.initial_response();
    let result = session.step(server_first);
    if result.is_err() {
        assert_eq!(session.step(b"v=AAAA"), Err(SaslError::UnexpectedStep));
    }
    result
}

#[test]
fn server_nonce_must_extend_ours() {
    assert_eq!(
        after_server_first(b"r=abXdef,s=QUJD,i=4096"),
        Err(SaslError::NonceMismatch)
    );
    assert_eq!(
        after_server_first(b"r=xyzabc,s=QUJD,i=4096"),
        Err(SaslError::NonceMismatch)
    );
    assert!(after_server_first(b"r=abcdef,s=QUJD,i=4096").is_ok());
}

#[test]
fn iteration_count_bounds() {
    assert_eq!(
        after_server_first(b"r=abcd,s=QUJD,i=4095"),
        Err(SaslError::IterationCount(4095))
    );
    assert_eq!(
        after_server_first(b"r=abcd,s=QUJD,i=1"),
        Err(SaslError::IterationCount(1))
    );
    assert_eq!(
        after_server_first(b"r=abcd,s=QUJD,i=1000001"),
        Err(SaslError::IterationCount(1_000_001))
    );
    assert_eq!(
        after_server_first(b"r=abcd,s=QUJD,i=99999999999999"),
        Err(SaslError::IterationCount(u32::MAX))
    );
    assert!(after_server_first(b"r=abcd,s=QUJD,i=4096").is_ok());
}

#[test]
fn malformed_server_first_messages() {
    for message in [
        &b""[..],
        b"garbage",
        b"s=QUJD,r=abcd,i=4096",
        b"r=abcd,i=4096",
        b"r=abcd,s=QUJD",
        b"r=abcd,s=not base64!,i=4096",
        b"r=abcd,s=,i=4096",
        b"r=abcd,s=QUJD,i=",
        b"r=abcd,s=QUJD,i=-4096",
        b"r=abcd,s=QUJD,i=4096x",
        b"r=abc d,s=QUJD,i=4096",
        b"m=ext,r=abcd,s=QUJD,i=4096",
        b"r=abcd,s=QUJD,i=4\xff096",
        b"\xff\xfe",
    ] {
        assert!(
            matches!(after_server_first(message), Err(SaslError::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(message)
        );
    }
    // Optional extensions after i= are ignored, as RFC 5802 says.
    assert!(after_server_first(b"r=abcd,s=QUJD,i=4096,x=future").is_ok());
}

#[test]
fn server_error_in_server_first_is_reported() {
    assert_eq!(
        after_server_first(b"e=unknown-user"),
        Err(SaslError::ServerError("unknown-user".into()))
    );
}

#[test]
fn malformed_server_final_messages() {
    for message in [&b""[..], b"x=1", b"v=***", b"\xff"] {
        let (mut session, _) = at_server_final();
        assert!(
            matches!(session.step(message), Err(SaslError::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(message)
        );
    }
    let (mut session, _) = at_server_final();
    assert_eq!(
        session.step(b"e=other-error"),
        Err(SaslError::ServerError("other-error".into()))
    );
}

#[test]
fn server_final_extensions_are_ignored() {
    let (mut session, good) = at_server_final();
    let with_ext = format!("{good},x=later");
    assert_eq!(session.step(with_ext.as_bytes()), Ok(SaslStep::Done));
}

#[test]
fn error_messages_are_sentences() {
    assert_eq!(
        SaslError::IterationCount(12).to_string(),
        "the broker asked for 12 SCRAM iterations, outside the accepted range 4096..=1000000"
    );
    assert_eq!(
        SaslError::ServerError("invalid-proof".into()).to_string(),
        "the broker rejected SCRAM authentication: invalid-proof"
    );
}

#[test]
fn constant_time_eq_basics() {
    assert!(constant_time_eq(b"", b""));
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}
