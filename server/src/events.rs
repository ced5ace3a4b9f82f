//! The broadcast hub: every published change reaches the SSE streams (and so the UI) and
//! long-polling heartbeats. It carries ready-made JSON, so it knows nothing of the domain.

use std::sync::Arc;

use tokio::sync::broadcast;

/// One published change.
#[derive(Debug, Clone)]
pub struct Published {
    pub machine_id: Option<String>,
    /// The event kind (`registered`, `os_assigned`, `status`, ...).
    pub kind: String,
    /// The JSON sent to subscribers.
    pub json: Arc<str>,
}

/// Cheap to clone; all clones share one channel.
#[derive(Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Published>,
}

impl EventHub {
    /// `capacity`: how many changes a slow subscriber may fall behind before it is told it
    /// lagged (SSE clients then reload their view).
    pub fn new(capacity: usize) -> EventHub {
        let (tx, _) = broadcast::channel(capacity);
        EventHub { tx }
    }

    pub fn publish(&self, machine_id: Option<String>, kind: String, json: String) {
        // No subscribers is the normal idle case, not an error.
        let _ = self.tx.send(Published {
            machine_id,
            kind,
            json: json.into(),
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.tx.subscribe()
    }
}
