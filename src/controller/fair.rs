//! Sync slots shared fairly between namespaces. At most `total` syncs run
//! at once and at most `per_namespace` of one namespace, so a tenant whose
//! syncs hang (a large `find`, an AWS that times out) always leaves the
//! rest to others; and a freed slot goes to the namespaces waiting in
//! turn, so a tenant with a thousand ExternalSecrets queued delays another
//! namespace's sync by one slot's turn, not by its whole queue. A namespace
//! alone uses up to `per_namespace` slots at once: its syncs of one store
//! then gather into few AWS batches.

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
    waiting: HashMap<String, VecDeque<oneshot::Sender<Slot>>>,
    /// Namespaces with waiters, in turn.
    turn: VecDeque<String>,
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

    /// A slot for a sync of `namespace`: at once when one is free and the
    /// namespace is under its share with no one of it waiting, else when
    /// its turn comes.
    pub async fn take(&self, namespace: &str) -> Slot {
        let receiver = {
            let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let s = &mut *guard;
            let running = s.running.get(namespace).copied().unwrap_or(0);
            if s.free > 0 && running < s.per_namespace && !s.waiting.contains_key(namespace) {
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
            if queue.is_empty() {
                s.turn.push_back(namespace.to_owned());
            }
            s.waiting
                .get_mut(namespace)
                .expect("just inserted")
                .push_back(tx);
            rx
        };
        receiver.await.expect("a waiter is only dropped by itself")
    }
}

impl State {
    /// Hands a freed slot to the next namespace in turn that is under its
    /// share, else keeps it free.
    fn hand_on(&mut self, state: &Arc<Mutex<State>>) {
        let mut passes = self.turn.len();
        while passes > 0 && self.free > 0 {
            passes -= 1;
            let Some(namespace) = self.turn.pop_front() else {
                break;
            };
            let running = self.running.get(&namespace).copied().unwrap_or(0);
            if running >= self.per_namespace {
                // Its share is taken: its turn waits for one of its own.
                self.turn.push_back(namespace);
                continue;
            }
            let queue = self.waiting.get_mut(&namespace).expect("in turn");
            while let Some(tx) = queue.pop_front() {
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
        tokio::time::timeout(Duration::from_secs(1), slots.take(namespace))
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
                let _slot = slots.take("noisy").await;
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
        let first = slots.take("noisy").await;
        let second = slots.take("noisy").await;
        // 50 more of the noisy namespace queue before the quiet one asks.
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..50 {
            let (slots, order) = (slots.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _slot = slots.take("noisy").await;
                order.lock().unwrap().push(format!("noisy-{i}"));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }));
            tokio::task::yield_now().await;
        }
        let (s, o) = (slots.clone(), order.clone());
        let quiet = tokio::spawn(async move {
            let _slot = s.take("quiet").await;
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
    async fn a_waiter_that_gives_up_passes_its_turn_on() {
        let slots = Arc::new(Slots::new(1, 1));
        let running = slots.take("a").await;
        // Gives up while waiting (its sync is cancelled).
        let gone = tokio::time::timeout(Duration::from_millis(10), slots.take("b")).await;
        assert!(gone.is_err());
        let s = slots.clone();
        let next = tokio::spawn(async move { s.take("c").await });
        tokio::task::yield_now().await;
        drop(running);
        let c = tokio::time::timeout(Duration::from_secs(1), next).await;
        assert!(c.is_ok(), "the slot went past the gone waiter");
    }
}
