//! Topic ACLs of HTTP and stream listeners: `publish` (write) and `subscribe` (read) rules
//! in the listener's own topic language, Kafka topic patterns (`orders`, `events.*`; see
//! [`crate::http::TopicPatterns`]), with `{username}` standing for the principal.
//!
//! Once a listener has an `acl`, a client may write only what a `publish` rule allows and
//! read only what a `subscribe` rule allows; the listener's `topics` still applies on top.
//! A rule whose `{username}` cannot be filled (no principal, or one that is not made of
//! topic-name characters) allows nothing, so a principal cannot widen its own rule.

use super::{split_rules, AclRule, RuleError};
use crate::http::TopicPatterns;

/// A listener's rules, checked, with their placeholders still in.
#[derive(Debug)]
pub(super) struct Rules {
    publish: Vec<String>,
    subscribe: Vec<String>,
}

impl Rules {
    /// Checks the rules; `subscribe` ones only where subscribers exist (`reads`).
    pub(super) fn load(rules: &[AclRule], reads: bool) -> Result<Rules, RuleError> {
        let (publish, subscribe) = split_rules(rules, reads, check)?;
        Ok(Rules { publish, subscribe })
    }

    /// The rules of one principal.
    pub(super) fn fill(&self, principal: Option<&str>) -> TopicAcl {
        let fill = |rules: &[String]| -> Option<TopicPatterns> {
            let filled: Vec<String> = rules.iter().filter_map(|r| fill(r, principal)).collect();
            TopicPatterns::parse(&filled).ok()
        };
        TopicAcl {
            publish: Some(fill(&self.publish)),
            subscribe: Some(fill(&self.subscribe)),
        }
    }
}

/// Checks a rule: only `{username}`, and a valid pattern once filled in.
fn check(rule: &str) -> Result<(), String> {
    let filled = rule.replace("{username}", "x");
    if filled.contains(['{', '}']) {
        return Err(format!(
            "{rule:?} uses an unknown placeholder; the only one here is {{username}}"
        ));
    }
    TopicPatterns::parse(&[filled]).map(drop)
}

/// Fills `{username}`, or `None` when it cannot be: no principal, or one with characters
/// a topic name cannot have (which could change the pattern's meaning, like `*`).
fn fill(rule: &str, principal: Option<&str>) -> Option<String> {
    if !rule.contains("{username}") {
        return Some(rule.to_owned());
    }
    let p = principal.filter(|p| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    })?;
    Some(rule.replace("{username}", p))
}

/// What one client may write and read: `None` is every topic, `Some(None)` none.
#[derive(Debug, Clone)]
pub struct TopicAcl {
    publish: Option<Option<TopicPatterns>>,
    subscribe: Option<Option<TopicPatterns>>,
}

impl TopicAcl {
    /// No restriction (a listener without `acl`).
    pub fn everything() -> TopicAcl {
        TopicAcl {
            publish: None,
            subscribe: None,
        }
    }

    /// Whether `topic` may be written.
    pub fn may_write(&self, topic: &str) -> bool {
        allows(&self.publish, topic)
    }

    /// Whether `topic` may be read.
    pub fn may_read(&self, topic: &str) -> bool {
        allows(&self.subscribe, topic)
    }
}

fn allows(rules: &Option<Option<TopicPatterns>>, topic: &str) -> bool {
    match rules {
        None => true,
        Some(None) => false,
        Some(Some(p)) => p.allows(topic),
    }
}
