//! A per-API rate budget for the whole node, so a wave of mounts never bursts
//! past what AWS allows an account (which many nodes share). First mounts go
//! before refreshes: a pod waits on its mount, a refresh can wait a little.
//! A caller with another way to the same values asks without waiting
//! (`try_admit`, `has_room`) and takes the other way when this one is spent:
//! Secrets Manager batches spill over to GetSecretValue.
//!
//! Hand-written rather than `governor`: waiters need two priorities, which a
//! plain token bucket does not give.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Who is waiting for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Refresh,
    FirstMount,
}

/// Calls per second allowed for one API, with a burst of one second's worth
/// (a default budget bursts to the account's quota instead).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
}

/// `API=RATE`, e.g. `GetParameters=10`: a command-line override.
#[derive(Debug, Clone, PartialEq)]
pub struct RateSetting {
    pub api: String,
    pub rate: Rate,
}

impl FromStr for RateSetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (api, rate) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected API=CALLS_PER_SECOND"))?;
        if !DEFAULT_BUDGETS.iter().any(|d| d.api == api) {
            let known: Vec<&str> = DEFAULT_BUDGETS.iter().map(|d| d.api).collect();
            return Err(format!(
                "{api:?}: not an API with a budget (one of {})",
                known.join(", ")
            ));
        }
        let per_second: f64 = rate
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r > 0.0)
            .ok_or_else(|| format!("{rate:?}: calls per second must be a positive number"))?;
        Ok(RateSetting {
            api: api.to_owned(),
            rate: Rate { per_second },
        })
    }
}

/// The default budget of one API on a node.
#[derive(Debug, Clone, Copy)]
pub struct DefaultBudget {
    pub api: &'static str,
    /// The node's share of the account's quota, in calls per second.
    pub per_second: f64,
    /// One second of the account's quota: a node that was quiet may spend
    /// that much at once (a wave of first mounts is not paced); it paces
    /// only past what the account itself allows in a second, and refills at
    /// its share.
    pub burst: f64,
}

/// The APIs a node calls per object (the only ones with a budget), and their
/// default budgets. AWS allows an account and region GetSecretValue
/// 10,000/s, BatchGetSecretValue 100/s and GetParameters 40/s; a node takes a
/// tenth (GetParameters a quarter: ten names a call, and pods mount in
/// waves). (STS is not budgeted: one call per identity key is in flight at a
/// time.)
pub const DEFAULT_BUDGETS: [DefaultBudget; 3] = [
    DefaultBudget {
        api: "GetSecretValue",
        per_second: 1000.0,
        burst: 10_000.0,
    },
    DefaultBudget {
        api: "BatchGetSecretValue",
        per_second: 10.0,
        burst: 100.0,
    },
    DefaultBudget {
        api: "GetParameters",
        per_second: 10.0,
        burst: 40.0,
    },
];

/// The controller's default budgets: one process for the whole cluster
/// (not one of many nodes), so half the account's quota, the other half
/// left to the nodes and anything else in the account. At a tenth (a
/// node's share) ten thousand ExternalSecrets took seven minutes to sync
/// and could not all refresh within a minute.
pub const CONTROLLER_BUDGETS: [DefaultBudget; 3] = [
    DefaultBudget {
        api: "GetSecretValue",
        per_second: 5000.0,
        burst: 10_000.0,
    },
    DefaultBudget {
        api: "BatchGetSecretValue",
        per_second: 50.0,
        burst: 100.0,
    },
    DefaultBudget {
        api: "GetParameters",
        per_second: 20.0,
        burst: 40.0,
    },
];

/// The token bucket of one API. Pure: time comes in as an argument.
#[derive(Debug, Clone)]
struct Bucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
    /// First mounts waiting for a token; refreshes wait until none is.
    first_mounts_waiting: usize,
}

impl Bucket {
    fn new(rate: Rate, now: Instant) -> Self {
        Self::with_burst(rate, rate.per_second, now)
    }

    fn with_burst(rate: Rate, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        Bucket {
            per_second: rate.per_second,
            burst,
            tokens: burst,
            updated: now,
            first_mounts_waiting: 0,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.updated = now;
    }

    /// Takes a token, or says how long to wait before asking again.
    fn take(&mut self, now: Instant, priority: Priority) -> Result<(), Duration> {
        self.refill(now);
        let yield_to_mounts = priority == Priority::Refresh && self.first_mounts_waiting > 0;
        if self.tokens >= 1.0 && !yield_to_mounts {
            self.tokens -= 1.0;
            return Ok(());
        }
        let missing = (1.0 - self.tokens).max(0.0);
        let wait = Duration::from_secs_f64(missing / self.per_second);
        // A yielding refresh looks again soon: the mounts may be done.
        Err(wait.max(Duration::from_millis(1)))
    }
}

/// The node's budgets, one bucket per API.
#[derive(Debug)]
pub struct RateBudget {
    buckets: HashMap<&'static str, Mutex<Bucket>>,
}

impl RateBudget {
    /// The default rates and bursts, with `overrides` applied (an
    /// overridden API bursts one second of its own rate).
    pub fn new(overrides: &[RateSetting]) -> Self {
        Self::with_defaults(&DEFAULT_BUDGETS, overrides)
    }

    /// As [`RateBudget::new`], from other default budgets (the
    /// controller's).
    pub fn with_defaults(defaults: &[DefaultBudget], overrides: &[RateSetting]) -> Self {
        let now = Instant::now();
        let buckets = defaults
            .iter()
            .map(|d| {
                let bucket = match overrides.iter().rev().find(|o| o.api == d.api) {
                    Some(o) => Bucket::new(o.rate, now),
                    None => Bucket::with_burst(
                        Rate {
                            per_second: d.per_second,
                        },
                        d.burst,
                        now,
                    ),
                };
                (d.api, Mutex::new(bucket))
            })
            .collect();
        RateBudget { buckets }
    }

    /// Takes a token for `api` if one is there now (an API without a budget
    /// always has one); never waits.
    pub fn try_admit(&self, api: &str, priority: Priority) -> bool {
        let Some(bucket) = self.buckets.get(api) else {
            return true;
        };
        let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
        b.take(Instant::now(), priority).is_ok()
    }

    /// Whether `n` calls of `api` would pass now without waiting.
    pub fn has_room(&self, api: &str, n: usize) -> bool {
        let Some(bucket) = self.buckets.get(api) else {
            return true;
        };
        let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
        b.refill(Instant::now());
        b.tokens >= n as f64
    }

    /// Waits until `api` may be called. APIs without a budget pass at once.
    pub async fn admit(&self, api: &str, priority: Priority) {
        let Some(bucket) = self.buckets.get(api) else {
            return;
        };
        let lock = || bucket.lock().unwrap_or_else(|p| p.into_inner());
        let mut counted = false;
        loop {
            let wait = {
                let mut b = lock();
                match b.take(Instant::now(), priority) {
                    Ok(()) => {
                        if counted {
                            b.first_mounts_waiting -= 1;
                        }
                        return;
                    }
                    Err(wait) => {
                        if priority == Priority::FirstMount && !counted {
                            b.first_mounts_waiting += 1;
                            counted = true;
                        }
                        wait
                    }
                }
            };
            // Dropped while waiting (the publish timed out): uncount.
            let guard = Uncount {
                bucket,
                active: counted,
            };
            tokio::time::sleep(wait).await;
            std::mem::forget(guard);
        }
    }
}

/// Takes a cancelled first mount out of the waiting count.
struct Uncount<'a> {
    bucket: &'a Mutex<Bucket>,
    active: bool,
}

impl Drop for Uncount<'_> {
    fn drop(&mut self) {
        if self.active {
            let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
            b.first_mounts_waiting = b.first_mounts_waiting.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_burst_of_one_second_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(Rate { per_second: 10.0 }, t0);
        for _ in 0..10 {
            assert_eq!(b.take(t0, Priority::FirstMount), Ok(()));
        }
        let wait = b.take(t0, Priority::FirstMount).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(b.take(at(t0, 50), Priority::FirstMount).is_err());
        assert_eq!(b.take(at(t0, 100), Priority::FirstMount), Ok(()));
        // Idle time refills, never past the burst.
        let later = at(t0, 60_000);
        for _ in 0..10 {
            assert_eq!(b.take(later, Priority::Refresh), Ok(()));
        }
        assert!(b.take(later, Priority::Refresh).is_err());
    }

    #[test]
    fn refreshes_yield_to_waiting_first_mounts() {
        let t0 = Instant::now();
        let mut b = Bucket::new(Rate { per_second: 2.0 }, t0);
        b.first_mounts_waiting = 1;
        assert!(
            b.take(t0, Priority::Refresh).is_err(),
            "tokens left, but a mount waits"
        );
        assert_eq!(b.take(t0, Priority::FirstMount), Ok(()));
        b.first_mounts_waiting = 0;
        assert_eq!(b.take(t0, Priority::Refresh), Ok(()));
    }

    #[test]
    fn the_controller_takes_half_the_account_and_a_node_a_tenth() {
        let node = RateBudget::new(&[]);
        let controller = RateBudget::with_defaults(&CONTROLLER_BUDGETS, &[]);
        // Bursts: one second of the account's quota for both.
        assert!(controller.has_room("BatchGetSecretValue", 100));
        assert!(!controller.has_room("BatchGetSecretValue", 101));
        assert!(controller.has_room("GetParameters", 40));
        assert!(!controller.has_room("GetParameters", 41));
        // Rates: what refills a second.
        let rate = |b: &RateBudget, api: &str| {
            b.buckets[api]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .per_second
        };
        assert_eq!(rate(&controller, "BatchGetSecretValue"), 50.0);
        assert_eq!(rate(&controller, "GetParameters"), 20.0);
        assert_eq!(rate(&node, "BatchGetSecretValue"), 10.0);
        assert_eq!(rate(&node, "GetParameters"), 10.0);
        // An override wins, and bursts one second of itself.
        let set =
            RateBudget::with_defaults(&CONTROLLER_BUDGETS, &["GetParameters=5".parse().unwrap()]);
        assert_eq!(rate(&set, "GetParameters"), 5.0);
        assert!(set.has_room("GetParameters", 5) && !set.has_room("GetParameters", 6));
    }

    #[test]
    fn slow_rates_still_allow_one_call() {
        let t0 = Instant::now();
        let mut b = Bucket::new(Rate { per_second: 0.5 }, t0);
        assert_eq!(b.take(t0, Priority::FirstMount), Ok(()));
        assert_eq!(
            b.take(t0, Priority::FirstMount).unwrap_err(),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn settings_parse_with_clear_errors() {
        let s: RateSetting = "GetParameters=2.5".parse().unwrap();
        assert_eq!(s.api, "GetParameters");
        assert_eq!(s.rate.per_second, 2.5);
        assert!(
            "GetParameter=1"
                .parse::<RateSetting>()
                .unwrap_err()
                .contains("not an API")
        );
        for bad in [
            "GetParameters",
            "GetParameters=0",
            "GetParameters=-1",
            "GetParameters=x",
            "GetParameters=inf",
        ] {
            assert!(bad.parse::<RateSetting>().is_err(), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn admit_paces_calls_and_serves_mounts_first() {
        let budget = std::sync::Arc::new(RateBudget::new(&[RateSetting {
            api: "GetParameters".into(),
            rate: Rate { per_second: 1.0 },
        }]));
        budget.admit("GetParameters", Priority::FirstMount).await;
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let refresh = {
            let (budget, order) = (budget.clone(), order.clone());
            tokio::spawn(async move {
                budget.admit("GetParameters", Priority::Refresh).await;
                order.lock().unwrap().push("refresh");
            })
        };
        tokio::task::yield_now().await;
        let mount = {
            let (budget, order) = (budget.clone(), order.clone());
            tokio::spawn(async move {
                budget.admit("GetParameters", Priority::FirstMount).await;
                order.lock().unwrap().push("mount");
            })
        };
        let started = Instant::now();
        mount.await.unwrap();
        refresh.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["mount", "refresh"]);
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "one call a second"
        );
        // An API without a budget is never held.
        budget.admit("DescribeSecret", Priority::Refresh).await;
    }

    #[tokio::test(start_paused = true)]
    async fn try_admit_never_waits_and_has_room_counts_tokens() {
        let budget = RateBudget::new(&[RateSetting {
            api: "BatchGetSecretValue".into(),
            rate: Rate { per_second: 2.0 },
        }]);
        assert!(budget.try_admit("BatchGetSecretValue", Priority::FirstMount));
        assert!(budget.try_admit("BatchGetSecretValue", Priority::FirstMount));
        assert!(!budget.try_admit("BatchGetSecretValue", Priority::FirstMount));
        assert!(!budget.has_room("BatchGetSecretValue", 1));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(budget.has_room("BatchGetSecretValue", 1));
        assert!(!budget.has_room("BatchGetSecretValue", 2));
        // A default budget bursts to a second of the account's quota.
        assert!(budget.has_room("GetSecretValue", 10_000));
        assert!(!budget.has_room("GetSecretValue", 10_001));
        assert!(budget.has_room("GetParameters", 40));
        assert!(!budget.has_room("GetParameters", 41));
        for _ in 0..40 {
            assert!(budget.try_admit("GetParameters", Priority::FirstMount));
        }
        assert!(!budget.try_admit("GetParameters", Priority::FirstMount));
        // ... and refills at the node's share (10/s).
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(budget.try_admit("GetParameters", Priority::FirstMount));
        assert!(!budget.try_admit("GetParameters", Priority::FirstMount));
        assert!(budget.try_admit("DescribeSecret", Priority::Refresh));
    }
}
