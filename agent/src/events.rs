//! The agent's events: each action's result, each container exit, each git revision switched
//! to or sync failure — kept in the state db (the last 10,000) and broadcast to
//! `GET /v1/events` followers.

use std::sync::Arc;

use berth_engine::state::{EventRecord, StateDb};
use tokio::sync::broadcast;

use crate::reconcile::action::Key;

pub struct Events {
    db: Arc<StateDb>,
    tx: broadcast::Sender<EventRecord>,
}

impl Events {
    pub fn new(db: Arc<StateDb>) -> Arc<Events> {
        let (tx, _) = broadcast::channel(1024);
        Arc::new(Events { db, tx })
    }

    /// Records an event now: into the db, then to every follower.
    pub fn record(&self, object: &str, action: &str, ok: bool, message: Option<String>) {
        let mut e = EventRecord {
            id: 0,
            at_ms: berth_engine::runtime::exit::now_ms(),
            object: object.to_string(),
            action: action.to_string(),
            result: if ok { "ok" } else { "error" }.to_string(),
            message,
        };
        match self.db.append_event(&e) {
            Ok(id) => e.id = id,
            Err(err) => {
                tracing::warn!(error = %err, "record an event");
                return;
            }
        }
        let _ = self.tx.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EventRecord> {
        self.tx.subscribe()
    }

    pub fn since(&self, since_ms: u64) -> Vec<EventRecord> {
        self.db.events_since(since_ms).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "read events");
            Vec::new()
        })
    }
}

/// `Container/web`, `Network/front`, … for the first key of an action.
pub fn object_of(keys: &[Key]) -> String {
    match keys.first() {
        Some(Key::Container(n)) => format!("Container/{n}"),
        Some(Key::Network(n)) => format!("Network/{n}"),
        Some(Key::Volume(n)) => format!("Volume/{n}"),
        Some(Key::Cgroup(c)) => format!("Cgroup/{c}"),
        Some(Key::Wiring(id)) => format!("Wiring/{id}"),
        Some(Key::Firewall) | None => "Firewall".to_string(),
    }
}
