//! Who an HTTP request comes from, and whether it may touch its topic.
//!
//! The listener's authenticator ([`crate::auth`]) checks `Authorization: Basic` (a password
//! file) or `Authorization: Bearer` (a JWT); on a `client_cert` listener the TLS client
//! certificate, read once per connection, names the principal and `Authorization` is not
//! looked at. Browsers cannot set headers on a WebSocket or an
//! `EventSource`, so the GET endpoints (subscribers and the WebSocket producer) also take the
//! token as an `access_token` query parameter; the header wins when both are there. Then the
//! listener's topic ACL says whether the principal may write or read the topic.
//!
//! Missing or refused credentials get `401` with a `WWW-Authenticate` challenge, a topic
//! the ACL forbids `403`, as does a certificate that names no principal (there is no HTTP
//! challenge for TLS client certificates); each is counted as an `auth` error. Why credentials were refused
//! goes to the log only.

use base64::engine::general_purpose::STANDARD;
use std::time::Instant;

use base64::Engine as _;
use codecs::http::{Request, Response};
use tracing::debug;

use super::subscribe::percent_decode;
use super::HttpListener;
use crate::auth::{AuthMethod, Credentials, Denied};
use crate::driver;
use crate::metrics::ErrorKind;
use crate::shard::Shard;

/// The record header that carries the principal, as on MQTT routes with `principal`.
pub(super) const PRINCIPAL_HEADER: &str = "sluice.principal";

/// What a request wants to do with its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Produce to it.
    Write,
    /// Subscribe to it.
    Read,
}

/// Credentials as the request carried them.
enum Presented {
    None,
    Basic(String, Vec<u8>),
    Bearer(Vec<u8>),
    Malformed(&'static str),
}

impl Presented {
    fn of(req: &Request, query: bool) -> Presented {
        if let Some(value) = req.header("authorization") {
            return Presented::header(value);
        }
        if !query {
            return Presented::None;
        }
        let query = req.target().split_once('?').map_or("", |(_, q)| q);
        let token = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("access_token="));
        match token.map(percent_decode) {
            None => Presented::None,
            Some(Some(token)) => Presented::Bearer(token),
            Some(None) => Presented::Malformed("access_token is not URL-encoded"),
        }
    }

    fn header(value: &[u8]) -> Presented {
        let Ok(value) = std::str::from_utf8(value) else {
            return Presented::Malformed("Authorization is not UTF-8");
        };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return Presented::Bearer(rest.as_bytes().to_vec());
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Presented::Malformed("Authorization is neither Basic nor Bearer");
        }
        let decoded = STANDARD.decode(rest).ok().and_then(|d| {
            let colon = d.iter().position(|&b| b == b':')?;
            let user = std::str::from_utf8(&d[..colon]).ok()?.to_owned();
            Some((user, d[colon + 1..].to_vec()))
        });
        match decoded {
            Some((user, password)) => Presented::Basic(user, password),
            None => Presented::Malformed("Basic credentials are not base64 of user:password"),
        }
    }
}

impl HttpListener {
    /// The principal of `req` (`None` on a listener that does not authenticate) and when
    /// its token expires ([`crate::auth::ShardAuth::verify_until`]), or the 401 (403) to
    /// answer. `query`: the request may carry its token as `access_token`. `certificate`:
    /// the connection's client certificate principal, if any.
    pub(super) fn authenticate(
        &self,
        shard: &Shard,
        req: &Request,
        query: bool,
        keep_alive: bool,
        certificate: Option<&str>,
    ) -> Result<(Option<String>, Option<Instant>), Response> {
        let Some(auth) = &self.auth else {
            return Ok((None, None));
        };
        if auth.method() == AuthMethod::ClientCert {
            if let Some(principal) = certificate {
                return Ok((Some(principal.to_owned()), None));
            }
            shard.metrics.error(ErrorKind::Auth);
            debug!("request refused: no client certificate with a usable common name");
            let message = "The client certificate names no principal (a subject common name).";
            return Err(Response::error(403, message, keep_alive));
        }
        let presented = Presented::of(req, query);
        let credentials = match &presented {
            Presented::None => Credentials::None,
            Presented::Basic(user, password) => Credentials::Password(user, password),
            Presented::Bearer(token) => Credentials::Token(token),
            Presented::Malformed(_) => Credentials::None,
        };
        let denied = match (&presented, auth.verify_until(credentials)) {
            (Presented::Malformed(why), _) => Denied::Invalid((*why).into()),
            (_, Ok((principal, until))) => return Ok((principal, until.map(driver::instant_of))),
            (_, Err(denied)) => denied,
        };
        shard.metrics.error(ErrorKind::Auth);
        debug!(reason = %denied, "request refused: authentication");
        let bearer = auth.method() == AuthMethod::Jwt;
        let (message, challenge) = match (&denied, bearer) {
            (Denied::Missing, false) => (
                "This listener requires authentication: Authorization: Basic with a user name and password.",
                "Basic realm=\"sluice\", charset=\"UTF-8\"",
            ),
            (Denied::Missing, true) => (
                "This listener requires authentication: Authorization: Bearer with a token (or access_token= on subscriber and WebSocket URLs).",
                "Bearer realm=\"sluice\"",
            ),
            (_, false) => (
                "The credentials were refused.",
                "Basic realm=\"sluice\", charset=\"UTF-8\"",
            ),
            (_, true) => (
                "The credentials were refused.",
                "Bearer realm=\"sluice\", error=\"invalid_token\"",
            ),
        };
        let mut response = Response::error(401, message, keep_alive);
        response.www_authenticate = Some(challenge);
        Err(response)
    }

    /// Whether `principal` may write or read `topic` under the listener's ACL, else the
    /// 403 to answer.
    pub(super) fn authorize(
        &self,
        shard: &Shard,
        principal: Option<&str>,
        topic: &str,
        access: Access,
        keep_alive: bool,
    ) -> Result<(), Response> {
        let Some(auth) = &self.auth else {
            return Ok(());
        };
        let acl = auth.topic_acl(principal);
        let (allowed, verb) = match access {
            Access::Write => (acl.may_write(topic), "write"),
            Access::Read => (acl.may_read(topic), "read"),
        };
        if allowed {
            return Ok(());
        }
        shard.metrics.error(ErrorKind::Auth);
        debug!(
            topic,
            principal, "request refused: the ACL does not allow {verb}"
        );
        let who = principal.map_or("Anonymous clients".to_owned(), |p| format!("{p:?}"));
        let message = format!("{who} may not {verb} topic {topic} on this listener.");
        Err(Response::error(403, &message, keep_alive))
    }
}
