//! TLS in front of tansu, which cannot terminate TLS itself (0.6.0 accepts `--cert/--key`
//! but never uses them): a throwaway CA, a server certificate for 127.0.0.1 and localhost, an
//! optional client certificate, and stunnel4 forwarding TLS to tansu's plaintext port.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::broker::{find_binary, port_taken, StartError};
use crate::process::Service;
use crate::wait::poll_until;

const STUNNEL_START: Duration = Duration::from_secs(15);

/// Whether the TLS front requires clients to present a certificate signed by the test CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// Server authentication only.
    #[default]
    None,
    /// Mutual TLS: stunnel refuses clients without a certificate from [`TlsFiles::ca_cert`].
    Required,
}

/// PEM files of a TLS-fronted broker, all inside the broker's temporary directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the server (and client) certificate: what clients trust.
    pub ca_cert: PathBuf,
    /// Server certificate (SANs 127.0.0.1 and localhost) and its key, used by stunnel.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate and key signed by the CA; present with [`ClientAuth::Required`].
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

impl TlsFiles {
    /// The client identity as (certificate, key), when there is one.
    pub fn client_identity(&self) -> Option<(&Path, &Path)> {
        Some((self.client_cert.as_deref()?, self.client_key.as_deref()?))
    }
}

impl TlsFiles {
    /// A throwaway CA and certificates in `dir`: a server certificate for 127.0.0.1 and
    /// localhost, and with [`ClientAuth::Required`] a client certificate (CN
    /// `sluice-test-client`), for tests of servers that terminate TLS themselves.
    pub fn generate(dir: &Path, client_auth: ClientAuth) -> Result<TlsFiles> {
        write_files(dir, client_auth)
    }
}

/// Generates the CA and certificates into `dir`.
pub(crate) fn write_files(dir: &Path, client_auth: ClientAuth) -> Result<TlsFiles> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sluice test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key)?;

    let leaf = |name: &str,
                sans: Vec<String>,
                usage: ExtendedKeyUsagePurpose|
     -> Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        Ok((cert.pem(), key.serialize_pem()))
    };

    let write = |name: &str, pem: &str| -> Result<PathBuf> {
        let path = dir.join(name);
        fs::write(&path, pem).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    };

    let (server_pem, server_key_pem) = leaf(
        "localhost",
        vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let mut files = TlsFiles {
        ca_cert: write("ca.pem", &ca.pem())?,
        server_cert: write("server.pem", &server_pem)?,
        server_key: write("server.key", &server_key_pem)?,
        client_cert: None,
        client_key: None,
        client_auth,
    };
    if client_auth == ClientAuth::Required {
        let (client_pem, client_key_pem) = leaf(
            "sluice-test-client",
            vec!["sluice-test-client".to_owned()],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        files.client_cert = Some(write("client.pem", &client_pem)?);
        files.client_key = Some(write("client.key", &client_key_pem)?);
    }
    Ok(files)
}

/// Starts stunnel accepting TLS on `accept` and forwarding plaintext to `connect`, and waits
/// until it has bound its port.
pub(crate) fn start_stunnel(
    dir: &Path,
    files: &TlsFiles,
    accept: SocketAddr,
    connect: SocketAddr,
) -> Result<Service, StartError> {
    let bin = find_binary(&["stunnel4", "stunnel"])
        .context("stunnel4 is not installed: run tools/install-deps.sh")
        .map_err(StartError::Failed)?;
    let mut conf = format!(
        "; written by sluice-tests for one test broker\n\
         foreground = yes\n\
         pid =\n\
         syslog = no\n\
         debug = info\n\
         \n\
         [kafka]\n\
         accept = {accept}\n\
         connect = {connect}\n\
         cert = {}\n\
         key = {}\n",
        files.server_cert.display(),
        files.server_key.display(),
    );
    if files.client_auth == ClientAuth::Required {
        conf.push_str(&format!(
            "verifyChain = yes\nrequireCert = yes\nCAfile = {}\n",
            files.ca_cert.display()
        ));
    }
    let conf_path = dir.join("stunnel.conf");
    fs::write(&conf_path, conf)
        .with_context(|| format!("cannot write {}", conf_path.display()))
        .map_err(StartError::Failed)?;

    let log = dir.join("stunnel.log");
    let mut cmd = Command::new(bin);
    cmd.arg(&conf_path).current_dir(dir);
    let mut stunnel = Service::spawn("stunnel", cmd, &log).map_err(StartError::Failed)?;
    let ready = poll_until(STUNNEL_START, || {
        // Logged (at info) once the port is bound; "Configuration successful" comes
        // before binding, so it does not prove the port is ours.
        stunnel.exit_status().is_some()
            || stunnel.new_output().contains("Accepting new connections")
    });
    if let Some(status) = stunnel.exit_status() {
        let why = anyhow::anyhow!(
            "stunnel exited ({status}) before accepting on {accept}; {}:\n{}",
            log.display(),
            stunnel.log_tail(50)
        );
        return Err(if port_taken(&stunnel.new_output()) {
            StartError::PortTaken(why)
        } else {
            StartError::Failed(why)
        });
    }
    if !ready {
        return Err(StartError::Failed(anyhow::anyhow!(
            "stunnel did not start accepting on {accept} within {STUNNEL_START:?}; {}:\n{}",
            log.display(),
            stunnel.log_tail(50)
        )));
    }
    Ok(stunnel)
}
