//! Password files in mosquitto's format, so operators make them with `mosquitto_passwd`:
//! one `user:hash` per line, the hash being `$7$<iterations>$<salt>$<hash>` (PBKDF2-HMAC-
//! SHA512, mosquitto 2's default) or `$6$<salt>$<hash>` (SHA-512 of password then salt,
//! mosquitto 1.6's), salt and hash in standard base64.

use std::collections::HashMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::Hmac;
use sha2::{Digest, Sha512};

/// One user's stored hash.
#[derive(Clone)]
enum Hash {
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Sha512 {
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

impl Hash {
    fn parse(text: &str) -> Result<Hash, String> {
        let b64 = |s: &str, what: &str| {
            STANDARD
                .decode(s)
                .map_err(|e| format!("its {what} is not base64 ({e})"))
        };
        let parts: Vec<&str> = text.split('$').collect();
        match parts.as_slice() {
            ["", "7", iterations, salt, hash] => {
                let iterations: u32 = iterations
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("its iteration count is not a positive number")?;
                let hash = b64(hash, "hash")?;
                if hash.len() != 64 {
                    return Err("its hash is not 64 bytes".into());
                }
                Ok(Hash::Pbkdf2 {
                    iterations,
                    salt: b64(salt, "salt")?,
                    hash,
                })
            }
            ["", "6", salt, hash] => {
                let hash = b64(hash, "hash")?;
                if hash.len() != 64 {
                    return Err("its hash is not 64 bytes".into());
                }
                Ok(Hash::Sha512 {
                    salt: b64(salt, "salt")?,
                    hash,
                })
            }
            _ => Err("is not a mosquitto_passwd hash ($7$ or $6$)".into()),
        }
    }

    fn verify(&self, password: &[u8]) -> bool {
        let mut out = [0u8; 64];
        let expected = match self {
            Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => {
                pbkdf2::pbkdf2::<Hmac<Sha512>>(password, salt, *iterations, &mut out)
                    .expect("HMAC takes keys of any length");
                hash
            }
            Hash::Sha512 { salt, hash } => {
                let mut h = Sha512::new();
                h.update(password);
                h.update(salt);
                out.copy_from_slice(&h.finalize());
                hash
            }
        };
        constant_time_eq(&out, expected)
    }
}

/// Compares without an early exit, so timing does not tell how much of a hash matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The users of a password file and their hashes.
pub struct PasswordFile {
    users: HashMap<String, Hash>,
    /// Checked for unknown users, so they take as long as known ones.
    decoy: Hash,
}

impl std::fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordFile({} users)", self.users.len())
    }
}

impl PasswordFile {
    /// Reads a file; the error names the line at fault.
    pub fn load(path: &Path) -> Result<PasswordFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
        PasswordFile::parse(&text)
    }

    /// Parses the file's text. Blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<PasswordFile, String> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("line {} has no ':'", n + 1))?;
            let hash = Hash::parse(hash)
                .map_err(|e| format!("line {} (user {user:?}): the hash {e}", n + 1))?;
            if users.insert(user.to_owned(), hash).is_some() {
                return Err(format!("line {}: user {user:?} appears twice", n + 1));
            }
        }
        let iterations = users
            .values()
            .filter_map(|h| match h {
                Hash::Pbkdf2 { iterations, .. } => Some(*iterations),
                Hash::Sha512 { .. } => None,
            })
            .max()
            .unwrap_or(101);
        let decoy = Hash::Pbkdf2 {
            iterations,
            salt: vec![0; 12],
            hash: vec![0; 64],
        };
        Ok(PasswordFile { users, decoy })
    }

    /// Whether `password` is `user`'s. Costs one hash computation (PBKDF2: many).
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(hash) => hash.verify(password),
            None => {
                let _ = self.decoy.verify(password);
                false
            }
        }
    }
}
