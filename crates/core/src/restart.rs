//! When to restart a workload whose pods read secrets that rotated: the
//! signals of its pods (and of the Secrets the controller changed) are
//! gathered per owner, so that one rotation read by 300 pods restarts the
//! owner once. A restart waits for a quiet period after the last signal,
//! but no longer than a maximum after the first; an owner is not restarted
//! again within a minimum interval; and a pod created before the owner's
//! last restart is not heard (it is being replaced, and what it reports is
//! the rotation that restart answered).
//!
//! Times are plain milliseconds on one clock chosen by the caller (Unix
//! time): nothing here reads a clock.

use std::collections::{BTreeMap, BTreeSet};

/// Milliseconds.
pub type Millis = u64;

/// The most Secret names one restart keeps for its event.
pub const MAX_NAMES: usize = 5;
/// Restarts tried again after a failure (then the signals are dropped).
pub const MAX_ATTEMPTS: u32 = 3;

/// How signals become restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// A restart waits this long after its owner's last signal ...
    pub quiet: Millis,
    /// ... but no longer than this after the first.
    pub max_wait: Millis,
    /// The least time between two restarts of one owner.
    pub min_interval: Millis,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            quiet: 10_000,
            max_wait: 60_000,
            min_interval: 300_000,
        }
    }
}

/// What says that an owner's pods read secrets that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// One of its pods saw its mounted secrets change; `created`: the
    /// pod's creation time (whole seconds, as the API server keeps it).
    Pod { created: Millis },
    /// The controller changed the data of a Secret its pod template reads.
    Secret { name: String },
}

/// What became of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Kept: the owner is due at this time, unless more signals come.
    Pending { due: Millis },
    /// From a pod created before the owner's last restart: not heard.
    Stale,
}

/// An owner whose restart is due, and what asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due<K> {
    pub owner: K,
    /// Signals of its pods.
    pub pods: u32,
    /// Secrets whose change asked for it (at most [`MAX_NAMES`]).
    pub secrets: BTreeSet<String>,
    /// Earlier attempts that failed.
    pub attempts: u32,
}

#[derive(Debug, Clone)]
struct Pending {
    first: Millis,
    last: Millis,
    pods: u32,
    secrets: BTreeSet<String>,
    /// The creation of the newest pod that signalled.
    newest_pod: Option<Millis>,
    /// Not before (a retry's back-off).
    not_before: Millis,
    attempts: u32,
}

impl Pending {
    fn new(now: Millis) -> Self {
        Pending {
            first: now,
            last: now,
            pods: 0,
            secrets: BTreeSet::new(),
            newest_pod: None,
            not_before: 0,
            attempts: 0,
        }
    }

    fn add(&mut self, now: Millis, signal: &Signal) {
        self.last = self.last.max(now);
        match signal {
            Signal::Pod { created } => {
                self.pods = self.pods.saturating_add(1);
                self.newest_pod = Some(self.newest_pod.map_or(*created, |n| n.max(*created)));
            }
            Signal::Secret { name } => {
                if self.secrets.len() < MAX_NAMES {
                    self.secrets.insert(name.clone());
                }
            }
        }
    }

    /// Whether only pods created before `cutoff` asked for it.
    fn stale(&self, cutoff: Millis) -> bool {
        self.secrets.is_empty() && self.newest_pod.is_none_or(|c| before(c, cutoff))
    }
}

#[derive(Debug, Clone, Default)]
struct Owner {
    /// The last restart on the caller's clock: the minimum interval runs
    /// from it.
    restarted: Option<Millis>,
    /// The last restart as pods' creation times are told: pods created
    /// before it are stale.
    cutoff: Option<Millis>,
    pending: Option<Pending>,
    /// Handed out by [`Schedule::due`], not yet reported back.
    in_flight: bool,
}

/// Whether a pod created at `created` is older than a restart at `cutoff`.
/// Creation times have whole seconds: a pod created in the restart's own
/// second counts as new (a restart deferred to the minimum interval is
/// better than one missed).
fn before(created: Millis, cutoff: Millis) -> bool {
    created / 1000 < cutoff / 1000
}

/// The restarts to come, per owner `K` (kind, namespace, name).
#[derive(Debug, Clone)]
pub struct Schedule<K> {
    timing: Timing,
    owners: BTreeMap<K, Owner>,
}

impl<K: Ord + Clone> Schedule<K> {
    pub fn new(timing: Timing) -> Self {
        Schedule {
            timing,
            owners: BTreeMap::new(),
        }
    }

    /// A signal for `owner` at `now`. `shown`: the restart time the
    /// workload itself shows (its restartedAt annotation), which counts as
    /// a restart this schedule made: another replica's before a failover,
    /// or one forgotten by [`Self::prune`].
    pub fn signal(
        &mut self,
        owner: K,
        now: Millis,
        signal: Signal,
        shown: Option<Millis>,
    ) -> Verdict {
        let timing = self.timing;
        let o = self.owners.entry(owner).or_default();
        if let Some(shown) = shown {
            // Never in the future of this clock: a skewed writer must not
            // hold the owner back longer than the interval.
            let at = shown.min(now);
            if o.restarted.is_none_or(|r| r < at) {
                o.restarted = Some(at);
            }
            o.cutoff = Some(o.cutoff.map_or(shown, |c| c.max(shown)));
        }
        if let (Signal::Pod { created }, Some(cutoff)) = (&signal, o.cutoff)
            && before(*created, cutoff)
        {
            return Verdict::Stale;
        }
        o.pending
            .get_or_insert_with(|| Pending::new(now))
            .add(now, &signal);
        Verdict::Pending {
            due: due_of(&timing, o).unwrap_or(now),
        }
    }

    /// The owners due at `now`, taken out of the schedule until
    /// [`Self::restarted`], [`Self::failed`] or [`Self::forget`] reports on
    /// each (signals meanwhile are kept for after).
    pub fn due(&mut self, now: Millis) -> Vec<Due<K>> {
        let timing = self.timing;
        let mut out = Vec::new();
        for (key, o) in &mut self.owners {
            if o.in_flight || due_of(&timing, o).is_none_or(|d| d > now) {
                continue;
            }
            let Some(p) = o.pending.take() else { continue };
            o.in_flight = true;
            out.push(Due {
                owner: key.clone(),
                pods: p.pods,
                secrets: p.secrets,
                attempts: p.attempts,
            });
        }
        out
    }

    /// `owner` was restarted at `now`; `cutoff`: the same moment as pods'
    /// creation times are told (the API server's clock). Signals that came
    /// while it was under way from pods older than it are dropped.
    pub fn restarted(&mut self, owner: &K, now: Millis, cutoff: Millis) {
        let Some(o) = self.owners.get_mut(owner) else {
            return;
        };
        o.in_flight = false;
        o.restarted = Some(o.restarted.map_or(now, |r| r.max(now)));
        let cutoff = o.cutoff.map_or(cutoff, |c| c.max(cutoff));
        o.cutoff = Some(cutoff);
        if o.pending.as_ref().is_some_and(|p| p.stale(cutoff)) {
            o.pending = None;
        }
    }

    /// The restart of `due` failed at `now`: tried again after a back-off
    /// (the quiet period, doubled each time, at most the minimum interval)
    /// with the signals that came since; false when it was the last
    /// attempt and its signals are dropped.
    pub fn failed(&mut self, due: Due<K>, now: Millis) -> bool {
        let timing = self.timing;
        let Some(o) = self.owners.get_mut(&due.owner) else {
            return false;
        };
        o.in_flight = false;
        let attempts = due.attempts + 1;
        if attempts >= MAX_ATTEMPTS {
            return false;
        }
        let back_off = timing
            .quiet
            .saturating_mul(1 << attempts.min(16))
            .min(timing.min_interval.max(timing.quiet));
        let p = o.pending.get_or_insert_with(|| Pending::new(now));
        p.pods = p.pods.saturating_add(due.pods);
        for name in due.secrets {
            if p.secrets.len() < MAX_NAMES {
                p.secrets.insert(name);
            }
        }
        p.attempts = attempts;
        p.not_before = now.saturating_add(back_off);
        true
    }

    /// Drops `owner` (gone, or no longer opted in).
    pub fn forget(&mut self, owner: &K) {
        self.owners.remove(owner);
    }

    /// When the next owner is due (None: none is waiting).
    pub fn next_due(&self) -> Option<Millis> {
        self.owners
            .values()
            .filter(|o| !o.in_flight)
            .filter_map(|o| due_of(&self.timing, o))
            .min()
    }

    /// Forgets owners with nothing waiting whose minimum interval is over
    /// (what they knew, the last restart, the workload shows again in its
    /// annotation, passed back as `shown`).
    pub fn prune(&mut self, now: Millis) {
        let min_interval = self.timing.min_interval;
        self.owners.retain(|_, o| {
            o.in_flight
                || o.pending.is_some()
                || o.restarted
                    .is_some_and(|r| now < r.saturating_add(min_interval))
        });
    }

    /// Owners held (waiting, under way, or in their minimum interval).
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }
}

/// When an owner's pending restart is due: after the quiet period (or the
/// maximum wait), never within the minimum interval of the last restart,
/// never before a retry's back-off.
fn due_of(timing: &Timing, o: &Owner) -> Option<Millis> {
    let p = o.pending.as_ref()?;
    let settled = p
        .last
        .saturating_add(timing.quiet)
        .min(p.first.saturating_add(timing.max_wait));
    let allowed = o
        .restarted
        .map_or(0, |r| r.saturating_add(timing.min_interval));
    Some(settled.max(allowed).max(p.not_before))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        quiet: 10_000,
        max_wait: 60_000,
        min_interval: 300_000,
    };

    fn pod(created: Millis) -> Signal {
        Signal::Pod { created }
    }

    fn secret(name: &str) -> Signal {
        Signal::Secret { name: name.into() }
    }

    fn owners(due: &[Due<&'static str>]) -> Vec<&'static str> {
        due.iter().map(|d| d.owner).collect()
    }

    #[test]
    fn defaults_are_ten_seconds_a_minute_and_five_minutes() {
        assert_eq!(Timing::default(), T);
    }

    #[test]
    fn one_signal_is_due_after_the_quiet_period() {
        let mut s = Schedule::new(T);
        assert_eq!(
            s.signal("web", 1_000, pod(0), None),
            Verdict::Pending { due: 11_000 }
        );
        assert_eq!(s.next_due(), Some(11_000));
        assert!(s.due(10_999).is_empty());
        let due = s.due(11_000);
        assert_eq!(
            due,
            vec![Due {
                owner: "web",
                pods: 1,
                secrets: BTreeSet::new(),
                attempts: 0
            }]
        );
        // Handed out once.
        assert!(s.due(20_000).is_empty());
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn a_burst_of_three_hundred_pods_is_one_restart() {
        let mut s = Schedule::new(T);
        for i in 0..300u64 {
            s.signal("web", 1_000 + i * 10, pod(0), None);
        }
        // Quiet after the last one (at 3_990).
        assert!(s.due(13_989).is_empty());
        let due = s.due(13_990);
        assert_eq!(owners(&due), ["web"]);
        assert_eq!(due[0].pods, 300);
        s.restarted(&"web", 13_990, 14_000);
        // The same pods again (their refresh after the restart): nothing.
        for i in 0..300u64 {
            assert_eq!(s.signal("web", 20_000 + i, pod(0), None), Verdict::Stale);
        }
        assert_eq!(s.next_due(), None);
        assert!(s.due(1_000_000).is_empty());
    }

    #[test]
    fn signals_that_keep_coming_wait_no_longer_than_the_maximum() {
        let mut s = Schedule::new(T);
        // One every 5 s: never quiet for 10 s.
        let mut now = 0;
        while now <= 60_000 {
            let v = s.signal("web", now, pod(0), None);
            if now < 55_000 {
                assert_eq!(v, Verdict::Pending { due: now + 10_000 });
            } else {
                assert_eq!(v, Verdict::Pending { due: 60_000 });
            }
            if now == 60_000 {
                assert_eq!(owners(&s.due(now)), ["web"]);
            }
            now += 5_000;
        }
    }

    #[test]
    fn the_maximum_wait_counts_from_the_first_signal() {
        let t = Timing {
            quiet: 10_000,
            max_wait: 12_000,
            min_interval: 300_000,
        };
        let mut s = Schedule::new(t);
        s.signal("web", 0, pod(0), None);
        assert_eq!(
            s.signal("web", 9_000, pod(0), None),
            Verdict::Pending { due: 12_000 }
        );
        assert!(s.due(11_999).is_empty());
        assert_eq!(owners(&s.due(12_000)), ["web"]);
    }

    #[test]
    fn a_newer_pod_within_the_minimum_interval_waits_for_its_end() {
        let mut s = Schedule::new(T);
        s.signal("web", 0, pod(0), None);
        s.due(10_000);
        s.restarted(&"web", 10_000, 10_000);
        // A pod created after the restart reports a rotation a minute later.
        assert_eq!(
            s.signal("web", 70_000, pod(15_000), None),
            Verdict::Pending { due: 310_000 }
        );
        assert_eq!(s.next_due(), Some(310_000));
        assert!(s.due(309_999).is_empty());
        let due = s.due(310_000);
        assert_eq!(owners(&due), ["web"]);
        assert_eq!(due[0].pods, 1);
    }

    #[test]
    fn after_the_minimum_interval_only_the_quiet_period_is_waited() {
        let mut s = Schedule::new(T);
        s.signal("web", 0, pod(0), None);
        s.due(10_000);
        s.restarted(&"web", 10_000, 10_000);
        assert_eq!(
            s.signal("web", 400_000, pod(20_000), None),
            Verdict::Pending { due: 410_000 }
        );
    }

    #[test]
    fn a_pod_created_in_the_restarts_own_second_counts_as_new() {
        let mut s = Schedule::new(T);
        s.signal("web", 0, pod(0), None);
        s.due(10_000);
        s.restarted(&"web", 10_000, 10_400);
        assert_eq!(s.signal("web", 20_000, pod(9_999), None), Verdict::Stale);
        assert!(matches!(
            s.signal("web", 20_000, pod(10_000), None),
            Verdict::Pending { .. }
        ));
    }

    #[test]
    fn a_secret_change_is_never_stale_and_is_named() {
        let mut s = Schedule::new(T);
        s.signal("web", 0, secret("db"), None);
        let due = s.due(10_000);
        assert_eq!(due[0].secrets, BTreeSet::from(["db".to_owned()]));
        assert_eq!(due[0].pods, 0);
        s.restarted(&"web", 10_000, 10_000);
        // Changed again: after the interval.
        assert_eq!(
            s.signal("web", 20_000, secret("db"), None),
            Verdict::Pending { due: 310_000 }
        );
    }

    #[test]
    fn at_most_a_few_secret_names_are_kept() {
        let mut s = Schedule::new(T);
        for i in 0..20 {
            s.signal("web", 0, secret(&format!("s{i:02}")), None);
        }
        let due = s.due(10_000);
        assert_eq!(due[0].secrets.len(), MAX_NAMES);
    }

    #[test]
    fn owners_are_independent() {
        let mut s = Schedule::new(T);
        s.signal("a", 0, pod(0), None);
        s.signal("b", 5_000, pod(0), None);
        assert_eq!(s.next_due(), Some(10_000));
        assert_eq!(owners(&s.due(10_000)), ["a"]);
        s.restarted(&"a", 10_000, 10_000);
        assert_eq!(s.next_due(), Some(15_000));
        assert_eq!(owners(&s.due(15_000)), ["b"]);
        // a's pods are stale; b is unaffected by a's restart.
        assert_eq!(s.signal("a", 16_000, pod(0), None), Verdict::Stale);
        s.restarted(&"b", 15_000, 15_000);
        assert_eq!(s.signal("b", 16_000, pod(1_000), None), Verdict::Stale);
    }

    #[test]
    fn the_restart_a_workload_shows_counts_as_ours() {
        // Another replica restarted it at 100 s (a failover): its old pods
        // are stale, a new one waits for that restart's interval.
        let mut s = Schedule::new(T);
        assert_eq!(
            s.signal("web", 120_000, pod(50_000), Some(100_000)),
            Verdict::Stale
        );
        assert_eq!(
            s.signal("web", 120_000, pod(101_000), Some(100_000)),
            Verdict::Pending { due: 400_000 }
        );
    }

    #[test]
    fn a_shown_restart_in_the_future_holds_no_longer_than_the_interval() {
        let mut s = Schedule::new(T);
        assert_eq!(
            s.signal("web", 10_000, secret("db"), Some(50_000)),
            Verdict::Pending { due: 310_000 }
        );
    }

    #[test]
    fn an_older_shown_restart_does_not_undo_a_newer_one() {
        let mut s = Schedule::new(T);
        s.signal("web", 0, pod(0), None);
        s.due(10_000);
        s.restarted(&"web", 10_000, 10_000);
        // A cached workload still showing an earlier restart.
        assert_eq!(
            s.signal("web", 20_000, pod(5_000), Some(1_000)),
            Verdict::Stale
        );
        assert_eq!(
            s.signal("web", 20_000, pod(12_000), Some(1_000)),
            Verdict::Pending { due: 310_000 }
        );
    }

    #[test]
    fn stale_signals_that_came_during_the_restart_are_dropped() {
        let mut s = Schedule::new(T);
        s.signal("web", 0, pod(0), None);
        assert_eq!(s.due(10_000).len(), 1);
        // The patch is on its way; more old pods report meanwhile.
        s.signal("web", 10_001, pod(0), None);
        assert_eq!(s.next_due(), None, "under way: not due again");
        s.restarted(&"web", 10_050, 10_000);
        assert_eq!(s.next_due(), None);
        assert!(s.due(1_000_000).is_empty());
    }

    #[test]
    fn a_secret_change_during_the_restart_is_kept_for_after_the_interval() {
        let mut s = Schedule::new(T);
        s.signal("web", 0, pod(0), None);
        s.due(10_000);
        s.signal("web", 10_001, secret("db"), None);
        s.restarted(&"web", 10_050, 10_000);
        assert_eq!(s.next_due(), Some(310_050));
        let due = s.due(310_050);
        assert_eq!(due[0].secrets.len(), 1);
        assert_eq!(due[0].pods, 0);
    }

    #[test]
    fn a_failed_restart_is_tried_again_with_back_off_then_dropped() {
        let mut s = Schedule::new(T);
        s.signal("web", 0, pod(0), None);
        let due = s.due(10_000).remove(0);
        assert!(s.failed(due, 10_000));
        // 10 s doubled.
        assert_eq!(s.next_due(), Some(30_000));
        let due = s.due(30_000).remove(0);
        assert_eq!((due.pods, due.attempts), (1, 1));
        assert!(s.failed(due, 30_000));
        assert_eq!(s.next_due(), Some(70_000));
        let due = s.due(70_000).remove(0);
        assert_eq!(due.attempts, 2);
        assert!(!s.failed(due, 70_000));
        assert_eq!(s.next_due(), None);
        // Not restarted: a new signal is heard at once.
        assert_eq!(
            s.signal("web", 80_000, pod(0), None),
            Verdict::Pending { due: 90_000 }
        );
    }

    #[test]
    fn a_failure_keeps_the_signals_that_came_meanwhile() {
        let mut s = Schedule::new(T);
        s.signal("web", 0, pod(0), None);
        let due = s.due(10_000).remove(0);
        s.signal("web", 10_001, secret("db"), None);
        assert!(s.failed(due, 10_002));
        let due = s.due(30_002).remove(0);
        assert_eq!(due.pods, 1);
        assert_eq!(due.secrets.len(), 1);
    }

    #[test]
    fn the_back_off_is_at_most_the_minimum_interval() {
        let t = Timing {
            quiet: 10_000,
            max_wait: 60_000,
            min_interval: 15_000,
        };
        let mut s = Schedule::new(t);
        s.signal("web", 0, pod(0), None);
        let due = s.due(10_000).remove(0);
        s.failed(due, 10_000);
        assert_eq!(s.next_due(), Some(25_000));
    }

    #[test]
    fn a_forgotten_owner_waits_for_nothing() {
        let mut s = Schedule::new(T);
        s.signal("web", 0, pod(0), None);
        s.signal("db", 0, pod(0), None);
        s.forget(&"web");
        assert_eq!(owners(&s.due(10_000)), ["db"]);
        // Reports on an owner that is gone do nothing.
        s.restarted(&"web", 10_000, 10_000);
        assert!(!s.failed(
            Due {
                owner: "web",
                pods: 1,
                secrets: BTreeSet::new(),
                attempts: 0
            },
            10_000
        ));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn pruning_keeps_what_waits_and_what_is_in_its_interval() {
        let mut s = Schedule::new(T);
        s.signal("restarted", 0, pod(0), None);
        s.signal("under-way", 0, pod(0), None);
        assert_eq!(s.due(10_000).len(), 2);
        s.restarted(&"restarted", 10_000, 10_000);
        s.signal("waiting", 20_000, pod(0), None);
        // A stale signal leaves an owner with nothing to do but its interval
        // (from the restart it shows, at 5 s).
        assert_eq!(s.signal("old", 20_000, pod(0), Some(5_000)), Verdict::Stale);
        s.prune(304_999);
        assert_eq!(s.len(), 4);
        s.prune(310_000);
        assert_eq!(s.len(), 2, "under-way and waiting are kept");
        assert_eq!(owners(&s.due(310_000)), ["waiting"]);
        assert!(!s.is_empty());
    }

    #[test]
    fn next_due_is_the_earliest_owner() {
        let mut s = Schedule::new(T);
        assert_eq!(s.next_due(), None);
        s.signal("late", 5_000, pod(0), None);
        s.signal("early", 1_000, pod(0), None);
        assert_eq!(s.next_due(), Some(11_000));
    }

    #[test]
    fn times_near_the_end_of_the_clock_do_not_overflow() {
        let mut s = Schedule::new(Timing {
            quiet: u64::MAX,
            max_wait: u64::MAX,
            min_interval: u64::MAX,
        });
        s.signal("web", u64::MAX - 1, secret("db"), Some(u64::MAX));
        assert_eq!(s.next_due(), Some(u64::MAX));
    }
}
