//! SASL client mechanisms (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) as sans-IO state machines.
//!
//! The connection code negotiates the mechanism with `SaslHandshake` v1, then carries the bytes
//! this module produces in `SaslAuthenticate` requests and feeds the `auth_bytes` of each
//! successful response back into [`SaslSession::step`] until it returns [`SaslStep::Done`]:
//!
//! 1. `initial_response()` → first `SaslAuthenticate.auth_bytes`;
//! 2. for every response with error code 0: `step(auth_bytes)` → `Respond(bytes)` (send another
//!    `SaslAuthenticate`) or `Done` (the broker is authenticated too, for SCRAM).
//!
//! What this module does not do: any IO, the Kafka request/response encoding, interpreting
//! `SaslAuthenticate` error codes (a non-zero code ends the exchange before `step` is called),
//! OAUTHBEARER/GSSAPI, SCRAM channel binding (`-PLUS`), delegation-token extensions, and
//! SASLprep: usernames and passwords are used as their UTF-8 bytes without normalisation, which is
//! what the Java client does too, so credentials that work there work here.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

#[cfg(test)]
mod tests;

/// Kafka's brokers refuse to store SCRAM credentials with fewer iterations (and RFC 7677 asks for
/// at least 4096); a server asking for fewer is more likely an impostor that wants a proof it can
/// brute-force cheaply, so the Java client rejects it and so do we.
pub const MIN_SCRAM_ITERATIONS: u32 = 4096;

/// A hostile server could ask for billions of PBKDF2 rounds to pin the proxy's CPU; one million
/// rounds is already around a second of SHA-512 and far above any broker's setting (Kafka caps
/// the stored count at 16384).
pub const MAX_SCRAM_ITERATIONS: u32 = 1_000_000;

/// A SASL mechanism sluice can authenticate with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// RFC 4616: the password travels in clear, so use it only over TLS.
    Plain,
    /// RFC 7677.
    ScramSha256,
    /// SCRAM with SHA-512, as supported by Kafka (KIP-84).
    ScramSha512,
}

impl SaslMechanism {
    /// The mechanism name as sent in `SaslHandshake` and written in `sasl.mechanism`.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SaslMechanism {
    type Err = SaslError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            SaslMechanism::Plain,
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha512,
        ]
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(s.trim()))
        .ok_or_else(|| SaslError::UnknownMechanism(s.to_owned()))
    }
}

/// Credentials and mechanism for one broker connection.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslConfig {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl SaslConfig {
    /// Rejects credentials the chosen mechanism cannot carry: PLAIN separates its fields with NUL,
    /// so a NUL inside one would let a username smuggle an authorization identity.
    pub fn validate(&self) -> Result<(), SaslError> {
        if self.username.is_empty() {
            return Err(SaslError::InvalidCredentials("the username is empty"));
        }
        if self.username.contains('\0') || self.password.contains('\0') {
            return Err(SaslError::InvalidCredentials(
                "the username or password contains a NUL character",
            ));
        }
        Ok(())
    }
}

// Manual so that logging a config (or anything holding one) never leaks the password.
impl fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What the connection should do after feeding a server message to [`SaslSession::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Send these bytes in another `SaslAuthenticate` request.
    Respond(Vec<u8>),
    /// Authentication finished successfully.
    Done,
}

/// Why a SASL exchange failed. None of these are retriable with the same credentials and server.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaslError {
    #[error("the broker rejected SCRAM authentication: {0}")]
    ServerError(String),
    #[error("the broker's SCRAM nonce does not extend the nonce we sent, so the exchange may be replayed or tampered with")]
    NonceMismatch,
    #[error("the broker's SCRAM server signature is wrong, so it does not know our credentials (possible impostor)")]
    BadServerSignature,
    #[error("the broker sent a malformed SASL message: {0}")]
    Malformed(&'static str),
    #[error(
        "the broker asked for {0} SCRAM iterations, outside the accepted range {min}..={max}",
        min = MIN_SCRAM_ITERATIONS,
        max = MAX_SCRAM_ITERATIONS
    )]
    IterationCount(u32),
    #[error("a SASL message arrived when the exchange did not expect one")]
    UnexpectedStep,
    #[error(
        "{0:?} is not a supported SASL mechanism (expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
    )]
    UnknownMechanism(String),
    #[error("the SASL credentials are unusable: {0}")]
    InvalidCredentials(&'static str),
}

/// One client-side SASL exchange. Create one per connection attempt; it is not reusable.
pub struct SaslSession {
    mechanism: SaslMechanism,
    username: String,
    password: String,
    nonce: String,
    state: State,
}

enum State {
    Initial,
    /// PLAIN: the credentials were sent; the broker answers with an error code, not bytes.
    PlainSent,
    /// SCRAM: client-first sent; remember its bare part for the AuthMessage.
    ClientFirstSent {
        client_first_bare: String,
    },
    /// SCRAM: client-final sent; this is what the server must prove it can compute.
    ClientFinalSent {
        server_signature: Vec<u8>,
    },
    Done,
    Failed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Initial => "initial",
            State::PlainSent => "plain-sent",
            State::ClientFirstSent { .. } => "client-first-sent",
            State::ClientFinalSent { .. } => "client-final-sent",
            State::Done => "done",
            State::Failed => "failed",
        }
    }
}

// Manual: the password and the expected server signature are secrets.
impl fmt::Debug for SaslSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslSession")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("state", &self.state.name())
            .finish_non_exhaustive()
    }
}

impl SaslSession {
    /// A session with a fresh random client nonce.
    pub fn new(config: &SaslConfig) -> Self {
        let mut raw = [0u8; 24];
        rand::Rng::fill(&mut rand::thread_rng(), &mut raw[..]);
        // Base64 is printable and never contains ',', as the nonce grammar requires.
        Self::with_nonce(config, &BASE64.encode(raw))
    }

    /// A session with a fixed client nonce, for deterministic tests. The nonce must be printable
    /// ASCII without ','.
    pub fn with_nonce(config: &SaslConfig, nonce: &str) -> Self {
        debug_assert!(
            nonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b','),
            "a SCRAM nonce must be printable ASCII without ','"
        );
        SaslSession {
            mechanism: config.mechanism,
            username: config.username.clone(),
            password: config.password.clone(),
            nonce: nonce.to_owned(),
            state: State::Initial,
        }
    }

    pub fn mechanism(&self) -> SaslMechanism {
        self.mechanism
    }

    /// The first `SaslAuthenticate.auth_bytes`. Call it once, before any [`step`](Self::step);
    /// later calls return the same bytes without restarting the exchange.
    pub fn initial_response(&mut self) -> Vec<u8> {
        match self.mechanism {
            SaslMechanism::Plain => {
                if matches!(self.state, State::Initial) {
                    self.state = State::PlainSent;
                }
                let mut out = Vec::with_capacity(2 + self.username.len() + self.password.len());
                // Empty authorization identity: act as the authenticated user.
                out.push(0);
                out.extend_from_slice(self.username.as_bytes());
                out.push(0);
                out.extend_from_slice(self.password.as_bytes());
                out
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let bare = format!("n={},r={}", escape_username(&self.username), self.nonce);
                // "n,,": no channel binding, no authorization identity.
                let message = format!("n,,{bare}").into_bytes();
                if matches!(self.state, State::Initial) {
                    self.state = State::ClientFirstSent {
                        client_first_bare: bare,
                    };
                }
                message
            }
        }
    }

    /// Feeds the `auth_bytes` of a successful `SaslAuthenticate` response. After an error the
    /// session is failed and every further call returns [`SaslError::UnexpectedStep`].
    pub fn step(&mut self, server_message: &[u8]) -> Result<SaslStep, SaslError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let (next, result) = match state {
            // PLAIN brokers answer with empty bytes; success is the error code the connection
            // already checked.
            State::PlainSent => (State::Done, Ok(SaslStep::Done)),
            State::ClientFirstSent { client_first_bare } => {
                match self.client_final(&client_first_bare, server_message) {
                    Ok((message, server_signature)) => (
                        State::ClientFinalSent { server_signature },
                        Ok(SaslStep::Respond(message)),
                    ),
                    Err(e) => (State::Failed, Err(e)),
                }
            }
            State::ClientFinalSent { server_signature } => {
                match self.verify_server_final(&server_signature, server_message) {
                    Ok(()) => (State::Done, Ok(SaslStep::Done)),
                    Err(e) => (State::Failed, Err(e)),
                }
            }
            State::Initial | State::Done | State::Failed => {
                (State::Failed, Err(SaslError::UnexpectedStep))
            }
        };
        self.state = next;
        result
    }

    /// True once the exchange succeeded (for SCRAM: the server signature was verified).
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// server-first → client-final, returning the message and the server signature to expect.
    fn client_final(
        &self,
        client_first_bare: &str,
        server_message: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), SaslError> {
        let server_first = std::str::from_utf8(server_message)
            .map_err(|_| SaslError::Malformed("server-first-message is not UTF-8"))?;
        let first = parse_server_first(server_first)?;
        if !first.nonce.starts_with(&self.nonce) {
            return Err(SaslError::NonceMismatch);
        }
        if !(MIN_SCRAM_ITERATIONS..=MAX_SCRAM_ITERATIONS).contains(&first.iterations) {
            return Err(SaslError::IterationCount(first.iterations));
        }

        let hash = ScramHash::from(self.mechanism);
        // "biws" is base64("n,,"): the GS2 header repeated to bind it into the proof.
        let client_final_without_proof = format!("c=biws,r={}", first.nonce);
        let auth_message =
            format!("{client_first_bare},{server_first},{client_final_without_proof}");

        let salted = hash.salted_password(self.password.as_bytes(), &first.salt, first.iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        let stored_key = hash.digest(&client_key);
        let client_signature = hash.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hash.hmac(&salted, b"Server Key");
        let server_signature = hash.hmac(&server_key, auth_message.as_bytes());

        let message = format!("{client_final_without_proof},p={}", BASE64.encode(proof));
        Ok((message.into_bytes(), server_signature))
    }

    fn verify_server_final(&self, expected: &[u8], server_message: &[u8]) -> Result<(), SaslError> {
        let server_final = std::str::from_utf8(server_message)
            .map_err(|_| SaslError::Malformed("server-final-message is not UTF-8"))?;
        let first = server_final.split(',').next().unwrap_or_default();
        if let Some(error) = first.strip_prefix("e=") {
            return Err(SaslError::ServerError(error.to_owned()));
        }
        let verifier = first
            .strip_prefix("v=")
            .ok_or(SaslError::Malformed("server-final-message has no verifier"))?;
        let received = BASE64
            .decode(verifier)
            .map_err(|_| SaslError::Malformed("the server signature is not valid base64"))?;
        if constant_time_eq(expected, &received) {
            Ok(())
        } else {
            Err(SaslError::BadServerSignature)
        }
    }
}

/// RFC 5802 `saslname`: ',' and '=' would otherwise be read as attribute syntax.
fn escape_username(username: &str) -> String {
    username.replace('=', "=3D").replace(',', "=2C")
}

struct ServerFirst {
    nonce: String,
    salt: Vec<u8>,
    iterations: u32,
}

fn parse_server_first(message: &str) -> Result<ServerFirst, SaslError> {
    let mut attrs = message.split(',');
    let mut next = |name: &'static str, missing: &'static str| -> Result<&str, SaslError> {
        let attr = attrs.next().ok_or(SaslError::Malformed(missing))?;
        if let Some(error) = attr.strip_prefix("e=") {
            return Err(SaslError::ServerError(error.to_owned()));
        }
        if attr.starts_with("m=") {
            return Err(SaslError::Malformed(
                "server-first-message has a mandatory extension we do not support",
            ));
        }
        attr.strip_prefix(name).ok_or(SaslError::Malformed(missing))
    };
    let nonce = next("r=", "server-first-message has no nonce")?;
    let salt = next("s=", "server-first-message has no salt")?;
    let iterations = next("i=", "server-first-message has no iteration count")?;
    // Anything after i= is an optional extension, which RFC 5802 tells clients to ignore.

    if nonce.is_empty() || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(SaslError::Malformed("the server nonce is not printable"));
    }
    let salt = BASE64
        .decode(salt)
        .map_err(|_| SaslError::Malformed("the salt is not valid base64"))?;
    if salt.is_empty() {
        return Err(SaslError::Malformed("the salt is empty"));
    }
    if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SaslError::Malformed("the iteration count is not a number"));
    }
    // All digits, so the only parse failure is overflow: report it as out of range.
    let iterations = iterations.parse().unwrap_or(u32::MAX);
    Ok(ServerFirst {
        nonce: nonce.to_owned(),
        salt,
        iterations,
    })
}

#[derive(Clone, Copy)]
enum ScramHash {
    Sha256,
    Sha512,
}

impl From<SaslMechanism> for ScramHash {
    fn from(mechanism: SaslMechanism) -> Self {
        match mechanism {
            SaslMechanism::ScramSha512 => ScramHash::Sha512,
            // PLAIN never gets here; SHA-256 is as good an answer as any.
            SaslMechanism::ScramSha256 | SaslMechanism::Plain => ScramHash::Sha256,
        }
    }
}

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so new_from_slice cannot fail.
        match self {
            ScramHash::Sha256 => {
                let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes any key");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha512 => {
                let mut mac = <Hmac<Sha512>>::new_from_slice(key).expect("HMAC takes any key");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec()
            }
            ScramHash::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec()
            }
        }
    }
}

/// Compares without an early exit so response timing does not reveal how many leading bytes of
/// a forged signature were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold back into an early-exit compare.
    std::hint::black_box(diff) == 0
}
