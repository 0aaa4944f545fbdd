//! Sync slots shared fairly between namespaces. At most `total` syncs run
//! at once and at most `per_namespace` of one namespace, so a tenant whose
//! syncs hang (a large `find`, an AWS that times out) always leaves the
//! rest to others; and a freed slot goes to the namespaces waiting in
//! turn, so a tenant with a thousand ExternalSecrets queued delays another
//! namespace's sync by one slot's turn, not by its whole queue. A namespace
//! alone uses up to `per_namespace` slots at once: its syncs of one store
//! then gather into few AWS batches.
//!
//! Syncs of new or changed ExternalSecrets are urgent: in their namespace
//! they go before its periodic refreshes, and a namespace with an urgent
//! sync waiting gets the next freed slot before namespaces with only
//! refreshes waiting (External Secrets Operator's users see new
//! ExternalSecrets wait behind thousands of refreshes).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

pub struct Slots {
    state: Arc<Mutex<State>>,
}

struct State {
    free: usize,
    per_namespace: usize,
    /// Slots held per namespace (entries removed at zero).
    running: HashMap<String, usize>,
    /// Waiters per namespace, in the order they asked.
    waiting: HashMap<String, Waiting>,
    /// Namespaces with waiters, in turn.
    turn: VecDeque<String>,
}

/// One namespace's waiters: urgent ones first.
#[derive(Default)]
struct Waiting {
    urgent: VecDeque<oneshot::Sender<Slot>>,
    periodic: VecDeque<oneshot::Sender<Slot>>,
}

impl Waiting {
    fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.periodic.is_empty()
    }

    fn pop(&mut self) -> Option<oneshot::Sender<Slot>> {
        self.urgent
            .pop_front()
            .or_else(|| self.periodic.pop_front())
    }
}

/// A running sync's slot; released (and handed on) when dropped.
pub struct Slot {
    namespace: String,
    state: Arc<Mutex<State>>,
    /// False for a slot that was never handed out (nothing to release).
    armed: bool,
}

impl Slots {
    pub fn new(total: usize, per_namespace: usize) -> Self {
        let total = total.max(1);
        Slots {
            state: Arc::new(Mutex::new(State {
                free: total,
                per_namespace: per_namespace.clamp(1, total),
                running: HashMap::new(),
                waiting: HashMap::new(),
                turn: VecDeque::new(),
            })),
        }
    }

    /// A slot for a sync of `namespace` (`urgent`: of a new or changed
    /// ExternalSecret): at once when one is free and the namespace is under
    /// its share with no one of it waiting ahead, else when its turn comes.
    pub async fn take(&self, namespace: &str, urgent: bool) -> Slot {
        let receiver = {
            let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let s = &mut *guard;
            let running = s.running.get(namespace).copied().unwrap_or(0);
            let ahead = s.waiting.get(namespace).is_some_and(|w| match urgent {
                true => !w.urgent.is_empty(),
                false => !w.is_empty(),
            });
            if s.free > 0 && running < s.per_namespace && !ahead {
                s.free -= 1;
                *s.running.entry(namespace.to_owned()).or_default() += 1;
                return Slot {
                    namespace: namespace.to_owned(),
                    state: self.state.clone(),
                    armed: true,
                };
            }
            let (tx, rx) = oneshot::channel();
            let queue = s.waiting.entry(namespace.to_owned()).or_default();
            let first = queue.is_empty();
            match urgent {
                true => queue.urgent.push_back(tx),
                false => queue.periodic.push_back(tx),
            }
            if first {
                s.turn.push_back(namespace.to_owned());
            }
            rx
        };
        receiver.await.expect("a waiter is only dropped by itself")
    }
}

impl State {
    /// Hands a freed slot to the next namespace in turn that is under its
    /// share (those with an urgent sync waiting first), else keeps it free.
    fn hand_on(&mut self, state: &Arc<Mutex<State>>) {
        self.hand_on_pass(state, true);
        self.hand_on_pass(state, false);
    }

    /// One round of the turn; `urgent_only` serves only namespaces with an
    /// urgent waiter.
    fn hand_on_pass(&mut self, state: &Arc<Mutex<State>>, urgent_only: bool) {
        let mut passes = self.turn.len();
        while passes > 0 && self.free > 0 {
            passes -= 1;
            let Some(namespace) = self.turn.pop_front() else {
                break;
            };
            let running = self.running.get(&namespace).copied().unwrap_or(0);
            let queue = self.waiting.get_mut(&namespace).expect("in turn");
            if running >= self.per_namespace || (urgent_only && queue.urgent.is_empty()) {
                // Its share is taken (its turn waits for one of its own),
                // or nothing of it is urgent in this round.
                self.turn.push_back(namespace);
                continue;
            }
            while let Some(tx) = queue.pop() {
                // Armed before it travels: if its waiter is dropped with it
                // still in the channel, its drop hands it on again.
                let slot = Slot {
                    namespace: namespace.clone(),
                    state: state.clone(),
                    armed: true,
                };
                match tx.send(slot) {
                    Ok(()) => {
                        self.free -= 1;
                        *self.running.entry(namespace.clone()).or_default() += 1;
                        break;
                    }
                    // The waiter is gone (its sync was cancelled): next.
                    Err(mut slot) => slot.armed = false,
                }
            }
            if queue.is_empty() {
                self.waiting.remove(&namespace);
            } else {
                self.turn.push_back(namespace);
                passes = self.turn.len();
            }
        }
    }

    fn release(&mut self, namespace: &str) {
        if let Some(n) = self.running.get_mut(namespace) {
            *n -= 1;
            if *n == 0 {
                self.running.remove(namespace);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let state = self.state.clone();
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.free += 1;
        s.release(&self.namespace);
        s.hand_on(&state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn within_a_second(slots: &Slots, namespace: &str) -> Option<Slot> {
        tokio::time::timeout(Duration::from_secs(1), slots.take(namespace, false))
            .await
            .ok()
    }

    #[tokio::test]
    async fn one_namespace_cannot_take_every_slot() {
        let slots = Arc::new(Slots::new(8, 6));
        // A tenant with 100 syncs that never finish.
        let mut held = Vec::new();
        for _ in 0..100 {
            let slots = slots.clone();
            held.push(tokio::spawn(async move {
                let _slot = slots.take("noisy", false).await;
                std::future::pending::<()>().await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The others still get the two slots it cannot have.
        let a = within_a_second(&slots, "quiet").await;
        let b = within_a_second(&slots, "third").await;
        assert!(a.is_some() && b.is_some(), "the noisy namespace took them");
        for h in held {
            h.abort();
        }
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_namespaces_in_turn() {
        let slots = Arc::new(Slots::new(2, 2));
        let first = slots.take("noisy", false).await;
        let second = slots.take("noisy", false).await;
        // 50 more of the noisy namespace queue before the quiet one asks.
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..50 {
            let (slots, order) = (slots.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _slot = slots.take("noisy", false).await;
                order.lock().unwrap().push(format!("noisy-{i}"));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }));
            tokio::task::yield_now().await;
        }
        let (s, o) = (slots.clone(), order.clone());
        let quiet = tokio::spawn(async move {
            let _slot = s.take("quiet", false).await;
            o.lock().unwrap().push("quiet".into());
        });
        tokio::task::yield_now().await;
        drop(first);
        drop(second);
        quiet.await.unwrap();
        for w in waiters {
            w.await.unwrap();
        }
        let order = order.lock().unwrap();
        let at = order.iter().position(|o| o == "quiet").unwrap();
        assert!(
            at <= 2,
            "the quiet namespace waited its turn only: {order:?}"
        );
        assert_eq!(order.len(), 51, "every waiter ran");
    }

    #[tokio::test]
    async fn a_namespace_alone_runs_up_to_its_share() {
        let slots = Slots::new(32, 24);
        let mut held = Vec::new();
        for _ in 0..24 {
            held.push(within_a_second(&slots, "one").await.expect("a slot"));
        }
        assert!(
            within_a_second(&slots, "one").await.is_none(),
            "its share is 24"
        );
        drop(held);
        assert!(within_a_second(&slots, "one").await.is_some());
    }

    #[tokio::test]
    async fn a_new_external_secret_goes_before_a_thousand_refreshes() {
        let slots = Arc::new(Slots::new(2, 2));
        let held = [
            slots.take("big", false).await,
            slots.take("big", false).await,
        ];
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        // A thousand periodic refreshes of one namespace and ten of another
        // queue first; then a new ExternalSecret of each, and of a third.
        for (ns, n) in [("big", 1000), ("small", 10)] {
            for i in 0..n {
                let (slots, order) = (slots.clone(), order.clone());
                waiters.push(tokio::spawn(async move {
                    let _slot = slots.take(ns, false).await;
                    order.lock().unwrap().push(format!("{ns}-refresh-{i}"));
                }));
            }
        }
        tokio::task::yield_now().await;
        for ns in ["big", "small", "third"] {
            let (slots, order) = (slots.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _slot = slots.take(ns, true).await;
                order.lock().unwrap().push(format!("{ns}-new"));
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        for w in waiters {
            w.await.unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!(order.len(), 1013, "every waiter ran");
        for ns in ["big", "small", "third"] {
            let at = order
                .iter()
                .position(|o| *o == format!("{ns}-new"))
                .unwrap();
            assert!(
                at < 3,
                "{ns}'s new ExternalSecret ran {at}th: {:?}",
                &order[..6]
            );
        }
        // The refreshes kept their order within a namespace.
        let big: Vec<&String> = order
            .iter()
            .filter(|o| o.starts_with("big-refresh"))
            .collect();
        assert_eq!(big.first().map(|s| s.as_str()), Some("big-refresh-0"));
        assert_eq!(big.last().map(|s| s.as_str()), Some("big-refresh-999"));
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_passes_its_turn_on() {
        let slots = Arc::new(Slots::new(1, 1));
        let running = slots.take("a", false).await;
        // Gives up while waiting (its sync is cancelled).
        let gone = tokio::time::timeout(Duration::from_millis(10), slots.take("b", false)).await;
        assert!(gone.is_err());
        let s = slots.clone();
        let next = tokio::spawn(async move { s.take("c", false).await });
        tokio::task::yield_now().await;
        drop(running);
        let c = tokio::time::timeout(Duration::from_secs(1), next).await;
        assert!(c.is_ok(), "the slot went past the gone waiter");
    }
}
