//! Which Kafka topics an HTTP listener may write: its `topics` patterns.
//!
//! A pattern is a topic name (`orders`) or a prefix ending in `*` (`events.*`, or `*` for
//! every topic). `*` never matches a name starting with `__` (Kafka's internal topics such
//! as `__consumer_offsets`); those must be listed by a pattern that itself starts with `__`.

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

/// The topics a listener allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPatterns {
    patterns: Vec<Pattern>,
}

impl TopicPatterns {
    /// Compiles `patterns`; the error says which one is wrong and why.
    pub fn parse(patterns: &[String]) -> Result<TopicPatterns, String> {
        if patterns.is_empty() {
            return Err("is empty; list topic patterns, or [\"*\"] for every topic".into());
        }
        let mut out = Vec::with_capacity(patterns.len());
        for p in patterns {
            let (text, prefix) = match p.strip_suffix('*') {
                Some(prefix) => (prefix, true),
                None => (p.as_str(), false),
            };
            let chars_ok = text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            let len_ok = if prefix {
                text.len() < 249
            } else {
                (1..=249).contains(&text.len()) && text != "." && text != ".."
            };
            if !chars_ok || !len_ok {
                return Err(format!(
                    "has {p:?}, which is neither a Kafka topic name (1–249 of [a-zA-Z0-9._-]) nor such a prefix followed by one '*'"
                ));
            }
            out.push(if prefix {
                Pattern::Prefix(text.to_owned())
            } else {
                Pattern::Exact(text.to_owned())
            });
        }
        Ok(TopicPatterns { patterns: out })
    }

    /// Whether `topic` may be written.
    pub fn allows(&self, topic: &str) -> bool {
        self.patterns.iter().any(|p| match p {
            Pattern::Exact(t) => t == topic,
            Pattern::Prefix(prefix) => {
                topic.starts_with(prefix.as_str())
                    && (prefix.starts_with("__") || !topic.starts_with("__"))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(p: &[&str]) -> Result<TopicPatterns, String> {
        TopicPatterns::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn names_and_prefixes_match() {
        let t = patterns(&["orders", "events.*"]).unwrap();
        assert!(t.allows("orders"));
        assert!(!t.allows("orders2"));
        assert!(t.allows("events.click"));
        assert!(t.allows("events."));
        assert!(!t.allows("events"));
        assert!(!t.allows("other"));
    }

    #[test]
    fn star_allows_all_but_internal_topics() {
        let all = patterns(&["*"]).unwrap();
        assert!(all.allows("anything-at.all_1"));
        assert!(!all.allows("__consumer_offsets"));
        assert!(!patterns(&["_*"]).unwrap().allows("__transaction_state"));
        assert!(patterns(&["__audit*"]).unwrap().allows("__audit.log"));
        assert!(patterns(&["__audit"]).unwrap().allows("__audit"));
    }

    #[test]
    fn bad_patterns_are_refused_by_name() {
        assert!(patterns(&[]).unwrap_err().contains("empty"));
        for bad in ["", "a b", "ev*nts", "**", "a/b*", ".", ".."] {
            assert!(patterns(&["ok", bad]).is_err(), "{bad:?} accepted");
        }
        assert!(patterns(&["a b"]).unwrap_err().contains("\"a b\""));
        assert!(patterns(&[&"x".repeat(250)]).is_err());
    }
}
