//! A codec's settings: the string map under the listener's codec in the config file.

use std::collections::BTreeMap;

/// Why a setting was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingError {
    /// A key the codec does not know, usually a typo.
    #[error("\"{key}\" is not a setting of this codec (known: {known}).")]
    Unknown {
        /// The unknown key.
        key: String,
        /// The keys the codec accepts, comma-separated.
        known: String,
    },
    /// A value that does not parse.
    #[error("\"{key}\" = \"{value}\" is invalid, expected {expected}.")]
    Invalid {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
}

/// Codec settings: string keys to string values, read by the codec with typed getters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    values: BTreeMap<String, String>,
}

impl Settings {
    /// No settings: every codec must work with its defaults.
    pub fn new() -> Settings {
        Settings::default()
    }

    /// Sets `key` to `value`, builder style.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Settings {
        self.values.insert(key.into(), value.into());
        self
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Refuses keys outside `known`, like serde's `deny_unknown_fields`.
    pub fn allow_only(&self, known: &[&str]) -> Result<(), SettingError> {
        match self.values.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(key) => Err(SettingError::Unknown {
                key: key.clone(),
                known: known.join(", "),
            }),
        }
    }

    /// A non-negative integer, or `default` when absent.
    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize, SettingError> {
        self.parse_or(key, default, "a non-negative integer", |v| v.parse().ok())
    }

    /// `true` or `false`, or `default` when absent.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, SettingError> {
        self.parse_or(key, default, "true or false", |v| v.parse().ok())
    }

    /// One of `choices`, or `default` when absent.
    pub fn choice_or<'a>(
        &self,
        key: &str,
        default: &'a str,
        choices: &[&'a str],
        expected: &'static str,
    ) -> Result<&'a str, SettingError> {
        self.parse_or(key, default, expected, |v| {
            choices.iter().copied().find(|c| *c == v)
        })
    }

    fn parse_or<T>(
        &self,
        key: &str,
        default: T,
        expected: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, SettingError> {
        let Some(value) = self.get(key) else {
            return Ok(default);
        };
        parse(value.trim()).ok_or_else(|| SettingError::Invalid {
            key: key.to_owned(),
            value: value.to_owned(),
            expected,
        })
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Settings {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Settings {
        Settings {
            values: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}
