//! Stream positions of HTTP subscribers: every partition's next offset in one short text,
//! `0:15,1:22,2:9` (partition `:` offset of the next record to deliver, by partition).
//!
//! A position is self-contained: SSE sends it as each event's `id` (which browsers echo in
//! `Last-Event-ID` when they reconnect) and WebSocket subscribers get it with each record,
//! so a client that comes back with the last position it saw resumes right after the last
//! record it got, on any sluice process. A partition missing from a position (one added to
//! the topic since) is read from its beginning.

use std::fmt::Write as _;

/// Longest position text accepted (about 500 partitions with large offsets).
const MAX_TEXT: usize = 16 * 1024;

/// Why a position text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PositionError {
    /// Not `partition:offset` pairs separated by commas.
    #[error("The position {text:?} is not a list of partition:offset pairs such as 0:15,1:22.")]
    Malformed {
        /// The text, shortened when long.
        text: String,
    },
    /// A partition appears twice.
    #[error("The position names partition {partition} twice.")]
    Duplicate {
        /// The partition.
        partition: i32,
    },
    /// A partition beyond the topic's partitions (the topic was recreated smaller?).
    #[error("The position names partition {partition}, but topic {topic} has {count} partitions.")]
    NoSuchPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// How many partitions the topic has.
        count: usize,
    },
}

/// The offsets a position text names, checked for syntax only (the topic's partition count
/// is known later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionText {
    entries: Vec<(i32, i64)>,
}

impl PositionText {
    /// Reads `partition:offset,...`; partitions may come in any order, but only once.
    pub fn parse(text: &str) -> Result<PositionText, PositionError> {
        let malformed = || PositionError::Malformed {
            text: text.chars().take(64).collect(),
        };
        if text.is_empty() || text.len() > MAX_TEXT {
            return Err(malformed());
        }
        let mut entries = Vec::new();
        for pair in text.split(',') {
            let (p, o) = pair.split_once(':').ok_or_else(malformed)?;
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !digits(p) || !digits(o) {
                return Err(malformed());
            }
            let p: i32 = p.parse().map_err(|_| malformed())?;
            let o: i64 = o.parse().map_err(|_| malformed())?;
            entries.push((p, o));
        }
        entries.sort_unstable();
        if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(PositionError::Duplicate { partition: w[0].0 });
        }
        Ok(PositionText { entries })
    }

    /// The offset of every partition of `topic` (which has `count`), `None` where the text
    /// names none.
    pub fn offsets(&self, topic: &str, count: usize) -> Result<Vec<Option<i64>>, PositionError> {
        let mut offsets = vec![None; count];
        for &(partition, offset) in &self.entries {
            let slot = usize::try_from(partition)
                .ok()
                .and_then(|p| offsets.get_mut(p))
                .ok_or_else(|| PositionError::NoSuchPartition {
                    topic: topic.to_owned(),
                    partition,
                    count,
                })?;
            *slot = Some(offset);
        }
        Ok(offsets)
    }
}

/// A subscriber's position: the next offset to deliver, for every partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    next: Vec<i64>,
}

impl Position {
    /// The position at these offsets, indexed by partition.
    pub fn new(next: Vec<i64>) -> Position {
        Position { next }
    }

    /// Records that everything before `offset` in `partition` was delivered or skipped.
    pub fn set(&mut self, partition: i32, offset: i64) {
        if let Some(slot) = usize::try_from(partition)
            .ok()
            .and_then(|p| self.next.get_mut(p))
        {
            *slot = offset;
        }
    }

    /// The next offset of `partition`.
    pub fn get(&self, partition: i32) -> Option<i64> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.next.get(p))
            .copied()
    }

    /// Appends the text form, `0:15,1:22,2:9`.
    pub fn write(&self, dst: &mut String) {
        for (p, o) in self.next.iter().enumerate() {
            if p > 0 {
                dst.push(',');
            }
            // Writing to a String cannot fail.
            let _ = write!(dst, "{p}:{o}");
        }
    }

    /// The text form.
    pub fn text(&self) -> String {
        let mut s = String::with_capacity(self.next.len() * 8);
        self.write(&mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_fills_missing_partitions_with_none() {
        let p = Position::new(vec![15, 22, 9]);
        assert_eq!(p.text(), "0:15,1:22,2:9");
        let parsed = PositionText::parse("2:9,0:15,1:22").unwrap();
        assert_eq!(
            parsed.offsets("t", 3).unwrap(),
            vec![Some(15), Some(22), Some(9)]
        );
        let grown = PositionText::parse(&p.text()).unwrap();
        assert_eq!(
            grown.offsets("t", 4).unwrap(),
            vec![Some(15), Some(22), Some(9), None]
        );
    }

    #[test]
    fn bad_positions_are_refused_with_a_reason() {
        for bad in [
            "",
            "0",
            "0:",
            ":1",
            "0:1,",
            "0:-1",
            "-1:0",
            "a:1",
            "0:1;1:2",
            " 0:1",
            "0:99999999999999999999",
        ] {
            assert!(
                matches!(
                    PositionText::parse(bad),
                    Err(PositionError::Malformed { .. })
                ),
                "{bad:?} accepted"
            );
        }
        assert_eq!(
            PositionText::parse("0:1,0:2"),
            Err(PositionError::Duplicate { partition: 0 })
        );
        let e = PositionText::parse("5:1")
            .unwrap()
            .offsets("orders", 3)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "The position names partition 5, but topic orders has 3 partitions."
        );
    }

    #[test]
    fn set_moves_one_partition() {
        let mut p = Position::new(vec![0, 0]);
        p.set(1, 7);
        p.set(9, 1);
        assert_eq!(p.text(), "0:0,1:7");
    }
}
