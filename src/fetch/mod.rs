//! Step "fetch": a [`MountPlan`] and credentials -> one value per object.
//! Secrets Manager current versions go through `BatchGetSecretValue` (20 ids
//! a call), pinned versions through `GetSecretValue`; SSM parameters through
//! `GetParameters` (10 names a call). The failover region is asked only for
//! objects whose primary fetch failed for a reason other than a 4xx.
//! Every call goes through the node's [`SharedValues`] (one call in flight
//! per object, batches across pods, values reused within an interval) and
//! the node's [`RateBudget`].

mod budget;
mod failure;
mod listing;
mod secretsmanager;
mod shared;
mod ssm;
mod tags;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

pub use budget::{
    CONTROLLER_BUDGETS, DEFAULT_BUDGETS, DefaultBudget, Priority, RateBudget, RateSetting,
};
pub use failure::{FailureKind, ObjectFailure};
pub use listing::Listing;
pub use shared::{BATCH_WINDOW, BatchWindow, LONGEST_SHARED, SharedValues, Sharing};

use crate::aws::AwsIdentity;
use crate::metrics::Metrics;
use crate::secret::SecretBytes;
use crate::spc::{MountPlan, ObjectRef, ObjectType};

/// One fetched value with the version AWS reported for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedValue {
    pub bytes: SecretBytes,
    pub version: Option<String>,
    /// Secrets Manager's stages of the version; a parameter's label when
    /// one was asked for (for the rotation manifest).
    pub stages: Vec<String>,
    /// When AWS made the version (Secrets Manager's CreatedDate, a
    /// parameter's LastModifiedDate), milliseconds since the Unix epoch.
    pub created_ms: Option<u64>,
}

/// Milliseconds since the Unix epoch of an AWS time, if it is after it.
pub fn epoch_ms(t: Option<&aws_sdk_secretsmanager::primitives::DateTime>) -> Option<u64> {
    t.and_then(|t| t.to_millis().ok())
        .and_then(|ms| u64::try_from(ms).ok())
}

/// Objects that could not be fetched, each with the AWS error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    pub failures: Vec<ObjectFailure>,
}

impl FetchError {
    /// The kind that decides the gRPC code: the first failure's.
    pub fn kind(&self) -> FailureKind {
        self.failures
            .first()
            .map(|f| f.kind())
            .unwrap_or(FailureKind::Unavailable)
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 5;
        write!(f, "failed to fetch {} object(s): ", self.failures.len())?;
        for (i, failure) in self.failures.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{failure}")?;
        }
        if self.failures.len() > SHOWN {
            write!(f, "; and {} more", self.failures.len() - SHOWN)?;
        }
        Ok(())
    }
}

impl std::error::Error for FetchError {}

/// A request for one object in one region, tagged with its place in the plan.
#[derive(Debug, Clone)]
pub(crate) struct Wanted<'a> {
    pub index: usize,
    pub object: &'a ObjectRef,
    /// Added only to fill a batch call's room (see `shared`): never worth
    /// a call of its own.
    pub fill: bool,
}

pub(crate) type Outcome = Result<FetchedValue, ObjectFailure>;

/// What every AWS call of a fetch goes through: the node's rate budget
/// (waiting with the fetch's priority), then the call counter.
pub(crate) struct Calls<'a> {
    pub metrics: &'a Metrics,
    pub budget: &'a RateBudget,
    pub priority: Priority,
}

impl Calls<'_> {
    pub async fn admit(&self, api: &'static str) {
        self.budget.admit(api, self.priority).await;
    }

    /// A token for `api` now, or false; never waits.
    pub fn try_admit(&self, api: &'static str) -> bool {
        self.budget.try_admit(api, self.priority)
    }

    /// Whether `n` calls of `api` would pass now.
    pub fn has_room(&self, api: &'static str, n: usize) -> bool {
        self.budget.has_room(api, n)
    }

    pub fn record(&self, api: &'static str, outcome: &'static str) {
        self.metrics.aws_call(api, outcome);
    }
}

/// One call's answer (a listing page, a tag read), counted in the call
/// metric by outcome; a failure names `what`.
pub(crate) fn recorded<T, E, R>(
    calls: &Calls<'_>,
    api: &'static str,
    what: &str,
    region: &str,
    answer: Result<T, aws_sdk_secretsmanager::error::SdkError<E, R>>,
) -> Result<T, ObjectFailure>
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata,
    R: crate::aws::HttpStatus,
{
    match answer {
        Ok(out) => {
            calls.record(api, "ok");
            Ok(out)
        }
        Err(e) => {
            let failure = ObjectFailure::from_sdk(what, region, &e);
            calls.record(api, failure.kind().label());
            Err(failure)
        }
    }
}

/// Fetches values from AWS with the SDK configuration it was built with
/// (endpoints, retries, timeouts come from the standard AWS settings).
#[derive(Clone)]
pub struct Fetcher {
    base: SdkConfig,
    shared: Arc<SharedValues>,
}

impl Fetcher {
    pub fn new(base: SdkConfig, metrics: Arc<Metrics>, budget: Arc<RateBudget>) -> Self {
        Self::with_window(base, metrics, budget, BATCH_WINDOW)
    }

    /// A fetcher whose batches wait as `window` says for more requests:
    /// the controller, whose syncs wait for no pod, trades a little latency
    /// for fewer calls.
    pub fn with_window(
        base: SdkConfig,
        metrics: Arc<Metrics>,
        budget: Arc<RateBudget>,
        window: BatchWindow,
    ) -> Self {
        Fetcher {
            base,
            shared: Arc::new(SharedValues::new(budget, metrics, window)),
        }
    }

    /// Values held for sharing now.
    pub fn shared_values_held(&self) -> usize {
        self.shared.held()
    }

    /// Forgets the shared values of objects that changed in AWS (`changed`
    /// says which: service, region, name as asked), so that the next fetch
    /// of each reads it afresh.
    pub fn forget_changed(&self, changed: impl Fn(ObjectType, &str, &str) -> bool) -> usize {
        self.shared.forget(changed)
    }

    /// Drops shared values that are past their time (see
    /// [`shared::LONGEST_SHARED`]).
    pub fn sweep_shared_values(&self) {
        self.shared.sweep_now()
    }

    /// Fetches the objects of `plan`; values are in plan order. `known`
    /// holds, per object, a value that cannot have changed (an object pinned
    /// to a version id, fetched before): those cost no call. `sharing` says
    /// with which other fetches of the node values may be shared.
    pub async fn fetch(
        &self,
        plan: &MountPlan,
        identity: &AwsIdentity,
        known: &[Option<FetchedValue>],
        sharing: &Sharing,
    ) -> Result<Vec<FetchedValue>, FetchError> {
        let outcomes = self.fetch_each(plan, identity, known, sharing).await;
        let mut values = Vec::with_capacity(outcomes.len());
        let mut failures = Vec::new();
        for outcome in outcomes {
            match outcome {
                Ok(v) => values.push(v),
                Err(f) => failures.push(f),
            }
        }
        if failures.is_empty() {
            Ok(values)
        } else {
            Err(FetchError { failures })
        }
    }

    /// [`Fetcher::fetch`], one outcome per object of `plan`: for a caller
    /// that goes on without some objects (the controller's deletion
    /// policies skip a secret that is gone).
    pub async fn fetch_each(
        &self,
        plan: &MountPlan,
        identity: &AwsIdentity,
        known: &[Option<FetchedValue>],
        sharing: &Sharing,
    ) -> Vec<Result<FetchedValue, ObjectFailure>> {
        let known_at = |i: usize| known.get(i).and_then(Option::as_ref);
        let primary: Vec<Wanted<'_>> = plan
            .objects
            .iter()
            .enumerate()
            .filter(|(index, _)| known_at(*index).is_none())
            .map(|(index, o)| Wanted {
                index,
                object: &o.primary,
                fill: false,
            })
            .collect();
        let fetched = self
            .fetch_region(plan, &plan.region, &primary, identity, sharing)
            .await;
        let mut outcomes: Vec<Outcome> = (0..plan.objects.len())
            .map(|i| match known_at(i) {
                Some(v) => Ok(v.clone()),
                None => Err(ObjectFailure::not_requested(
                    plan.objects[i].name(),
                    &plan.region,
                )),
            })
            .collect();
        for (wanted, outcome) in primary.iter().zip(fetched) {
            outcomes[wanted.index] = outcome;
        }

        if let Some(failover_region) = &plan.failover_region {
            let retry: Vec<Wanted<'_>> = outcomes
                .iter()
                .enumerate()
                .filter(|(_, r)| matches!(r, Err(f) if !f.is_client_error()))
                .filter_map(|(index, _)| {
                    plan.objects[index].failover.as_ref().map(|object| Wanted {
                        index,
                        object,
                        fill: false,
                    })
                })
                .collect();
            if !retry.is_empty() {
                let second = self
                    .fetch_region(plan, failover_region, &retry, identity, sharing)
                    .await;
                for (wanted, outcome) in retry.iter().zip(second) {
                    // When both fail, the primary's error leads (it names the
                    // region users look at first) and carries the failover's.
                    match outcome {
                        Ok(v) => outcomes[wanted.index] = Ok(v),
                        Err(second) => {
                            if let Err(first) = &mut outcomes[wanted.index] {
                                first.failover = Some(Box::new(second));
                            }
                        }
                    }
                }
            }
        }

        outcomes
    }

    /// The SDK configuration for calls in `region` as `identity`.
    fn config_for(&self, region: &str, identity: &AwsIdentity) -> SdkConfig {
        let mut config = self
            .base
            .to_builder()
            .region(Region::new(region.to_owned()));
        if let AwsIdentity::Pod(c) = identity {
            config = config.credentials_provider(SharedCredentialsProvider::new(c.clone()));
        }
        config.build()
    }

    /// The names of the objects a listing finds (`dataFrom.find` of the
    /// controller): Secrets Manager's ListSecrets, or Parameter Store's
    /// GetParametersByPath (DescribeParameters when tags are asked for); at
    /// most `listing.cap` names.
    pub async fn list(
        &self,
        region: &str,
        identity: &AwsIdentity,
        listing: &Listing,
    ) -> Result<Vec<String>, FetchError> {
        let config = self.config_for(region, identity);
        let calls = Calls {
            metrics: self.shared.metrics(),
            budget: self.shared.budget(),
            priority: Priority::Refresh,
        };
        listing::names(&config, region, listing, &calls)
            .await
            .map_err(|f| FetchError { failures: vec![f] })
    }

    /// The tags of each of `objects` (full names, each of its service), in
    /// the same order: `remoteRef.metadataPolicy: Fetch` of the controller.
    /// One call an object (Secrets Manager's DescribeSecret, Parameter
    /// Store's ListTagsForResource), all at once; one outcome an object.
    pub async fn tags(
        &self,
        region: &str,
        identity: &AwsIdentity,
        objects: &[(ObjectType, &str)],
    ) -> Vec<Result<BTreeMap<String, String>, ObjectFailure>> {
        let config = self.config_for(region, identity);
        let calls = Calls {
            metrics: self.shared.metrics(),
            budget: self.shared.budget(),
            priority: Priority::Refresh,
        };
        futures::future::join_all(
            objects
                .iter()
                .map(|(service, name)| tags::tags(&config, region, *service, name, &calls)),
        )
        .await
    }

    /// Fetches `wanted` in one region: one outcome per entry of `wanted`,
    /// in the same order.
    async fn fetch_region(
        &self,
        plan: &MountPlan,
        region: &str,
        wanted: &[Wanted<'_>],
        identity: &AwsIdentity,
        sharing: &Sharing,
    ) -> Vec<Outcome> {
        let is_sm =
            |w: &Wanted<'_>| plan.objects[w.index].object_type == ObjectType::SecretsManager;
        let sm: Vec<&ObjectRef> = wanted
            .iter()
            .filter(|w| is_sm(w))
            .map(|w| w.object)
            .collect();
        let ssm: Vec<&ObjectRef> = wanted
            .iter()
            .filter(|w| !is_sm(w))
            .map(|w| w.object)
            .collect();
        let config = self.config_for(region, identity);
        let (sm_out, ssm_out) = tokio::join!(
            self.shared
                .get(&config, region, ObjectType::SecretsManager, &sm, sharing),
            self.shared
                .get(&config, region, ObjectType::SsmParameter, &ssm, sharing),
        );
        // Each service answers in its own request order; merge back.
        let (mut sm_out, mut ssm_out) = (sm_out.into_iter(), ssm_out.into_iter());
        wanted
            .iter()
            .map(|w| {
                let next = if is_sm(w) {
                    sm_out.next()
                } else {
                    ssm_out.next()
                };
                next.unwrap_or_else(|| Err(ObjectFailure::not_requested(&w.object.name, region)))
            })
            .collect()
    }
}
