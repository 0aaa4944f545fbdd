//! Step "rotation": when a mounted volume may be refreshed. Pure: times come
//! in as arguments (milliseconds since the Unix epoch, so the state survives
//! a restart of the driver).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A failed refresh is retried after this, doubling up to the interval.
const FIRST_RETRY: Duration = Duration::from_secs(10);

/// A volume's refresh bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshState {
    /// Last successful fetch: the content was current at this time.
    pub fetched_at_ms: u64,
    /// Last time the content on disk changed.
    pub changed_at_ms: u64,
    /// Failed refreshes since the last success.
    pub failures: u32,
    /// The earliest time of the next refresh.
    pub next_due_ms: u64,
    /// The volume's refresh interval as of its last successful fetch.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
}

fn default_interval_ms() -> u64 {
    120_000
}

impl RefreshState {
    /// Just mounted with fresh content.
    pub fn mounted(now_ms: u64, interval: Duration, volume_id: &str) -> Self {
        RefreshState {
            fetched_at_ms: now_ms,
            changed_at_ms: now_ms,
            failures: 0,
            next_due_ms: now_ms + millis(jittered(interval, seed(volume_id, now_ms))),
            interval_ms: millis(interval),
        }
    }

    pub fn is_due(&self, now_ms: u64) -> bool {
        now_ms >= self.next_due_ms
    }

    /// A refresh fetched the content; `changed` when the files were swapped.
    pub fn succeeded(&mut self, now_ms: u64, changed: bool, interval: Duration, volume_id: &str) {
        self.fetched_at_ms = now_ms;
        if changed {
            self.changed_at_ms = now_ms;
        }
        self.failures = 0;
        self.interval_ms = millis(interval);
        self.next_due_ms = now_ms + millis(jittered(interval, seed(volume_id, now_ms)));
    }

    /// A refresh failed: the old files stay, the next try comes after a
    /// backoff that doubles, never later than one interval.
    pub fn failed(&mut self, now_ms: u64) {
        self.failures = self.failures.saturating_add(1);
        self.next_due_ms = now_ms + millis(backoff(self.failures)).min(self.interval_ms);
    }
}

/// The interval plus up to 10 %, different per volume and per cycle, so
/// volumes that mounted together do not refresh together.
pub fn jittered(interval: Duration, seed: u64) -> Duration {
    let permille = seed % 101; // 0..=100 thousandths
    interval + interval.mul_f64(permille as f64 / 1000.0)
}

/// 10 s, 20 s, 40 s, ... for the 1st, 2nd, 3rd failure.
pub fn backoff(failures: u32) -> Duration {
    FIRST_RETRY.saturating_mul(1u32 << failures.saturating_sub(1).min(16))
}

fn seed(volume_id: &str, now_ms: u64) -> u64 {
    let mut h = DefaultHasher::new();
    volume_id.hash(&mut h);
    now_ms.hash(&mut h);
    h.finish()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn not_due_before_the_interval_due_after_it() {
        let s = RefreshState::mounted(1_000, MIN, "v");
        assert!(!s.is_due(1_000));
        assert!(!s.is_due(1_000 + 59_999));
        assert!(s.is_due(1_000 + 66_001), "jitter is at most 10 %");
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_varies() {
        let mut seen = std::collections::HashSet::new();
        for seed in 0..500 {
            let j = jittered(MIN, seed);
            assert!(j >= MIN && j <= MIN + Duration::from_secs(6), "{j:?}");
            seen.insert(j);
        }
        assert!(seen.len() > 50, "jitter spreads volumes out");
        let a = RefreshState::mounted(0, MIN, "vol-a").next_due_ms;
        let b = RefreshState::mounted(0, MIN, "vol-b").next_due_ms;
        let c = RefreshState::mounted(0, MIN, "vol-c").next_due_ms;
        assert!(
            a != b || b != c,
            "volumes mounted together get different due times"
        );
    }

    #[test]
    fn success_resets_failures_and_records_change() {
        let mut s = RefreshState::mounted(0, MIN, "v");
        s.failed(70_000);
        s.failed(90_000);
        assert_eq!(s.failures, 2);
        s.succeeded(200_000, false, MIN, "v");
        assert_eq!(
            (s.failures, s.fetched_at_ms, s.changed_at_ms),
            (0, 200_000, 0)
        );
        s.succeeded(300_000, true, MIN, "v");
        assert_eq!(s.changed_at_ms, 300_000);
        assert!(!s.is_due(300_000 + 59_000));
    }

    #[test]
    fn failures_back_off_but_never_past_the_interval() {
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(2), Duration::from_secs(20));
        assert_eq!(backoff(3), Duration::from_secs(40));
        assert!(backoff(40) > Duration::from_secs(3600));
        let mut s = RefreshState::mounted(0, MIN, "v");
        s.failed(100_000);
        assert_eq!(s.next_due_ms, 110_000);
        for _ in 0..10 {
            s.failed(100_000);
        }
        assert_eq!(s.next_due_ms, 160_000, "capped at one interval");
        assert_eq!(
            s.fetched_at_ms, 0,
            "a failure does not refresh the content's age"
        );
    }
}
