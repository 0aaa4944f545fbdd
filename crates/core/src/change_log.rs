//! The record of AWS changes the controller keeps for the node drivers
//! (docs/events.md, "Reaching the nodes"): the last few hundred objects AWS
//! said changed, each with a sequence number, held as JSON in one ConfigMap
//! that every driver watches. A driver remembers the last sequence it acted
//! on and asks what is new since; a record that lost entries it had not seen
//! says so (a gap), and the driver then refreshes every volume at its next
//! republish instead of guessing. Pure: the controller and the drivers do
//! the reading and writing.
//!
//! The record names objects, never values; it is bounded in entries, in the
//! names of one entry and in bytes, so a burst of events cannot grow the
//! ConfigMap past what the API server stores.

use serde::{Deserialize, Serialize};

use crate::aws_events::Change;
use crate::spc::ObjectType;

/// Changes kept: eight minutes' worth at a thousand events an hour, eight
/// seconds' at a thousand a minute; a watch that falls further behind sees
/// a gap. Each write goes to every node's watch, so the record stays small
/// (about 150 bytes an entry).
pub const MAX_ENTRIES: usize = 128;
/// Names kept of one change (an event names an object at most three ways).
pub const MAX_NAMES: usize = 4;
/// The longest name kept (an SSM parameter ARN is at most about 1,100
/// bytes); longer ones are not names AWS gives.
pub const MAX_NAME_BYTES: usize = 2048;
/// The most the record takes as JSON; the oldest entries go first. Half of
/// what a ConfigMap may hold.
pub const MAX_BYTES: usize = 512 * 1024;
/// The ConfigMap key holding the record.
pub const DATA_KEY: &str = "changes.json";

/// The record: changes oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeLog {
    /// Made when the record is first written; a record made anew (deleted
    /// and written again) has another, so its sequence numbers are not
    /// compared with the old one's.
    pub epoch: String,
    /// The sequence number the next change gets.
    pub next: u64,
    pub changes: Vec<Recorded>,
}

/// One change as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    pub seq: u64,
    /// `secretsmanager` or `ssmparameter`.
    pub service: String,
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub names: Vec<String>,
    /// What AWS said happened, for logs.
    pub what: String,
    /// When the controller recorded it (milliseconds since the epoch).
    pub at_ms: u64,
}

/// Where a driver stands in the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub epoch: String,
    pub next: u64,
}

impl Seen {
    /// A reader that found no record when it started: the first record
    /// written is all news, with nothing missed.
    pub fn no_record() -> Self {
        Seen {
            epoch: String::new(),
            next: 0,
        }
    }
}

/// What a driver learns from a new version of the record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct News {
    /// Changes not seen before, oldest first.
    pub changes: Vec<Change>,
    /// Entries not seen were dropped from the record before this driver
    /// read them: any object may have changed.
    pub gap: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeLogError {
    #[error("the record is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("the record is not valid: {0}")]
    Invalid(String),
    #[error("changes[{index}]: {cause}")]
    Entry { index: usize, cause: String },
}

impl ChangeLog {
    pub fn new(epoch: impl Into<String>) -> Self {
        ChangeLog {
            epoch: epoch.into(),
            next: 1,
            changes: Vec::new(),
        }
    }

    /// Reads a record as the controller wrote it; anything else is refused
    /// with the cause (the drivers then wait for the next version).
    pub fn decode(text: &str) -> Result<ChangeLog, ChangeLogError> {
        // Twice the written bound: a record written by an older controller
        // with other bounds is still read.
        if text.len() > 2 * MAX_BYTES {
            return Err(ChangeLogError::TooLarge { max: 2 * MAX_BYTES });
        }
        let log: ChangeLog =
            serde_json::from_str(text).map_err(|e| ChangeLogError::Invalid(e.to_string()))?;
        if log.changes.len() > 2 * MAX_ENTRIES {
            return Err(ChangeLogError::Invalid(format!(
                "{} changes, more than {}",
                log.changes.len(),
                2 * MAX_ENTRIES
            )));
        }
        let mut previous: Option<u64> = None;
        for (index, r) in log.changes.iter().enumerate() {
            let cause = if previous.is_some_and(|p| r.seq <= p) {
                Some("sequence numbers do not increase".to_owned())
            } else if r.seq >= log.next {
                Some(format!("seq {} is not below next {}", r.seq, log.next))
            } else if service(&r.service).is_none() {
                Some(format!("unknown service {:?}", r.service))
            } else if r.names.is_empty() || r.names.len() > 2 * MAX_NAMES {
                Some(format!("{} names", r.names.len()))
            } else {
                None
            };
            if let Some(cause) = cause {
                return Err(ChangeLogError::Entry { index, cause });
            }
            previous = Some(r.seq);
        }
        Ok(log)
    }

    /// The record as JSON.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("the record is plain data")
    }

    /// Appends `changes`, recorded at `at_ms`, and drops the oldest entries
    /// past [`MAX_ENTRIES`] and [`MAX_BYTES`]. Names past the bounds are
    /// left out; a change left with no name is not recorded.
    pub fn record(&mut self, changes: &[Change], at_ms: u64) {
        for c in changes {
            let names: Vec<String> = c
                .names
                .iter()
                .filter(|n| !n.is_empty() && n.len() <= MAX_NAME_BYTES)
                .take(MAX_NAMES)
                .cloned()
                .collect();
            if names.is_empty() {
                continue;
            }
            self.changes.push(Recorded {
                seq: self.next,
                service: c.service.as_str().to_owned(),
                region: c.region.chars().take(64).collect(),
                account: c.account.as_ref().map(|a| a.chars().take(32).collect()),
                names,
                what: c.what.chars().take(64).collect(),
                at_ms,
            });
            self.next += 1;
        }
        if self.changes.len() > MAX_ENTRIES {
            let extra = self.changes.len() - MAX_ENTRIES;
            self.changes.drain(..extra);
        }
        // Each entry is bounded (names, fields), so this drops a handful at
        // most; measured exactly, as the API server will.
        while self.changes.len() > 1 && self.encode().len() > MAX_BYTES {
            let drop = (self.changes.len() / 8).max(1);
            self.changes.drain(..drop);
        }
    }

    /// Where a reader stands once it has read this record.
    pub fn seen(&self) -> Seen {
        Seen {
            epoch: self.epoch.clone(),
            next: self.next,
        }
    }

    /// What is new since `seen`. A reader that has seen nothing yet (just
    /// started) learns nothing: what changed before it started is in what
    /// its volumes fetch when they are published or refreshed.
    pub fn since(&self, seen: Option<&Seen>) -> News {
        let Some(seen) = seen else {
            return News::default();
        };
        if seen.epoch.is_empty() {
            return News {
                changes: self.changes.iter().filter_map(Recorded::change).collect(),
                gap: false,
            };
        }
        let from = if seen.epoch == self.epoch {
            seen.next
        } else {
            // A record made anew: all of it is news, and what was dropped
            // between the two records is unknown.
            0
        };
        let new: Vec<&Recorded> = self.changes.iter().filter(|r| r.seq >= from).collect();
        let oldest_kept = self.changes.first().map_or(self.next, |r| r.seq);
        let gap = if seen.epoch == self.epoch {
            oldest_kept > from && from < self.next
        } else {
            true
        };
        News {
            changes: new.into_iter().filter_map(Recorded::change).collect(),
            gap,
        }
    }
}

impl Recorded {
    /// The change as the rest of the pipeline knows it.
    pub fn change(&self) -> Option<Change> {
        Some(Change {
            service: service(&self.service)?,
            region: self.region.clone(),
            account: self.account.clone(),
            names: self.names.clone(),
            what: self.what.clone(),
        })
    }
}

fn service(s: &str) -> Option<ObjectType> {
    match s {
        "secretsmanager" => Some(ObjectType::SecretsManager),
        "ssmparameter" => Some(ObjectType::SsmParameter),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(name: &str) -> Change {
        Change {
            service: ObjectType::SecretsManager,
            region: "us-east-1".into(),
            account: Some("123456789012".into()),
            names: vec![name.into()],
            what: "PutSecretValue".into(),
        }
    }

    #[test]
    fn a_reader_learns_what_came_after_it_and_nothing_twice() {
        let mut log = ChangeLog::new("e1");
        log.record(&[change("a")], 10);
        assert_eq!(log.since(None), News::default(), "a new reader starts here");
        let seen = log.seen();
        log.record(&[change("b"), change("c")], 20);
        let news = log.since(Some(&seen));
        assert!(!news.gap);
        let names: Vec<_> = news.changes.iter().map(|c| c.names[0].as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(log.since(Some(&log.seen())), News::default());
    }

    #[test]
    fn a_round_trip_through_json_keeps_every_field() {
        let mut log = ChangeLog::new("e1");
        let mut p = change("/app/db");
        p.service = ObjectType::SsmParameter;
        p.account = None;
        log.record(&[change("a"), p.clone()], 7);
        let back = ChangeLog::decode(&log.encode()).unwrap();
        assert_eq!(back, log);
        assert_eq!(back.changes[1].change(), Some(p));
    }

    #[test]
    fn entries_past_the_bound_are_dropped_and_a_reader_behind_sees_a_gap() {
        let mut log = ChangeLog::new("e1");
        log.record(&[change("first")], 1);
        let behind = log.seen();
        let burst: Vec<Change> = (0..MAX_ENTRIES + 10)
            .map(|i| change(&format!("s{i}")))
            .collect();
        log.record(&burst, 2);
        assert_eq!(log.changes.len(), MAX_ENTRIES);
        assert_eq!(log.next, 2 + (MAX_ENTRIES + 10) as u64);
        let news = log.since(Some(&behind));
        assert!(news.gap, "ten changes were dropped unread");
        assert_eq!(news.changes.len(), MAX_ENTRIES);
        // A reader that kept up sees no gap.
        let mut log2 = ChangeLog::new("e1");
        log2.record(&burst[..MAX_ENTRIES], 1);
        let kept_up = log2.seen();
        log2.record(&burst[..5], 2);
        let news = log2.since(Some(&kept_up));
        assert!(!news.gap);
        assert_eq!(news.changes.len(), 5);
    }

    #[test]
    fn the_first_record_after_none_is_all_news() {
        let mut log = ChangeLog::new("e1");
        log.record(&[change("a"), change("b")], 1);
        let news = log.since(Some(&Seen::no_record()));
        assert!(!news.gap);
        assert_eq!(news.changes.len(), 2);
    }

    #[test]
    fn a_record_made_anew_is_all_news_with_a_gap() {
        let mut old = ChangeLog::new("e1");
        old.record(&[change("a"), change("b")], 1);
        let seen = old.seen();
        let mut new = ChangeLog::new("e2");
        new.record(&[change("c")], 2);
        let news = new.since(Some(&seen));
        assert!(news.gap);
        assert_eq!(news.changes.len(), 1);
    }

    #[test]
    fn the_record_stays_within_its_bytes_with_the_longest_names() {
        let mut log = ChangeLog::new("e1");
        let long = |i: usize| Change {
            names: (0..MAX_NAMES + 3)
                .map(|k| format!("{i}-{k}-{}", "x".repeat(MAX_NAME_BYTES - 20)))
                .collect(),
            ..change("x")
        };
        let burst: Vec<Change> = (0..MAX_ENTRIES).map(long).collect();
        log.record(&burst, 1);
        assert!(log.encode().len() <= MAX_BYTES, "{}", log.encode().len());
        assert!(!log.changes.is_empty());
        assert!(log.changes.iter().all(|r| r.names.len() == MAX_NAMES));
        // Too long a name is not kept; a change with no name left is not
        // recorded at all.
        let mut log = ChangeLog::new("e1");
        log.record(
            &[Change {
                names: vec!["y".repeat(MAX_NAME_BYTES + 1), String::new()],
                ..change("x")
            }],
            1,
        );
        assert!(log.changes.is_empty());
        assert_eq!(log.next, 1);
    }

    #[test]
    fn junk_is_refused_with_its_place() {
        assert!(matches!(
            ChangeLog::decode("not json"),
            Err(ChangeLogError::Invalid(_))
        ));
        assert!(matches!(
            ChangeLog::decode(&"x".repeat(2 * MAX_BYTES + 1)),
            Err(ChangeLogError::TooLarge { .. })
        ));
        let entry = |seq: u64, service: &str, names: &str| {
            format!(
                r#"{{"seq":{seq},"service":"{service}","region":"r","names":{names},"what":"w","at_ms":0}}"#
            )
        };
        let log = |next: u64, entries: &[String]| {
            format!(
                r#"{{"epoch":"e","next":{next},"changes":[{}]}}"#,
                entries.join(",")
            )
        };
        let cases = [
            (
                log(
                    3,
                    &[
                        entry(2, "secretsmanager", r#"["a"]"#),
                        entry(1, "secretsmanager", r#"["a"]"#),
                    ],
                ),
                1,
                "do not increase",
            ),
            (
                log(2, &[entry(2, "secretsmanager", r#"["a"]"#)]),
                0,
                "not below next",
            ),
            (log(9, &[entry(1, "s3", r#"["a"]"#)]), 0, "unknown service"),
            (log(9, &[entry(1, "ssmparameter", "[]")]), 0, "0 names"),
        ];
        for (text, index, cause) in cases {
            match ChangeLog::decode(&text) {
                Err(ChangeLogError::Entry { index: i, cause: c }) => {
                    assert_eq!(i, index, "{text}");
                    assert!(c.contains(cause), "{c}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(
            ChangeLog::decode(r#"{"epoch":"e","next":1,"changes":[],"extra":1}"#).is_err(),
            "unknown fields are refused"
        );
    }
}
