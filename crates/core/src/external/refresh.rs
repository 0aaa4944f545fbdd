//! When an ExternalSecret is synced again, as External Secrets v2.9.0
//! decides (`pkg/controllers/externalsecret/externalsecret_controller.go`
//! `shouldRefresh`, `isPeriodicRefreshAllowedByWindows`,
//! `getRequeueResult`), plus when to look next, so the controller can
//! requeue at the right instant. Time is passed in; nothing here reads a
//! clock.
//!
//! - `refreshPolicy: CreatedOnce`: only before the first sync.
//! - `OnChange`: before the first sync and when the object's generation,
//!   labels or annotations changed (`status.syncedResourceVersion`).
//! - `Periodic` (and unset): also when `refreshInterval` passed since
//!   `status.refreshTime`, if `syncWindows` allow it now; `refreshInterval`
//!   0 means never again after the first sync, even on a change.
//!
//! `status.syncedResourceVersion` is `<generation>-<hash>`, the hash being
//! ESO's own (SHA3-224 of Go's `%+v` of the labels and annotations), so a
//! status written by ESO reads as in sync here and the reverse.
//!
//! Intended differences: a `syncWindows` schedule or duration that does
//! not parse is an error naming it (ESO skips that window silently, which
//! under `allow` blocks refreshes for good); the requeue while a window
//! blocks is the instant it stops blocking (ESO retries with backoff).

pub mod cron;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha3::{Digest, Sha3_224};

use cron::Schedule;

/// Nanoseconds since the Unix epoch (negative before it).
pub type Nanos = i128;
const NANOS_PER_SEC: Nanos = 1_000_000_000;

/// `refreshInterval` when absent (the CRD's default).
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);

// The refresh types are the API's (one definition, with its schema).
pub use super::api::{RefreshPolicy, SyncWindow as SyncWindowEntry, SyncWindowKind, SyncWindows};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error("{path}: {why}")]
    Invalid { path: String, why: String },
}

/// Go's `time.ParseDuration`, exactly: `[-+]?([0-9]*(\.[0-9]*)?unit)+`
/// or `0`, units `ns us µs μs ms s m h`; nanoseconds.
pub fn go_parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration {text:?}");
    let mut s = text.as_bytes();
    let mut neg = false;
    if let Some((&c, rest)) = s.split_first()
        && (c == b'-' || c == b'+')
    {
        neg = c == b'-';
        s = rest;
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(bad());
    }
    const LIMIT: u64 = 1 << 63;
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(bad());
        }
        let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut v: u64 = 0;
        for &c in &s[..digits] {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(c - b'0')))
                .filter(|v| *v <= LIMIT)
                .ok_or_else(bad)?;
        }
        let pre = digits > 0;
        s = &s[digits..];
        let (mut f, mut scale, mut post) = (0u64, 1f64, false);
        if let Some((b'.', rest)) = s.split_first() {
            s = rest;
            let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
            let mut overflow = false;
            for &c in &s[..digits] {
                if overflow {
                    continue;
                }
                match f
                    .checked_mul(10)
                    .and_then(|x| x.checked_add(u64::from(c - b'0')))
                    .filter(|x| *x <= LIMIT)
                {
                    Some(x) => {
                        f = x;
                        scale *= 10.0;
                    }
                    None => overflow = true,
                }
            }
            post = digits > 0;
            s = &s[digits..];
        }
        if !pre && !post {
            return Err(bad());
        }
        let unit_len = s
            .iter()
            .take_while(|c| !(**c == b'.' || c.is_ascii_digit()))
            .count();
        if unit_len == 0 {
            return Err(format!("missing unit in duration {text:?}"));
        }
        let unit: u64 = match &s[..unit_len] {
            b"ns" => 1,
            // `us`, `µs` (U+00B5), `μs` (U+03BC)
            b"us" | [0xC2, 0xB5, b's'] | [0xCE, 0xBC, b's'] => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            _ => return Err(format!("unknown unit in duration {text:?}")),
        };
        s = &s[unit_len..];
        if v > LIMIT / unit {
            return Err(bad());
        }
        v *= unit;
        if f > 0 {
            // Go converts through float64 here too.
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(bad());
            }
        }
        total = total
            .checked_add(v)
            .filter(|t| *t <= LIMIT)
            .ok_or_else(bad)?;
    }
    if neg {
        // -(1<<63) is i64::MIN.
        return Ok((total as i64).wrapping_neg());
    }
    i64::try_from(total).map_err(|_| bad())
}

/// `spec.refreshInterval` (absent: one hour; negative: zero, as ESO
/// treats anything not positive).
pub fn refresh_interval(text: Option<&str>) -> Result<Duration, RefreshError> {
    let Some(text) = text else {
        return Ok(DEFAULT_REFRESH_INTERVAL);
    };
    let n = go_parse_duration(text).map_err(|why| RefreshError::Invalid {
        path: "spec.refreshInterval".to_owned(),
        why,
    })?;
    Ok(Duration::from_nanos(u64::try_from(n).unwrap_or(0)))
}

/// ESO's `GetResourceVersion`: `<generation>-<SHA3-224 of the labels and
/// annotations as Go's fmt prints them>`.
pub fn resource_version(
    generation: i64,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> String {
    // fmt's %+v of struct{annotations, labels map[string]string}: maps in
    // key order, `k:v` separated by spaces, nothing quoted.
    let mut text = String::from("{annotations:map[");
    let print = |text: &mut String, m: &BTreeMap<String, String>| {
        for (i, (k, v)) in m.iter().enumerate() {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(k);
            text.push(':');
            text.push_str(v);
        }
    };
    print(&mut text, annotations);
    text.push_str("] labels:map[");
    print(&mut text, labels);
    text.push_str("]}");
    let digest = Sha3_224::digest(text.as_bytes());
    let mut out = format!("{generation}-");
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn to_nanos(t: SystemTime) -> Nanos {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as Nanos,
        Err(e) => -(e.duration().as_nanos() as Nanos),
    }
}

fn from_nanos(n: Nanos) -> Option<SystemTime> {
    let secs = u64::try_from(n.unsigned_abs() / NANOS_PER_SEC as u128).ok()?;
    let d = Duration::new(secs, (n.unsigned_abs() % NANOS_PER_SEC as u128) as u32);
    if n >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    }
}

/// `spec.syncWindows`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Windows {
    kind: SyncWindowKind,
    entries: Vec<(Schedule, Nanos)>,
}

/// How far ahead [`Windows::next_allowed`] searches window by window.
const MAX_WINDOW_STEPS: usize = 200;

impl Windows {
    pub fn new(spec: &SyncWindows) -> Result<Windows, RefreshError> {
        let mut entries = Vec::with_capacity(spec.windows.len());
        for (i, w) in spec.windows.iter().enumerate() {
            let at = format!("spec.syncWindows.windows[{i}]");
            let schedule = Schedule::parse(&w.schedule).map_err(|why| RefreshError::Invalid {
                path: format!("{at}.schedule"),
                why,
            })?;
            let duration = go_parse_duration(&w.duration)
                .map_err(|why| RefreshError::Invalid {
                    path: format!("{at}.duration"),
                    why,
                })
                .and_then(|d| {
                    if d < 0 {
                        Err(RefreshError::Invalid {
                            path: format!("{at}.duration"),
                            why: "must not be negative".to_owned(),
                        })
                    } else {
                        Ok(Nanos::from(d))
                    }
                })?;
            entries.push((schedule, duration));
        }
        Ok(Windows {
            kind: spec.kind,
            entries,
        })
    }

    /// The end of the window of `entry` open at `at`, if one is: ESO's
    /// `isWithinSyncWindow` (the first firing after `at - duration - 1s`
    /// opened it; both ends inclusive).
    fn open_until(entry: &(Schedule, Nanos), at: Nanos) -> Option<Nanos> {
        let (schedule, duration) = entry;
        let prev = schedule.next(at - duration - NANOS_PER_SEC)?;
        (prev <= at && at <= prev + duration).then_some(prev + duration)
    }

    fn allows_at(&self, at: Nanos) -> bool {
        if self.entries.is_empty() {
            return true;
        }
        let any_open = self
            .entries
            .iter()
            .any(|e| Self::open_until(e, at).is_some());
        match self.kind {
            SyncWindowKind::Allow => any_open,
            SyncWindowKind::Deny => !any_open,
        }
    }

    /// Whether a periodic refresh may happen at `at`.
    pub fn allows(&self, at: SystemTime) -> bool {
        self.allows_at(to_nanos(at))
    }

    /// The first instant from `at` on when a periodic refresh is allowed,
    /// or none found (no window will open, or deny windows stay shut).
    pub fn next_allowed(&self, at: SystemTime) -> Option<SystemTime> {
        let mut t = to_nanos(at);
        for _ in 0..MAX_WINDOW_STEPS {
            if self.allows_at(t) {
                return from_nanos(t);
            }
            t = match self.kind {
                // Closed now: the next firing of any window opens one.
                SyncWindowKind::Allow => {
                    self.entries.iter().filter_map(|(s, _)| s.next(t)).min()?
                }
                // Open now: try just after the last open window closes.
                SyncWindowKind::Deny => {
                    self.entries
                        .iter()
                        .filter_map(|e| Self::open_until(e, t))
                        .max()?
                        + 1
                }
            };
        }
        None
    }
}

/// What the refresh decision reads.
#[derive(Debug, Clone, Copy)]
pub struct RefreshInput<'a> {
    /// `spec.refreshPolicy` (absent behaves as `Periodic`).
    pub policy: Option<RefreshPolicy>,
    /// `spec.refreshInterval`, see [`refresh_interval`].
    pub interval: Duration,
    pub windows: Option<&'a Windows>,
    /// [`resource_version`] of the object now.
    pub resource_version: &'a str,
    /// `status.syncedResourceVersion` (empty when absent).
    pub synced_resource_version: &'a str,
    /// `status.refreshTime`.
    pub refresh_time: Option<SystemTime>,
}

/// ESO's `shouldRefresh` at `now`.
pub fn should_refresh(input: &RefreshInput<'_>, now: SystemTime) -> bool {
    let synced = input.synced_resource_version;
    let first = synced.is_empty() || input.refresh_time.is_none();
    match input.policy {
        Some(RefreshPolicy::CreatedOnce) => first,
        Some(RefreshPolicy::OnChange) => first || synced != input.resource_version,
        Some(RefreshPolicy::Periodic) | None => {
            if input.interval.is_zero() && !synced.is_empty() {
                return false;
            }
            if synced != input.resource_version {
                return true;
            }
            let Some(last) = input.refresh_time else {
                return true;
            };
            if last > now {
                return true;
            }
            // Due once last + interval is strictly before now.
            if last
                .checked_add(input.interval)
                .is_none_or(|due| due >= now)
            {
                return false;
            }
            input.windows.is_none_or(|w| w.allows(now))
        }
    }
}

/// The outcome for one reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Fetch and write the Secret now.
    pub sync: bool,
    /// When to look again if nothing changes (none: only on a change to
    /// the ExternalSecret or its Secret). After a sync it assumes the
    /// sync succeeded and `status.refreshTime` became `now`.
    pub next_check: Option<SystemTime>,
}

/// ESO's reconcile gate: sync when [`should_refresh`] or when the target
/// Secret is not valid (missing, or its managed label or data hash is
/// off), and when to requeue.
pub fn decide(input: &RefreshInput<'_>, target_valid: bool, now: SystemTime) -> Decision {
    let sync = should_refresh(input, now) || !target_valid;
    if input.interval.is_zero() {
        return Decision {
            sync,
            next_check: None,
        };
    }
    let after_interval = now.checked_add(input.interval);
    let next_check = match input.refresh_time {
        _ if sync => after_interval,
        None => after_interval,
        Some(last) if last > now => Some(now),
        Some(last) => match last.checked_add(input.interval) {
            // Not due yet: the first instant it is (strictly after).
            Some(due) if due >= now => due.checked_add(Duration::from_nanos(1)),
            // Due but not refreshed: a sync window blocks (Periodic), or
            // the policy does not refresh on time (then only the Secret's
            // validity is checked, once per interval, as ESO does).
            _ => match (input.policy, input.windows) {
                (Some(RefreshPolicy::Periodic) | None, Some(w)) => {
                    w.next_allowed(now).or(after_interval)
                }
                _ => after_interval,
            },
        },
    };
    Decision { sync, next_check }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_parse_duration("1h0m0s"), Ok(3_600_000_000_000));
        assert_eq!(go_parse_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(go_parse_duration("-1m"), Ok(-60_000_000_000));
        assert_eq!(go_parse_duration("0"), Ok(0));
        assert_eq!(go_parse_duration(".5s"), Ok(500_000_000));
        assert_eq!(go_parse_duration("1µs1μs1us"), Ok(3_000));
        assert_eq!(go_parse_duration("2562047h47m16.854775807s"), Ok(i64::MAX));
        assert_eq!(go_parse_duration("-2562047h47m16.854775808s"), Ok(i64::MIN));
        for bad in [
            "",
            "1",
            "h",
            "1d",
            "1h ",
            "2562047h47m16.854775808s",
            "-",
            ".",
        ] {
            assert!(go_parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resource_version_is_esos() {
        let none = BTreeMap::new();
        let mut ann = BTreeMap::new();
        ann.insert("foo".to_owned(), "bar".to_owned());
        // Values computed with Go (crypto/sha3, fmt %+v).
        assert_eq!(
            resource_version(1, &none, &none),
            "1-f47fe3c0b255b6dd8047cdffa772587bb829efe7a1cb70febeda2eb2"
        );
        assert_eq!(
            resource_version(7, &none, &ann),
            "7-69a7d6c99695c5308a8074c7eff995659652f98af7b21de0719c1446"
        );
        let mut ann2 = BTreeMap::new();
        ann2.insert("b".to_owned(), "2".to_owned());
        ann2.insert("a".to_owned(), "x y:z".to_owned());
        let mut labels = BTreeMap::new();
        labels.insert("new".to_owned(), "w00t".to_owned());
        labels.insert("foo".to_owned(), "bar".to_owned());
        assert_eq!(
            resource_version(2, &labels, &ann2),
            "2-b7e93eb49ba8810a49286a4c7883fe63ad90be58ef7fd99b9be3792a"
        );
    }

    #[test]
    fn decide_requeues_precisely() {
        let rv = "1-x";
        let base = RefreshInput {
            policy: None,
            interval: Duration::from_secs(60),
            windows: None,
            resource_version: rv,
            synced_resource_version: rv,
            refresh_time: Some(t(1000)),
        };
        let d = decide(&base, true, t(1030));
        assert!(!d.sync);
        assert_eq!(d.next_check, Some(t(1060) + Duration::from_nanos(1)));
        let d = decide(&base, false, t(1030));
        assert!(d.sync, "an invalid target Secret is synced");
        assert_eq!(d.next_check, Some(t(1090)));
        let d = decide(&base, true, t(1061));
        assert!(d.sync);
        // Deny window open 00:00-00:10 of each hour: blocked at 00:05, next at 00:10 + 1ns.
        let w = Windows::new(&SyncWindows {
            kind: SyncWindowKind::Deny,
            windows: vec![SyncWindowEntry {
                schedule: "0 * * * *".into(),
                duration: "10m".into(),
            }],
        })
        .expect("valid");
        let input = RefreshInput {
            windows: Some(&w),
            refresh_time: Some(t(0)),
            ..base
        };
        let d = decide(&input, true, t(300));
        assert!(!d.sync);
        assert_eq!(d.next_check, Some(t(600) + Duration::from_nanos(1)));
        assert!(decide(&input, true, t(601)).sync);
        let zero = RefreshInput {
            interval: Duration::ZERO,
            ..base
        };
        assert_eq!(
            decide(&zero, true, t(99_999)),
            Decision {
                sync: false,
                next_check: None
            }
        );
    }

    #[test]
    fn allow_window_opens_at_next_firing() {
        let w = Windows::new(&SyncWindows {
            kind: SyncWindowKind::Allow,
            windows: vec![SyncWindowEntry {
                schedule: "30 * * * *".into(),
                duration: "5m".into(),
            }],
        })
        .expect("valid");
        assert!(!w.allows(t(60)));
        assert_eq!(w.next_allowed(t(60)), Some(t(1800)));
        assert!(w.allows(t(1800 + 300)));
        assert!(!w.allows(t(1800 + 301)));
        let err = Windows::new(&SyncWindows {
            kind: SyncWindowKind::Allow,
            windows: vec![SyncWindowEntry {
                schedule: "not-a-cron".into(),
                duration: "5m".into(),
            }],
        })
        .expect_err("invalid");
        assert!(
            err.to_string()
                .starts_with("spec.syncWindows.windows[0].schedule:"),
            "{err}"
        );
    }
}
