//! Client authentication and authorization, for every kind of listener.
//!
//! An [`Authenticator`] is built once per listener when the config is loaded (files read
//! and parsed then, so a bad file fails `--check` and startup) and shared read-only by
//! every shard. Each shard wraps it in a [`ShardAuth`] holding that shard's cache of
//! password verifications, so nothing is locked or shared mutably.
//!
//! - `auth = "password_file"`: a user name and password (MQTT CONNECT, HTTP `Basic`) are
//!   checked against a mosquitto_passwd file; the principal is the user name.
//! - `auth = "jwt"`: a JWT (the MQTT password, HTTP `Bearer` or `access_token`); the
//!   principal is a claim of it.
//! - `auth = "client_cert"`: the verified TLS client certificate; the principal is its
//!   subject's common name, read once per connection after the handshake
//!   ([`ShardAuth::certificate`]). On MQTT listeners it replaces the CONNECT's user name
//!   and password, which are not checked; on HTTP listeners, `Authorization`.
//! - `acl`: `publish` (write) and `subscribe` (read) rules. On MQTT listeners they are
//!   topic filters with `{client_id}` / `{username}` filled in per connection
//!   (`{username}` is the principal when the listener authenticates); a SUBSCRIBE filter
//!   is allowed when one `subscribe` rule covers it ([`TopicFilter::covers`]). On HTTP and
//!   stream listeners they are Kafka topic patterns ([`topics`]). Once a listener has an
//!   `acl`, what no rule allows is refused, in both directions.

mod cert;
mod jwt;
mod password;
#[cfg(test)]
mod tests;
mod topics;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use codecs::mqtt::{check_topic_filter, Connect, TopicFilter};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{topic_filter, ConfigError, ListenerConfig, Protocol};

pub use jwt::JwtVerifier;
pub use password::PasswordFile;
pub use topics::TopicAcl;

/// MQTT 5 CONNACK reason codes of a refusal (the session maps them to 3.1.1's 4 and 5).
pub mod reason {
    /// Bad user name or password.
    pub const BAD_CREDENTIALS: u8 = 0x86;
    /// Not authorized.
    pub const NOT_AUTHORIZED: u8 = 0x87;
}

/// Verified passwords a shard remembers per listener (about 100 bytes each).
const CACHE_ENTRIES: usize = 4096;

/// `auth`: how a listener's clients prove who they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// Everyone is let in.
    #[default]
    None,
    /// User name and password from `password_file`.
    PasswordFile,
    /// A JWT (in the MQTT password, or an HTTP bearer token), checked as `jwt` says.
    Jwt,
    /// The TLS client certificate's subject common name.
    ClientCert,
}

/// `jwt = { ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// `HS256`, `RS256` or `ES256`.
    pub algorithm: String,
    /// HS256: the shared secret (the file's bytes, without a trailing newline).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// RS256/ES256: the public key, PEM.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// RS256/ES256: a JWKS document; the token's `kid` picks the key.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The claim that names the principal.
    #[serde(default = "default_claim")]
    pub principal_claim: String,
    /// Required `aud`, if set.
    #[serde(default)]
    pub audience: Option<String>,
    /// Required `iss`, if set.
    #[serde(default)]
    pub issuer: Option<String>,
}

fn default_claim() -> String {
    "sub".into()
}

/// One `acl` entry: a topic a client may write (`publish`), read (`subscribe`), or both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    /// MQTT: a topic filter with `{client_id}` and `{username}`. HTTP and stream: a Kafka
    /// topic pattern (a name, or a prefix ending in `*`) with `{username}`.
    #[serde(default)]
    pub publish: Option<String>,
    /// MQTT: a topic filter with `{client_id}` and `{username}` that SUBSCRIBE filters must
    /// fall within. HTTP: a Kafka topic pattern with `{username}` that subscribers may read.
    #[serde(default)]
    pub subscribe: Option<String>,
}

#[derive(Debug)]
enum Method {
    None,
    Password(PasswordFile),
    Jwt(JwtVerifier),
    ClientCert,
}

/// A listener's authentication and ACL, read-only, shared by the shards.
#[derive(Debug)]
pub struct Authenticator {
    method: Method,
    /// MQTT listeners: their ACL's filters (`None`: no ACL, every topic is allowed).
    acl: Option<MqttRules>,
    /// HTTP and stream listeners: their topic ACL (`acl` in topic patterns).
    topic_acl: Option<topics::Rules>,
}

impl Authenticator {
    /// Checks a listener's auth keys and loads the files they name; `None` when the listener
    /// neither authenticates nor restricts. `key` makes the dotted name of a key.
    pub fn load(
        l: &ListenerConfig,
        key: &dyn Fn(&str) -> String,
    ) -> Result<Option<Arc<Authenticator>>, ConfigError> {
        let invalid = |k: &str, problem: String| ConfigError::Invalid {
            key: key(k),
            problem,
        };
        let method = match (l.auth, &l.password_file, &l.jwt) {
            (AuthMethod::None, None, None) => Method::None,
            (AuthMethod::PasswordFile, Some(path), None) => Method::Password(
                PasswordFile::load(path)
                    .map_err(|e| invalid("password_file", format!("{}: {e}", path.display())))?,
            ),
            (AuthMethod::Jwt, None, Some(c)) => {
                Method::Jwt(JwtVerifier::load(c).map_err(|(k, e)| invalid(&format!("jwt.{k}"), e))?)
            }
            (AuthMethod::ClientCert, None, None) => Method::ClientCert,
            (AuthMethod::PasswordFile, None, _) => {
                return Err(invalid(
                    "password_file",
                    "is required with auth = \"password_file\"".into(),
                ))
            }
            (AuthMethod::Jwt, _, None) => {
                return Err(invalid("jwt", "is required with auth = \"jwt\"".into()))
            }
            (_, Some(_), _) => {
                return Err(invalid(
                    "password_file",
                    "is used only with auth = \"password_file\"".into(),
                ))
            }
            (_, _, Some(_)) => {
                return Err(invalid("jwt", "is used only with auth = \"jwt\"".into()))
            }
        };
        match (l.protocol, &method) {
            (Protocol::Stream, Method::Password(_) | Method::Jwt(_)) => {
                return Err(invalid(
                    "auth",
                    "of a stream listener is none or client_cert: its codecs carry no credentials"
                        .into(),
                ))
            }
            (_, Method::ClientCert) => {
                let verified = l
                    .tls
                    .as_ref()
                    .is_some_and(|t| t.client_ca_file.is_some() && t.require_client_cert);
                if !verified {
                    return Err(invalid(
                        "auth",
                        "client_cert needs tls.client_ca_file with require_client_cert = true"
                            .into(),
                    ));
                }
            }
            _ => {}
        }
        if l.protocol != Protocol::Mqtt {
            let topic_acl = match &l.acl {
                None => None,
                Some(rules) => Some(
                    topics::Rules::load(rules, l.protocol == Protocol::Http)
                        .map_err(|(i, k, e)| invalid(&format!("acl[{i}].{k}"), e))?,
                ),
            };
            if matches!(method, Method::None) && topic_acl.is_none() {
                return Ok(None);
            }
            return Ok(Some(Arc::new(Authenticator {
                method,
                acl: None,
                topic_acl,
            })));
        }
        let acl = match &l.acl {
            None => None,
            Some(rules) => Some(
                MqttRules::load(rules).map_err(|(i, k, e)| invalid(&format!("acl[{i}].{k}"), e))?,
            ),
        };
        if matches!(method, Method::None) && acl.is_none() {
            return Ok(None);
        }
        Ok(Some(Arc::new(Authenticator {
            method,
            acl,
            topic_acl: None,
        })))
    }
}

/// An MQTT listener's ACL: topic filters with their placeholders still in.
#[derive(Debug)]
struct MqttRules {
    publish: Vec<String>,
    subscribe: Vec<String>,
}

/// A rule that is wrong: its index, `publish` or `subscribe`, and what is wrong.
type RuleError = (usize, &'static str, String);

/// An `acl`'s `publish` and `subscribe` rules, each checked by `check`; `subscribe` ones
/// only where the listener has subscribers (`reads`).
fn split_rules(
    rules: &[AclRule],
    reads: bool,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<(Vec<String>, Vec<String>), RuleError> {
    let (mut publish, mut subscribe) = (Vec::new(), Vec::new());
    for (i, r) in rules.iter().enumerate() {
        if r.publish.is_none() && r.subscribe.is_none() {
            return Err((i, "publish", "or subscribe is required in each rule".into()));
        }
        if let Some(p) = &r.publish {
            check(p).map_err(|e| (i, "publish", e))?;
            publish.push(p.clone());
        }
        if let Some(p) = &r.subscribe {
            if !reads {
                return Err((
                    i,
                    "subscribe",
                    "applies to mqtt and http listeners only".into(),
                ));
            }
            check(p).map_err(|e| (i, "subscribe", e))?;
            subscribe.push(p.clone());
        }
    }
    Ok((publish, subscribe))
}

impl MqttRules {
    fn load(rules: &[AclRule]) -> Result<MqttRules, RuleError> {
        let (publish, subscribe) = split_rules(rules, true, check_rule)?;
        Ok(MqttRules { publish, subscribe })
    }

    /// The filters of one connection.
    fn fill(&self, client_id: &str, username: Option<&str>) -> Acl {
        let fill = |rules: &[String]| {
            rules
                .iter()
                .filter_map(|r| fill(r, client_id, username))
                .collect()
        };
        Acl {
            publish: fill(&self.publish),
            subscribe: fill(&self.subscribe),
        }
    }
}

/// Checks an ACL filter: known placeholders, and a valid MQTT filter once filled in. A
/// shared subscription is refused: SUBSCRIBE checks a share's inner filter, so the rule
/// names that.
fn check_rule(filter: &str) -> Result<(), String> {
    if filter.starts_with("$share/") {
        return Err(format!(
            "{filter:?} is a shared subscription; a rule names the filter inside it (shares are checked on their inner filter)"
        ));
    }
    let filled = filter
        .replace("{client_id}", "x")
        .replace("{username}", "x");
    if filled.contains('{') || filled.contains('}') {
        return Err(format!(
            "{filter:?} uses an unknown placeholder; known are {{client_id}} and {{username}}"
        ));
    }
    check_topic_filter(&filled)
        .map_err(|e| format!("{filter:?} is not a valid MQTT topic filter: {e}"))
}

/// Fills a rule's placeholders, or `None` when a value is empty or would change the
/// filter's shape (`/`, `+`, `#`): a client id of `+` must not widen its own rule.
fn fill(rule: &str, client_id: &str, username: Option<&str>) -> Option<TopicFilter> {
    let safe = |v: &str| !v.is_empty() && !v.contains(['/', '+', '#', '\0']);
    let mut filled = rule.to_owned();
    if rule.contains("{client_id}") {
        if !safe(client_id) {
            return None;
        }
        filled = filled.replace("{client_id}", client_id);
    }
    if rule.contains("{username}") {
        let username = username.filter(|u| safe(u))?;
        filled = filled.replace("{username}", username);
    }
    check_topic_filter(&filled).ok()?;
    Some(topic_filter(&filled))
}

/// The topics one connection may publish to and subscribe to.
#[derive(Debug)]
pub struct Acl {
    publish: Vec<TopicFilter>,
    subscribe: Vec<TopicFilter>,
}

impl Acl {
    /// Whether a PUBLISH to `topic` is allowed.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|f| f.matches(topic))
    }

    /// Whether a SUBSCRIBE to `filter` is allowed: one rule must cover it, that is match
    /// every topic it can match (a shared subscription is checked on its inner filter).
    pub fn may_subscribe(&self, filter: &TopicFilter) -> bool {
        self.subscribe.iter().any(|rule| rule.covers(filter))
    }
}

/// What an accepted CONNECT is allowed.
#[derive(Debug)]
pub struct Authorized {
    /// Who the client proved to be (`None` without authentication).
    pub principal: Option<String>,
    /// Its ACL (`None`: everything).
    pub acl: Option<Acl>,
    /// When its credentials expire ([`ShardAuth::verify_until`]).
    pub until: Option<u64>,
}

/// Why a CONNECT was refused: the reason code and, for the log, what happened.
pub type Refused = (u8, String);

/// One shard's view of a listener's [`Authenticator`], with its own verification cache.
#[derive(Debug)]
pub struct ShardAuth {
    shared: Arc<Authenticator>,
    cache: RefCell<VerifyCache>,
}

impl ShardAuth {
    /// Wraps the shared authenticator for one shard.
    pub fn new(shared: Arc<Authenticator>) -> ShardAuth {
        ShardAuth {
            shared,
            cache: RefCell::new(VerifyCache::default()),
        }
    }

    /// Authenticates a CONNECT (whose client id is `client_id`, maybe assigned by sluice)
    /// and works out its ACL; a will to a topic it may not publish to is refused too.
    /// `certificate`: the connection's [`ShardAuth::certificate`] principal, which is the
    /// principal on a `client_cert` listener (the CONNECT's credentials are not checked).
    pub fn connect(
        &self,
        connect: &Connect,
        client_id: &str,
        certificate: Option<&str>,
    ) -> Result<Authorized, Refused> {
        let username = connect.username.as_ref().map(|u| u.as_str());
        let password = connect.password.as_deref();
        let credentials = match (&self.shared.method, username, password) {
            (Method::Jwt(_), _, Some(token)) => Credentials::Token(token),
            (Method::Password(_), Some(user), Some(password)) => {
                Credentials::Password(user, password)
            }
            _ => Credentials::None,
        };
        let (principal, until) = match (&self.shared.method, certificate) {
            (Method::ClientCert, Some(cn)) => (Some(cn.to_owned()), None),
            (Method::ClientCert, None) => {
                return Err((
                    reason::NOT_AUTHORIZED,
                    "no client certificate with a usable common name".into(),
                ))
            }
            _ => self
                .verify_until(credentials)
                .map_err(|e| (reason::BAD_CREDENTIALS, e.to_string()))?,
        };
        let acl = (self.shared.acl.as_ref())
            .map(|rules| rules.fill(client_id, principal.as_deref().or(username)));
        if let (Some(acl), Some(will)) = (&acl, &connect.will) {
            if !acl.may_publish(will.topic.as_str()) {
                return Err((
                    reason::NOT_AUTHORIZED,
                    format!("the will's topic {:?} is not allowed", will.topic.as_str()),
                ));
            }
        }
        Ok(Authorized {
            principal,
            acl,
            until,
        })
    }
}

/// What a client presented to prove who it is.
#[derive(Debug, Clone, Copy)]
pub enum Credentials<'a> {
    /// Nothing.
    None,
    /// A user name and password (MQTT CONNECT, HTTP `Basic`).
    Password(&'a str, &'a [u8]),
    /// A token (the MQTT password on a JWT listener, HTTP `Bearer`, `access_token`).
    Token(&'a [u8]),
    /// The verified TLS client certificate, DER.
    Certificate(&'a [u8]),
}

/// Why credentials were not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// The listener authenticates and the client presented nothing it takes.
    #[error("no credentials")]
    Missing,
    /// The credentials were checked and refused (the reason is for the log only).
    #[error("{0}")]
    Invalid(String),
}

impl ShardAuth {
    /// How the listener authenticates.
    pub fn method(&self) -> AuthMethod {
        match self.shared.method {
            Method::None => AuthMethod::None,
            Method::Password(_) => AuthMethod::PasswordFile,
            Method::Jwt(_) => AuthMethod::Jwt,
            Method::ClientCert => AuthMethod::ClientCert,
        }
    }

    /// Checks credentials; the principal, or `None` on a listener that does not
    /// authenticate (which takes anyone, whatever they present).
    pub fn verify(&self, credentials: Credentials<'_>) -> Result<Option<String>, Denied> {
        self.verify_until(credentials)
            .map(|(principal, _)| principal)
    }

    /// [`ShardAuth::verify`], and until when the credentials hold: for a JWT, its `exp`
    /// plus the leeway it was checked with (Unix seconds), after which a connection that
    /// presented it is ended; `None` for credentials that do not expire.
    pub fn verify_until(
        &self,
        credentials: Credentials<'_>,
    ) -> Result<(Option<String>, Option<u64>), Denied> {
        let mut until = None;
        let principal = match (&self.shared.method, credentials) {
            (Method::None, _) => return Ok((None, None)),
            (Method::Password(file), Credentials::Password(user, password)) => {
                if !self.cache.borrow_mut().verify(file, user, password) {
                    return Err(Denied::Invalid("wrong user name or password".into()));
                }
                user.to_owned()
            }
            (Method::Jwt(verifier), Credentials::Token(token)) => {
                let (principal, exp) = verifier.verify(token).map_err(Denied::Invalid)?;
                until = Some(exp.saturating_add(jwt::LEEWAY_SECS));
                principal
            }
            (Method::ClientCert, Credentials::Certificate(der)) => {
                cert::common_name(der).map_err(Denied::Invalid)?
            }
            (_, Credentials::None) => return Err(Denied::Missing),
            (Method::Password(_), _) => {
                return Err(Denied::Invalid(
                    "a user name and password are required".into(),
                ))
            }
            (Method::Jwt(_), _) => return Err(Denied::Invalid("a token is required".into())),
            (Method::ClientCert, _) => {
                return Err(Denied::Invalid("a client certificate is required".into()))
            }
        };
        Ok((Some(principal), until))
    }

    /// On a `client_cert` listener, the principal of the client certificate a TLS
    /// connection presented (`peer`, DER), or why there is none; `None` on other listeners.
    pub fn certificate(&self, peer: Option<&[u8]>) -> Option<Result<String, Denied>> {
        if !matches!(self.shared.method, Method::ClientCert) {
            return None;
        }
        let credentials = peer.map_or(Credentials::None, Credentials::Certificate);
        Some(
            self.verify(credentials)
                .map(|p| p.expect("client_cert names a principal")),
        )
    }

    /// The topics `principal` may write and read (HTTP and stream listeners).
    pub fn topic_acl(&self, principal: Option<&str>) -> TopicAcl {
        match &self.shared.topic_acl {
            None => TopicAcl::everything(),
            Some(rules) => rules.fill(principal),
        }
    }
}

/// Outcomes of password checks, by a digest of (user, password), least recently used
/// evicted. PBKDF2 is deliberately slow; without this a reconnect storm of thousands of
/// devices would spend seconds of CPU per shard re-deriving the same hashes. The file
/// does not change while the process runs, so an outcome stays true; failures are kept
/// too, so a client retrying a wrong password costs one derivation, not one per attempt.
#[derive(Debug, Default)]
struct VerifyCache {
    entries: HashMap<[u8; 32], (bool, u64)>,
    tick: u64,
}

impl VerifyCache {
    fn verify(&mut self, file: &PasswordFile, user: &str, password: &[u8]) -> bool {
        let mut h = Sha256::new();
        h.update((user.len() as u64).to_be_bytes());
        h.update(user.as_bytes());
        h.update(password);
        let digest: [u8; 32] = h.finalize().into();
        self.tick += 1;
        if let Some((ok, used)) = self.entries.get_mut(&digest) {
            *used = self.tick;
            return *ok;
        }
        let ok = file.verify(user, password);
        if self.entries.len() >= CACHE_ENTRIES {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
                .expect("the cache is full, so not empty");
            self.entries.remove(&oldest);
        }
        self.entries.insert(digest, (ok, self.tick));
        ok
    }
}
