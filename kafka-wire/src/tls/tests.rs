use std::path::Path;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConnection, ServerConfig, ServerConnection};
use tempfile::TempDir;

use super::*;

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    Ca { cert, key }
}

struct Leaf {
    cert: Certificate,
    key: KeyPair,
}

fn leaf(ca: &Ca, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, "leaf");
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    Leaf { cert, key }
}

fn server_leaf(ca: &Ca, names: &[&str]) -> Leaf {
    leaf(ca, names, ExtendedKeyUsagePurpose::ServerAuth)
}

fn client_leaf(ca: &Ca) -> Leaf {
    leaf(ca, &["sluice-client"], ExtendedKeyUsagePurpose::ClientAuth)
}

fn write(dir: &TempDir, name: &str, contents: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A broker-side config presenting `server`; with `client_ca`, client certificates from that CA
/// are required.
fn server_config(server: &Leaf, client_ca: Option<&Ca>) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.cert.der().clone()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key = PrivatePkcs8KeyDer::from(server.key.serialize_der());
    Arc::new(
        builder
            .with_single_cert(vec![server.cert.der().clone()], key.into())
            .unwrap(),
    )
}

#[derive(Debug)]
enum Failed {
    Client(rustls::Error),
    Server(rustls::Error),
}

/// Pumps TLS records between the two ends in memory until both finish the handshake.
fn handshake(
    client_config: Arc<ClientConfig>,
    name: ServerName<'static>,
    server_config: Arc<ServerConfig>,
) -> Result<(ClientConnection, ServerConnection), Failed> {
    let mut client = ClientConnection::new(client_config, name).unwrap();
    let mut server = ServerConnection::new(server_config).unwrap();
    for _ in 0..20 {
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok((client, server));
        }
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
            server.process_new_packets().map_err(Failed::Server)?;
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
            client.process_new_packets().map_err(Failed::Client)?;
        }
    }
    panic!("the handshake did not finish in 20 rounds");
}

const BROKER: &str = "broker-1.kafka.test";

#[test]
fn handshake_with_ca_file_sends_sni() {
    let dir = TempDir::new().unwrap();
    let ca = ca("test CA");
    let server = server_leaf(&ca, &[BROKER]);
    let cfg = TlsConfig {
        ca_file: Some(write(&dir, "ca.pem", &ca.cert.pem())),
        ..TlsConfig::default()
    };
    let name = server_name(&cfg, BROKER).unwrap();
    let (client, server) = handshake(
        client_config(&cfg).unwrap(),
        name,
        server_config(&server, None),
    )
    .expect("handshake succeeds");
    assert_eq!(server.server_name(), Some(BROKER));
    assert!(server.peer_certificates().is_none());
    assert!(client.peer_certificates().is_some());
}

#[test]
fn ca_bundle_loads_every_certificate() {
    let dir = TempDir::new().unwrap();
    let first = ca("first CA");
    let second = ca("second CA");
    let bundle = format!(
        "# comments between sections are fine\n{}\n{}",
        first.cert.pem(),
        second.cert.pem()
    );
    let cfg = TlsConfig {
        ca_file: Some(write(&dir, "bundle.pem", &bundle)),
        ..TlsConfig::default()
    };
    let config = client_config(&cfg).unwrap();
    for issuer in [&first, &second] {
        let server = server_config(&server_leaf(issuer, &[BROKER]), None);
        let name = server_name(&cfg, BROKER).unwrap();
        handshake(config.clone(), name, server).expect("trusted by the bundle");
    }
}

#[test]
fn sni_override_is_verified_and_sent() {
    let dir = TempDir::new().unwrap();
    let ca = ca("test CA");
    let server = server_config(&server_leaf(&ca, &[BROKER]), None);
    let mut cfg = TlsConfig {
        ca_file: Some(write(&dir, "ca.pem", &ca.cert.pem())),
        ..TlsConfig::default()
    };
    let config = client_config(&cfg).unwrap();

    // Reached by IP, the certificate (DNS name only) does not match.
    let by_ip = server_name(&cfg, "10.1.2.3").unwrap();
    assert!(matches!(by_ip, ServerName::IpAddress(_)));
    match handshake(config.clone(), by_ip, server.clone()) {
        Err(Failed::Client(rustls::Error::InvalidCertificate(e))) => {
            assert!(
                matches!(
                    e,
                    CertificateError::NotValidForNameContext { .. }
                        | CertificateError::NotValidForName
                ),
                "{e:?}"
            );
        }
        other => panic!("expected a name mismatch, got {:?}", other.map(|_| ())),
    }

    cfg.server_name = Some(BROKER.to_owned());
    let name = server_name(&cfg, "10.1.2.3").unwrap();
    let (_, server) = handshake(config, name, server).expect("override matches");
    assert_eq!(server.server_name(), Some(BROKER));
}

#[test]
fn mutual_tls_presents_the_client_certificate() {
    let dir = TempDir::new().unwrap();
    let ca = ca("test CA");
    let server = server_leaf(&ca, &[BROKER]);
    let client = client_leaf(&ca);
    let cfg = TlsConfig {
        ca_file: Some(write(&dir, "ca.pem", &ca.cert.pem())),
        cert_file: Some(write(&dir, "client.pem", &client.cert.pem())),
        key_file: Some(write(&dir, "client.key", &client.key.serialize_pem())),
        server_name: None,
    };
    let (_, server) = handshake(
        client_config(&cfg).unwrap(),
        server_name(&cfg, BROKER).unwrap(),
        server_config(&server, Some(&ca)),
    )
    .expect("mutual TLS handshake succeeds");
    let presented = server.peer_certificates().expect("client certificate");
    assert_eq!(presented[0], *client.cert.der());
}

/// Same as above with the key in SEC1 ("BEGIN EC PRIVATE KEY") form, as OpenSSL writes it.
#[test]
fn mutual_tls_with_sec1_key() {
    let dir = TempDir::new().unwrap();
    let ca = ca("test CA");
    let server = server_leaf(&ca, &[BROKER]);
    let client = client_leaf(&ca);
    let sec1 = pem(
        "EC PRIVATE KEY",
        &sec1_from_pkcs8(&client.key.serialize_der()),
    );
    let cfg = TlsConfig {
        ca_file: Some(write(&dir, "ca.pem", &ca.cert.pem())),
        cert_file: Some(write(&dir, "client.pem", &client.cert.pem())),
        key_file: Some(write(&dir, "client.key", &sec1)),
        server_name: None,
    };
    handshake(
        client_config(&cfg).unwrap(),
        server_name(&cfg, BROKER).unwrap(),
        server_config(&server, Some(&ca)),
    )
    .expect("SEC1 key works");
}

#[test]
fn server_requiring_a_client_certificate_rejects_none() {
    let dir = TempDir::new().unwrap();
    let ca = ca("test CA");
    let cfg = TlsConfig {
        ca_file: Some(write(&dir, "ca.pem", &ca.cert.pem())),
        ..TlsConfig::default()
    };
    let result = handshake(
        client_config(&cfg).unwrap(),
        server_name(&cfg, BROKER).unwrap(),
        server_config(&server_leaf(&ca, &[BROKER]), Some(&ca)),
    );
    assert!(
        matches!(
            result,
            Err(Failed::Server(rustls::Error::NoCertificatesPresented))
        ),
        "{:?}",
        result.map(|_| ())
    );
}

#[test]
fn client_certificate_from_another_ca_is_rejected() {
    let dir = TempDir::new().unwrap();
    let ca = ca("test CA");
    let rogue = ca_named_rogue();
    let client = client_leaf(&rogue);
    let cfg = TlsConfig {
        ca_file: Some(write(&dir, "ca.pem", &ca.cert.pem())),
        cert_file: Some(write(&dir, "client.pem", &client.cert.pem())),
        key_file: Some(write(&dir, "client.key", &client.key.serialize_pem())),
        server_name: None,
    };
    let result = handshake(
        client_config(&cfg).unwrap(),
        server_name(&cfg, BROKER).unwrap(),
        server_config(&server_leaf(&ca, &[BROKER]), Some(&ca)),
    );
    assert!(
        matches!(
            result,
            Err(Failed::Server(rustls::Error::InvalidCertificate(
                CertificateError::BadSignature | CertificateError::UnknownIssuer
            )))
        ),
        "{:?}",
        result.map(|_| ())
    );
}

/// Same name as the trusted CA, different key: only the signature tells them apart, which is
/// why verification reports `BadSignature` rather than `UnknownIssuer`.
fn ca_named_rogue() -> Ca {
    ca("test CA")
}

#[test]
fn server_certificate_from_another_ca_fails_verification() {
    let dir = TempDir::new().unwrap();
    let trusted = ca("test CA");
    let rogue = ca_named_rogue();
    let cfg = TlsConfig {
        ca_file: Some(write(&dir, "ca.pem", &trusted.cert.pem())),
        ..TlsConfig::default()
    };
    let result = handshake(
        client_config(&cfg).unwrap(),
        server_name(&cfg, BROKER).unwrap(),
        server_config(&server_leaf(&rogue, &[BROKER]), None),
    );
    assert!(
        matches!(
            result,
            Err(Failed::Client(rustls::Error::InvalidCertificate(
                CertificateError::BadSignature | CertificateError::UnknownIssuer
            )))
        ),
        "{:?}",
        result.map(|_| ())
    );
}

#[test]
fn default_roots_do_not_trust_a_private_ca() {
    let cfg = TlsConfig::default();
    let ca = ca("test CA");
    let result = handshake(
        client_config(&cfg).unwrap(),
        server_name(&cfg, BROKER).unwrap(),
        server_config(&server_leaf(&ca, &[BROKER]), None),
    );
    assert!(
        matches!(
            result,
            Err(Failed::Client(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            )))
        ),
        "{:?}",
        result.map(|_| ())
    );
}

fn err(cfg: &TlsConfig) -> TlsError {
    client_config(cfg).expect_err("configuration must be refused")
}

fn assert_names(error: &TlsError, path: &Path, prefix: &str) {
    let message = error.to_string();
    assert!(message.starts_with(prefix), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn missing_files_name_the_file() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("nope.pem");
    let error = err(&TlsConfig {
        ca_file: Some(missing.clone()),
        ..TlsConfig::default()
    });
    assert!(
        matches!(
            error,
            TlsError::Read {
                file: TlsFile::Ca,
                ..
            }
        ),
        "{error:?}"
    );
    assert_names(&error, &missing, "could not read the CA file ");

    let ca = ca("test CA");
    let client = client_leaf(&ca);
    let cert = write(&dir, "client.pem", &client.cert.pem());
    let key = write(&dir, "client.key", &client.key.serialize_pem());

    let error = err(&TlsConfig {
        cert_file: Some(missing.clone()),
        key_file: Some(key.clone()),
        ..TlsConfig::default()
    });
    assert_names(
        &error,
        &missing,
        "could not read the client certificate file ",
    );

    let error = err(&TlsConfig {
        cert_file: Some(cert),
        key_file: Some(missing.clone()),
        ..TlsConfig::default()
    });
    assert_names(&error, &missing, "could not read the client key file ");
}

#[test]
fn certificate_and_key_come_in_pairs() {
    let dir = TempDir::new().unwrap();
    let ca = ca("test CA");
    let client = client_leaf(&ca);
    let cert = write(&dir, "client.pem", &client.cert.pem());
    let key = write(&dir, "client.key", &client.key.serialize_pem());

    let error = err(&TlsConfig {
        cert_file: Some(cert.clone()),
        ..TlsConfig::default()
    });
    assert!(
        matches!(error, TlsError::CertificateWithoutKey { .. }),
        "{error:?}"
    );
    assert_names(&error, &cert, "the client certificate file ");

    let error = err(&TlsConfig {
        key_file: Some(key.clone()),
        ..TlsConfig::default()
    });
    assert!(
        matches!(error, TlsError::KeyWithoutCertificate { .. }),
        "{error:?}"
    );
    assert_names(&error, &key, "the client key file ");
}

#[test]
fn garbage_and_misplaced_pem() {
    let dir = TempDir::new().unwrap();
    let ca = ca("test CA");
    let client = client_leaf(&ca);

    let garbage = write(&dir, "garbage.pem", "this is not a certificate\n");
    let error = err(&TlsConfig {
        ca_file: Some(garbage.clone()),
        ..TlsConfig::default()
    });
    assert!(
        matches!(
            error,
            TlsError::NoCertificate {
                file: TlsFile::Ca,
                ..
            }
        ),
        "{error:?}"
    );
    assert_names(&error, &garbage, "the CA file ");

    let broken = write(
        &dir,
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
    );
    let error = err(&TlsConfig {
        ca_file: Some(broken.clone()),
        ..TlsConfig::default()
    });
    assert!(
        matches!(
            error,
            TlsError::Pem {
                file: TlsFile::Ca,
                ..
            }
        ),
        "{error:?}"
    );
    assert_names(&error, &broken, "the CA file ");

    let unterminated = write(&dir, "cut.pem", &ca.cert.pem()[..100]);
    let error = err(&TlsConfig {
        ca_file: Some(unterminated.clone()),
        ..TlsConfig::default()
    });
    assert!(matches!(error, TlsError::Pem { .. }), "{error:?}");

    // Well-formed PEM whose DER is not a certificate.
    let not_der = write(
        &dir,
        "not-der.pem",
        &pem("CERTIFICATE", b"definitely not DER"),
    );
    let error = err(&TlsConfig {
        ca_file: Some(not_der.clone()),
        ..TlsConfig::default()
    });
    assert!(
        matches!(error, TlsError::BadCaCertificate { .. }),
        "{error:?}"
    );
    assert_names(&error, &not_der, "the CA file ");

    // The key where the CA bundle should be.
    let key_as_ca = write(&dir, "key-as-ca.pem", &client.key.serialize_pem());
    let error = err(&TlsConfig {
        ca_file: Some(key_as_ca),
        ..TlsConfig::default()
    });
    assert!(matches!(error, TlsError::NoCertificate { .. }), "{error:?}");

    // The certificate given twice, no key anywhere.
    let cert = write(&dir, "client.pem", &client.cert.pem());
    let error = err(&TlsConfig {
        cert_file: Some(cert.clone()),
        key_file: Some(cert.clone()),
        ..TlsConfig::default()
    });
    assert!(matches!(error, TlsError::NoPrivateKey { .. }), "{error:?}");
    assert_names(&error, &cert, "the client key file ");
}

#[test]
fn key_that_does_not_match_the_certificate() {
    let dir = TempDir::new().unwrap();
    let ca = ca("test CA");
    let client = client_leaf(&ca);
    let other = client_leaf(&ca);
    let cert = write(&dir, "client.pem", &client.cert.pem());
    let key = write(&dir, "other.key", &other.key.serialize_pem());
    let error = err(&TlsConfig {
        cert_file: Some(cert.clone()),
        key_file: Some(key.clone()),
        ..TlsConfig::default()
    });
    assert!(
        matches!(error, TlsError::ClientCertificate { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&cert.display().to_string()), "{message}");
    assert!(message.contains(&key.display().to_string()), "{message}");
}

#[test]
fn server_name_choice() {
    let cfg = TlsConfig::default();
    assert_eq!(
        server_name(&cfg, BROKER).unwrap(),
        ServerName::try_from(BROKER).unwrap()
    );
    assert!(matches!(
        server_name(&cfg, "10.0.0.7").unwrap(),
        ServerName::IpAddress(_)
    ));
    assert!(matches!(
        server_name(&cfg, "::1").unwrap(),
        ServerName::IpAddress(_)
    ));
    assert!(matches!(
        server_name(&cfg, "[::1]").unwrap(),
        ServerName::IpAddress(_)
    ));
    let error = server_name(&cfg, "not a host!").unwrap_err();
    assert!(matches!(error, TlsError::InvalidServerName { .. }));
    assert_eq!(
        error.to_string(),
        "\"not a host!\" is not a valid TLS server name (a DNS name or IP address)"
    );

    let cfg = TlsConfig {
        server_name: Some("kafka.internal".into()),
        ..TlsConfig::default()
    };
    assert_eq!(
        server_name(&cfg, "10.0.0.7").unwrap(),
        ServerName::try_from("kafka.internal").unwrap()
    );
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// Pulls the SEC1 `ECPrivateKey` out of a PKCS#8 `PrivateKeyInfo` (its `privateKey` OCTET STRING).
fn sec1_from_pkcs8(der: &[u8]) -> Vec<u8> {
    // Returns (tag, contents, rest) of one DER TLV.
    fn tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = input[0];
        let (len, header) = match input[1] {
            l if l < 0x80 => (l as usize, 2),
            0x81 => (input[2] as usize, 3),
            0x82 => ((input[2] as usize) << 8 | input[3] as usize, 4),
            other => panic!("unexpected DER length byte {other:#x}"),
        };
        (tag, &input[header..header + len], &input[header + len..])
    }
    let (tag, info, _) = tlv(der);
    assert_eq!(tag, 0x30);
    let (tag, _version, rest) = tlv(info);
    assert_eq!(tag, 0x02);
    let (tag, _algorithm, rest) = tlv(rest);
    assert_eq!(tag, 0x30);
    let (tag, private_key, _) = tlv(rest);
    assert_eq!(tag, 0x04);
    private_key.to_vec()
}
