//! TLS client configuration for broker connections (`security.protocol` = `SSL` or `SASL_SSL`).
//!
//! Turns a [`TlsConfig`] (PEM file paths, as in Kafka's `ssl.*.location` settings) into a rustls
//! [`ClientConfig`] using the ring provider, and picks the server name to verify and send as SNI.
//! Certificates are always verified: against the CA bundle if one is given, else the Mozilla roots
//! from `webpki-roots`. Files are read once, when the config is built. The PEM loaders
//! ([`certificates`], [`private_key`], [`ca_roots_from`]) are public so that the proxy's TLS
//! listeners read their files the same way and report errors the same way.
//!
//! What this module does not do: open sockets or drive the handshake (the connection wraps the
//! stream with the returned config), reload rotated files, read encrypted private keys, JKS/PKCS#12
//! stores, or offer a way to switch verification off.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

#[cfg(test)]
mod tests;

/// Where to find the certificates and keys for TLS to the brokers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM bundle of CA certificates to trust (`ssl.ca.location`); `None` trusts the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS (`ssl.certificate.location`), leaf first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or SEC1) for mutual TLS (`ssl.key.location`).
    pub key_file: Option<PathBuf>,
    /// Name to verify and send as SNI instead of the broker's host, e.g. when brokers are reached
    /// through IP addresses or a tunnel.
    pub server_name: Option<String>,
}

/// Which of the configured files an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFile {
    Ca,
    Certificate,
    Key,
    /// A listener's certificate chain (the proxy's server side).
    ServerCertificate,
    /// A listener's private key.
    ServerKey,
    /// The CA bundle a listener verifies client certificates against.
    ClientCa,
}

impl fmt::Display for TlsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsFile::Ca => "CA file",
            TlsFile::Certificate => "client certificate file",
            TlsFile::Key => "client key file",
            TlsFile::ServerCertificate => "certificate file",
            TlsFile::ServerKey => "key file",
            TlsFile::ClientCa => "client CA file",
        })
    }
}

/// Why the TLS configuration could not be built. Every variant about a file names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("could not read the {file} {}: {error}", path.display())]
    Read {
        file: TlsFile,
        path: PathBuf,
        error: io::Error,
    },
    #[error("the {file} {} is not valid PEM: {error}", path.display())]
    Pem {
        file: TlsFile,
        path: PathBuf,
        error: io::Error,
    },
    #[error("the {file} {} contains no PEM certificate", path.display())]
    NoCertificate { file: TlsFile, path: PathBuf },
    #[error("the CA file {} contains a certificate that cannot be trusted as a CA: {error}", path.display())]
    BadCaCertificate { path: PathBuf, error: rustls::Error },
    #[error("the {file} {} contains no PKCS#8, RSA or SEC1 private key in PEM form", path.display())]
    NoPrivateKey { file: TlsFile, path: PathBuf },
    #[error("the client certificate file {} was given without a client key file; mutual TLS needs both", path.display())]
    CertificateWithoutKey { path: PathBuf },
    #[error("the client key file {} was given without a client certificate file; mutual TLS needs both", path.display())]
    KeyWithoutCertificate { path: PathBuf },
    #[error("the client certificate file {} and key file {} cannot be used together: {error}", cert.display(), key.display())]
    ClientCertificate {
        cert: PathBuf,
        key: PathBuf,
        error: rustls::Error,
    },
    #[error("{name:?} is not a valid TLS server name (a DNS name or IP address)")]
    InvalidServerName { name: String },
    #[error("the TLS library refused its default protocol versions: {0}")]
    Protocol(rustls::Error),
}

/// Builds the rustls client configuration for broker connections.
pub fn client_config(cfg: &TlsConfig) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match &cfg.ca_file {
        Some(path) => ca_roots_from(TlsFile::Ca, path)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    // Check the pairing before reading anything else so the error names the real mistake.
    let client_auth = match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (Some(cert), None) => return Err(TlsError::CertificateWithoutKey { path: cert.clone() }),
        (None, Some(key)) => return Err(TlsError::KeyWithoutCertificate { path: key.clone() }),
        (None, None) => None,
    };

    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Protocol)?
            .with_root_certificates(roots);

    let config = match client_auth {
        None => builder.with_no_client_auth(),
        Some((cert_path, key_path)) => {
            let chain = certificates(TlsFile::Certificate, cert_path)?;
            let key = private_key(TlsFile::Key, key_path)?;
            builder.with_client_auth_cert(chain, key).map_err(|error| {
                TlsError::ClientCertificate {
                    cert: cert_path.clone(),
                    key: key_path.clone(),
                    error,
                }
            })?
        }
    };
    Ok(Arc::new(config))
}

/// The name to verify the broker's certificate against and send as SNI: the configured override,
/// else the host the broker advertised (a DNS name or an IP address, brackets allowed for IPv6).
pub fn server_name(cfg: &TlsConfig, broker_host: &str) -> Result<ServerName<'static>, TlsError> {
    let name = cfg.server_name.as_deref().unwrap_or(broker_host);
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    ServerName::try_from(bare.to_owned()).map_err(|_| TlsError::InvalidServerName {
        name: name.to_owned(),
    })
}

fn open(file: TlsFile, path: &Path) -> Result<BufReader<File>, TlsError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|error| TlsError::Read {
            file,
            path: path.to_owned(),
            error,
        })
}

/// Every certificate in the file, in order; other PEM sections (e.g. a key) are skipped.
pub fn certificates(file: TlsFile, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut reader = open(file, path)?;
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_or_read_error(file, path, error))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            file,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The CA certificates in `path` (`file` says which setting named it, for errors).
pub fn ca_roots_from(file: TlsFile, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(file, path)? {
        // One bad certificate makes the whole bundle suspect; better to refuse than to start
        // with fewer trust anchors than the operator thinks.
        roots
            .add(cert)
            .map_err(|error| TlsError::BadCaCertificate {
                path: path.to_owned(),
                error,
            })?;
    }
    Ok(roots)
}

/// The first private key (PKCS#8, RSA or SEC1) in the PEM file at `path`.
pub fn private_key(file: TlsFile, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let mut reader = open(file, path)?;
    rustls_pemfile::private_key(&mut reader)
        .map_err(|error| pem_or_read_error(file, path, error))?
        .ok_or_else(|| TlsError::NoPrivateKey {
            file,
            path: path.to_owned(),
        })
}

/// rustls-pemfile reports both IO failures and bad PEM as `io::Error`; it uses `InvalidData` for
/// the latter.
fn pem_or_read_error(file: TlsFile, path: &Path, error: io::Error) -> TlsError {
    let path = path.to_owned();
    if error.kind() == io::ErrorKind::InvalidData {
        TlsError::Pem { file, path, error }
    } else {
        TlsError::Read { file, path, error }
    }
}
