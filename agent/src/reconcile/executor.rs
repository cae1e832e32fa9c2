//! Running the planned actions: each on its own task, at most `parallel` at a time (in plan
//! order), one per object (the objects an action holds are in flight until the loop has
//! taken its completion), with failed actions retried on a back-off.
//!
//! Only the control loop touches an [`Executor`]: it spawns actions and takes completions,
//! so the in-flight set and what the records say can never disagree within a pass.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Semaphore;

use super::action::{Action, Key};
use super::backoff::Backoff;
use super::engine::Engine;
use super::execute::{execute, ExecCtx, Outcome};
use super::observed::Failure;

/// An action finished.
#[derive(Debug)]
pub struct Completion {
    pub keys: Vec<Key>,
    pub verb: &'static str,
    pub object: String,
    pub outcome: Outcome,
}

pub struct Executor {
    in_flight: BTreeSet<Key>,
    failures: BTreeMap<Key, Failure>,
    permits: Arc<Semaphore>,
    done: UnboundedSender<Completion>,
    backoff: Backoff,
}

impl Executor {
    pub fn new(parallel: usize, backoff: Backoff, done: UnboundedSender<Completion>) -> Executor {
        Executor {
            in_flight: BTreeSet::new(),
            failures: BTreeMap::new(),
            permits: Arc::new(Semaphore::new(parallel.max(1))),
            done,
            backoff,
        }
    }

    pub fn in_flight(&self) -> BTreeSet<Key> {
        self.in_flight.clone()
    }

    pub fn failures(&self) -> BTreeMap<Key, Failure> {
        self.failures.clone()
    }

    /// Starts `action`; its keys are in flight until [`Executor::complete`] takes its
    /// completion.
    pub fn spawn<E: Engine>(&mut self, ctx: Arc<ExecCtx<E>>, action: Action) {
        let keys = action.keys();
        debug_assert!(
            keys.iter().all(|k| !self.in_flight.contains(k)),
            "the plan never gives two actions on one object"
        );
        self.in_flight.extend(keys.iter().cloned());
        let verb = action.verb();
        let object = action.object();
        tracing::debug!(action = verb, object = %object, "dispatch");
        let permits = self.permits.clone();
        let done = self.done.clone();
        tokio::spawn(async move {
            // In plan order: the semaphore is fair.
            let _permit = permits.acquire_owned().await;
            // On its own task, so a panic is an outcome, not an object in flight forever.
            let outcome = match tokio::spawn(async move { execute(&ctx, action).await }).await {
                Ok(o) => o,
                Err(e) => Outcome::Retry(format!("{verb} {object}: the action panicked: {e}")),
            };
            // The loop is gone only during shutdown.
            let _ = done.send(Completion {
                keys,
                verb,
                object,
                outcome,
            });
        });
    }

    /// Takes a completion: frees its keys, and remembers or forgets its failure.
    pub fn complete(&mut self, c: &Completion, now_ms: u64) {
        for k in &c.keys {
            self.in_flight.remove(k);
        }
        match &c.outcome {
            Outcome::Done | Outcome::Recorded(_) => {
                for k in &c.keys {
                    self.failures.remove(k);
                }
            }
            Outcome::Retry(error) => {
                tracing::warn!(action = c.verb, object = %c.object, %error, "action failed; will retry");
                for k in &c.keys {
                    let f = self.failures.entry(k.clone()).or_insert(Failure {
                        error: String::new(),
                        since_ms: now_ms,
                        retry_at_ms: now_ms,
                        streak: 0,
                    });
                    f.error = error.clone();
                    f.retry_at_ms = now_ms + self.backoff.delay(f.streak).as_millis() as u64;
                    f.streak += 1;
                }
            }
        }
    }
}
