//! Topic names, topic filters and shared subscriptions.
//!
//! A topic name (PUBLISH, will, Response Topic) must be non-empty and contain no wildcard. A
//! topic filter (SUBSCRIBE, UNSUBSCRIBE) must be non-empty, `+` must fill a whole level and
//! `#` must be the last level. A filter that starts with `$share/` is a shared subscription
//! (`$share/{ShareName}/{filter}`) and is checked as one on every protocol version: the
//! share name is non-empty and has no `/`, `+` or `#`, and a valid filter follows it.
//! [`TopicFilter::matches`] implements the matching rules, including that filters starting
//! with a wildcard do not match topic names starting with `$`.

use std::fmt;

use super::types::{is_plain_ascii, MqttString};

const SHARE_PREFIX: &str = "$share/";

/// Checks a topic name. The error says which rule is broken.
#[inline]
pub fn check_topic_name(topic: &str) -> Result<(), &'static str> {
    if !topic.is_empty() && is_plain_ascii(topic.as_bytes(), true) {
        return Ok(());
    }
    if topic.is_empty() {
        return Err("a topic name must not be empty");
    }
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err("a topic name must not contain the wildcards + or #");
    }
    Ok(())
}

/// Splits a shared subscription `$share/{ShareName}/{filter}` into `(ShareName, filter)`;
/// `None` for any other filter.
pub(crate) fn split_shared(filter: &str) -> Option<(&str, &str)> {
    filter.strip_prefix(SHARE_PREFIX)?.split_once('/')
}

/// Checks a topic filter, including the shared subscription syntax.
pub fn check_topic_filter(filter: &str) -> Result<(), &'static str> {
    match filter.strip_prefix(SHARE_PREFIX) {
        Some(rest) => {
            let (group, inner) = rest
                .split_once('/')
                .ok_or("a shared subscription needs a topic filter after its share name")?;
            if group.is_empty() {
                return Err("a shared subscription's share name must not be empty");
            }
            if group.contains(['+', '#']) {
                return Err("a share name must not contain + or #");
            }
            check_plain_filter(inner)
        }
        None => check_plain_filter(filter),
    }
}

fn check_plain_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() {
        return Err("a topic filter must not be empty");
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err("# must be a whole level and the last level of a topic filter");
        }
        if level.contains('+') && level != "+" {
            return Err("+ must be a whole level of a topic filter");
        }
    }
    Ok(())
}

/// A validated topic filter, possibly a shared subscription.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(MqttString);

impl TopicFilter {
    /// Validates `filter`.
    pub fn new(filter: MqttString) -> Result<Self, &'static str> {
        check_topic_filter(&filter)?;
        Ok(Self(filter))
    }

    /// The filter as written on the wire (with `$share/{group}/` if shared).
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The underlying string.
    pub fn as_mqtt_str(&self) -> &MqttString {
        &self.0
    }

    /// `Some((share_name, filter))` when this is a shared subscription.
    pub fn shared(&self) -> Option<(&str, &str)> {
        split_shared(self.as_str())
    }

    /// The filter without any `$share/{group}/` prefix: what topics are matched against.
    pub fn filter(&self) -> &str {
        self.shared().map_or(self.as_str(), |(_, filter)| filter)
    }

    /// Whether the filter contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.filter().contains(['+', '#'])
    }

    /// Whether `topic` (a topic name) matches this filter.
    pub fn matches(&self, topic: &str) -> bool {
        let filter = self.filter();
        // Wildcards at the first level never match `$`-topics such as `$SYS/...`.
        if topic.starts_with('$') && filter.starts_with(['+', '#']) {
            return false;
        }
        let mut topic_levels = topic.split('/');
        for level in filter.split('/') {
            match level {
                "#" => return true,
                "+" => {
                    if topic_levels.next().is_none() {
                        return false;
                    }
                }
                _ => {
                    if topic_levels.next() != Some(level) {
                        return false;
                    }
                }
            }
        }
        topic_levels.next().is_none()
    }
}

impl TopicFilter {
    /// Whether this filter matches every topic name that `other` can match (both taken
    /// without any `$share/{group}/` prefix), so that a client allowed this filter may
    /// subscribe to `other`. Level by level: `#` here covers the rest (including the parent
    /// level, as `a/#` matches `a`); `+` here covers `+` or a name there; a name here covers
    /// only the same name. A `#` there is covered only by a `#` here. A `$` topic level
    /// first there is not covered by a wildcard first here, as such filters never match
    /// `$` topics. A filter refused here may still be covered by several together (`a/+`
    /// and `a` do not cover `a/#`, `a/#` does); callers check filters one by one.
    pub fn covers(&self, other: &TopicFilter) -> bool {
        let (mine, theirs) = (self.filter(), other.filter());
        if theirs.starts_with('$') && mine.starts_with(['+', '#']) {
            return false;
        }
        // `#` alone matches every topic of one level or more, as `+/#` does; after a first
        // level, `#` also matches its parent (`a/#` matches `a`), which `+/#` does not.
        if theirs == "#" && mine == "+/#" {
            return true;
        }
        let mut their_levels = theirs.split('/');
        for level in mine.split('/') {
            if level == "#" {
                return true;
            }
            match their_levels.next() {
                // Shorter there: `a` is not covered by `a/+`.
                None => return false,
                // Any depth there, but not here.
                Some("#") => return false,
                Some("+") if level != "+" => return false,
                Some(name) if level != "+" && level != name => return false,
                Some(_) => {}
            }
        }
        their_levels.next().is_none()
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(MqttString::try_from(s).expect("test string")).expect("valid filter")
    }

    #[test]
    fn filter_syntax() {
        for ok in [
            "a", "a/b", "#", "+", "a/#", "+/+", "/", "a//b", "+/a/#", "$SYS/#",
        ] {
            assert!(check_topic_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a#", "#/a", "a/#/b", "a+", "+a/b", "a/b+", "##"] {
            assert!(check_topic_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shared_syntax() {
        assert_eq!(filter("$share/g/a/+").shared(), Some(("g", "a/+")));
        assert_eq!(filter("$share/g/#").filter(), "#");
        for bad in [
            "$share/",
            "$share//a",
            "$share/g",
            "$share/g/",
            "$share/g+/a",
            "$share/#/a",
        ] {
            assert!(check_topic_filter(bad).is_err(), "{bad}");
        }
        assert!(filter("$shared/a").shared().is_none());
    }

    #[test]
    fn matching() {
        assert!(filter("a/+/c").matches("a/b/c"));
        assert!(!filter("a/+/c").matches("a/b/d"));
        assert!(filter("a/#").matches("a"));
        assert!(filter("a/#").matches("a/b/c"));
        assert!(filter("+").matches(""));
        assert!(!filter("+").matches("a/b"));
        assert!(filter("+/+").matches("/finance"));
        assert!(!filter("#").matches("$SYS/broker"));
        assert!(!filter("+/broker").matches("$SYS/broker"));
        assert!(filter("$SYS/#").matches("$SYS/broker"));
        assert!(filter("$share/g/a/b").matches("a/b"));
        assert!(!filter("a/b").matches("a/b/c"));
    }

    #[test]
    fn covering_examples() {
        let covers = |a: &str, b: &str| filter(a).covers(&filter(b));
        assert!(covers("a/#", "a"));
        assert!(covers("a/#", "a/+/c"));
        assert!(covers("a/#", "$share/g/a/#"));
        assert!(covers("a/+", "a/b"));
        assert!(covers("#", "#"));
        assert!(covers("+/#", "#"));
        assert!(!covers("a/+/#", "a/#"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("a/+", "a"));
        assert!(!covers("a/b", "a/+"));
        assert!(!covers("#", "$SYS/x"));
        assert!(!covers("+/x", "$SYS/x"));
        assert!(covers("$SYS/#", "$SYS/x"));
    }

    /// `covers` against its definition, over every filter of up to three levels built from
    /// two names, a `$` name and the wildcards, and every topic of up to four levels built
    /// from those names and a third one (standing for any other name): `p` covers `f`
    /// exactly when every topic `f` matches, `p` matches too.
    #[test]
    fn covering_is_exactly_matching_a_superset() {
        fn all(parts: &[&str], depth: usize) -> Vec<String> {
            let mut out: Vec<String> = parts.iter().map(|p| (*p).to_owned()).collect();
            let mut last = out.clone();
            for _ in 1..depth {
                last = last
                    .iter()
                    .flat_map(|l| parts.iter().map(move |p| format!("{l}/{p}")))
                    .collect();
                out.extend(last.iter().cloned());
            }
            out
        }
        let filters: Vec<TopicFilter> = all(&["a", "b", "$s", "+", "#"], 3)
            .into_iter()
            .filter(|f| check_topic_filter(f).is_ok())
            .map(|f| filter(&f))
            .collect();
        let topics = all(&["a", "b", "c", "$s"], 4);
        let matched: Vec<Vec<bool>> = filters
            .iter()
            .map(|f| topics.iter().map(|t| f.matches(t)).collect())
            .collect();
        for (p, p_matches) in filters.iter().zip(&matched) {
            for (f, f_matches) in filters.iter().zip(&matched) {
                let superset = f_matches.iter().zip(p_matches).all(|(f, p)| !f || *p);
                assert_eq!(p.covers(f), superset, "{p} covers {f}");
            }
        }
    }
}
