//! Publishing changes: a broadcast hub of typed values (the machine domain publishes its
//! `Change`s; SSE streams and the Tinkerbell glue subscribe) and per-key signals, so a
//! waiter interested in one machine wakes only for that machine. JSON is made at the SSE
//! edge, never here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, watch};

/// Cheap to clone; all clones share one channel.
pub struct EventHub<T> {
    tx: broadcast::Sender<T>,
}

impl<T> Clone for EventHub<T> {
    fn clone(&self) -> Self {
        EventHub {
            tx: self.tx.clone(),
        }
    }
}

impl<T: Clone> EventHub<T> {
    /// `capacity`: how many values a slow subscriber may fall behind before it is told it
    /// lagged (SSE clients then reload their view).
    pub fn new(capacity: usize) -> EventHub<T> {
        let (tx, _) = broadcast::channel(capacity);
        EventHub { tx }
    }

    pub fn publish(&self, value: T) {
        // No subscribers is the normal idle case, not an error.
        let _ = self.tx.send(value);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<T> {
        self.tx.subscribe()
    }
}

/// A change counter per key, existing only while someone waits on it.
#[derive(Clone, Default)]
pub struct Signals {
    waiting: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl Signals {
    fn map(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        // The map holds no invariant a panic could break half-way.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts watching `key`: every [`Signals::notify`] of it after this call wakes the
    /// returned waiter, including one that happens before the waiter is awaited.
    pub fn watch(&self, key: &str) -> Waiter {
        let rx = self
            .map()
            .entry(key.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Waiter {
            key: key.to_string(),
            rx,
            signals: self.clone(),
        }
    }

    /// Wakes every waiter of `key`; costs one map lookup when nobody waits.
    pub fn notify(&self, key: &str) {
        if let Some(tx) = self.map().get(key) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// How many waiters `key` has.
    pub fn waiters(&self, key: &str) -> usize {
        self.map().get(key).map_or(0, |tx| tx.receiver_count())
    }

    /// How many keys have waiters (for tests and metrics).
    pub fn keys(&self) -> usize {
        self.map().len()
    }
}

/// Waits for changes of one key; the key's entry goes when its last waiter does.
pub struct Waiter {
    key: String,
    rx: watch::Receiver<u64>,
    signals: Signals,
}

impl Waiter {
    /// Resolves at the next change of the key (at once if one happened since the last).
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            // The sender lives in the map while this waiter exists; never reached, but
            // waiting forever is the honest answer if it were.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut map = self.signals.map();
        // This waiter's receiver still counts until it is dropped right after this.
        if map
            .get(&self.key)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiter_wakes_for_its_key_only() {
        let s = Signals::default();
        let mut a = s.watch("a");
        s.notify("b");
        let woke = tokio::time::timeout(Duration::from_millis(50), a.changed()).await;
        assert!(woke.is_err(), "woke for another key");
        s.notify("a");
        tokio::time::timeout(Duration::from_secs(5), a.changed())
            .await
            .expect("not woken by its own key");
    }

    #[tokio::test]
    async fn a_change_before_waiting_is_not_lost() {
        let s = Signals::default();
        let mut a = s.watch("a");
        s.notify("a");
        tokio::time::timeout(Duration::from_secs(5), a.changed())
            .await
            .expect("the change between watch and wait was lost");
    }

    #[test]
    fn entries_go_with_their_last_waiter() {
        let s = Signals::default();
        let a1 = s.watch("a");
        let a2 = s.watch("a");
        assert_eq!(s.keys(), 1);
        drop(a1);
        assert_eq!(s.keys(), 1);
        drop(a2);
        assert_eq!(s.keys(), 0);
        s.notify("a");
        assert_eq!(s.keys(), 0);
    }
}
