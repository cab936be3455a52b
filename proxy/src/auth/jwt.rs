//! JSON Web Tokens carried in the MQTT password: signature (HS256, RS256 or ES256, one
//! algorithm per listener so a token cannot pick a weaker one), `exp` (required) and `nbf`
//! with a small leeway, optional `aud` and `iss`; the principal is one string claim.

use std::path::Path;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::JwtConfig;

/// Clock difference tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// Shortest HS256 secret accepted: the hash's own size.
const MIN_SECRET_BYTES: usize = 32;

/// The verification keys.
enum Keys {
    /// One key (HS256 secret or PEM public key); any `kid` is ignored.
    One(DecodingKey),
    /// A JWKS: the token's `kid` picks the key; without one, only a one-key set works.
    Set(Vec<(Option<String>, DecodingKey)>),
}

/// Why a token was refused (for the log; the client gets "bad user name or password").
pub type Refusal = String;

/// A listener's token verifier, built once from the config.
pub struct JwtVerifier {
    keys: Keys,
    validation: Validation,
    claim: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            Keys::One(_) => 1,
            Keys::Set(k) => k.len(),
        };
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .field("keys", &keys)
            .field("claim", &self.claim)
            .finish()
    }
}

/// A problem with `jwt`: the sub-key at fault and what is wrong.
pub type KeyError = (&'static str, String);

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

impl JwtVerifier {
    /// Checks the settings and loads the key files.
    pub fn load(c: &JwtConfig) -> Result<JwtVerifier, KeyError> {
        let algorithm = match c.algorithm.as_str() {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => {
                return Err((
                    "algorithm",
                    format!("must be HS256, RS256 or ES256, not {other:?}"),
                ))
            }
        };
        let keys = match (
            algorithm,
            &c.secret_file,
            &c.public_key_file,
            &c.jwks_file,
        ) {
            (Algorithm::HS256, Some(path), None, None) => {
                let mut secret = read(path).map_err(|e| ("secret_file", e))?;
                while secret.last().is_some_and(|b| b"\r\n".contains(b)) {
                    secret.pop();
                }
                if secret.len() < MIN_SECRET_BYTES {
                    return Err((
                        "secret_file",
                        format!(
                            "{} holds fewer than {MIN_SECRET_BYTES} bytes",
                            path.display()
                        ),
                    ));
                }
                Keys::One(DecodingKey::from_secret(&secret))
            }
            (Algorithm::HS256, ..) => {
                return Err((
                    "secret_file",
                    "is required with HS256 (and public_key_file, jwks_file are not used)".into(),
                ))
            }
            (_, None, Some(path), None) => {
                let pem = read(path).map_err(|e| ("public_key_file", e))?;
                let key = if algorithm == Algorithm::RS256 {
                    DecodingKey::from_rsa_pem(&pem)
                } else {
                    DecodingKey::from_ec_pem(&pem)
                };
                Keys::One(key.map_err(|e| {
                    (
                        "public_key_file",
                        format!(
                            "{} is not a {:?} public key in PEM: {e}",
                            path.display(),
                            algorithm
                        ),
                    )
                })?)
            }
            (_, None, None, Some(path)) => {
                let text = read(path).map_err(|e| ("jwks_file", e))?;
                Keys::Set(jwks(&text, algorithm).map_err(|e| {
                    ("jwks_file", format!("{}: {e}", path.display()))
                })?)
            }
            _ => {
                return Err((
                    "public_key_file",
                    "or jwks_file (exactly one) is required with RS256 and ES256, and secret_file is not used".into(),
                ))
            }
        };
        if c.principal_claim.is_empty() {
            return Err(("principal_claim", "is empty".into()));
        }
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &c.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &c.issuer {
            validation.set_issuer(&[iss]);
        }
        Ok(JwtVerifier {
            keys,
            validation,
            claim: c.principal_claim.clone(),
        })
    }

    /// Verifies `token` and returns its principal and `exp` (Unix seconds).
    pub fn verify(&self, token: &[u8]) -> Result<(String, u64), Refusal> {
        let token = std::str::from_utf8(token).map_err(|_| "the password is not UTF-8")?;
        let key = match &self.keys {
            Keys::One(key) => key,
            Keys::Set(keys) => {
                let header =
                    jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
                match (&header.kid, keys.as_slice()) {
                    (Some(kid), _) => keys
                        .iter()
                        .find(|(k, _)| k.as_deref() == Some(kid))
                        .map(|(_, key)| key)
                        .ok_or_else(|| format!("no key with kid {kid:?}"))?,
                    (None, [(_, key)]) => key,
                    (None, _) => return Err("the token names no kid".into()),
                }
            }
        };
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation)
            .map_err(|e| format!("token refused: {e}"))?;
        // Required and checked as a number by the validation.
        let exp = data
            .claims
            .get("exp")
            .and_then(Value::as_f64)
            .unwrap_or(0.0) as u64;
        match data.claims.get(&self.claim) {
            Some(Value::String(s)) if !s.is_empty() => Ok((s.clone(), exp)),
            _ => Err(format!("the token has no string claim {:?}", self.claim)),
        }
    }
}

/// The keys of a JWKS usable with `algorithm`, by `kid`.
fn jwks(text: &[u8], algorithm: Algorithm) -> Result<Vec<(Option<String>, DecodingKey)>, String> {
    let set: JwkSet =
        serde_json::from_slice(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        if jwk
            .common
            .key_algorithm
            .is_some_and(|a| a.to_string() != format!("{algorithm:?}"))
        {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let fits = matches!(
            (&jwk.algorithm, algorithm),
            (
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_),
                Algorithm::RS256
            ) | (
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_),
                Algorithm::ES256
            )
        );
        if fits {
            keys.push((jwk.common.key_id.clone(), key));
        }
    }
    if keys.is_empty() {
        return Err(format!("holds no {algorithm:?} key"));
    }
    Ok(keys)
}
