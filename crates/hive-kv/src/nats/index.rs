//! The live-key index of one bucket: what [`Bucket::keys`](crate::Bucket::keys) answers from,
//! so that a listing costs one stream-info request instead of a consumer.
//!
//! One ordered consumer per bucket handle, started at the first listing and kept, delivers the
//! last message of every key and then every change (headers only). A listing asks the stream
//! for its state and waits until the index has seen the stream's last sequence, so it includes
//! every write acknowledged before it started, and it is complete: the ordered consumer
//! delivers every sequence and re-creates itself at the first one it missed. This replaces a
//! consumer per listing, which a busy server refuses ("maximum consumers limit reached") and
//! whose "nothing pending" can come early (nats-server#4824).
//!
//! Expiry emits no message. A bucket's TTL removes messages oldest first, and nothing else
//! removes the newest message of a key, so a key whose newest message is older than the
//! stream's first sequence has expired: the listing leaves it out, judged by the server's
//! clock alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_nats::jetstream::{self, consumer::push::OrderedConfig};
use futures::StreamExt as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::KV_OPERATION;
use crate::validate::matches_prefix;

/// Where the follower is.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// Highest stream sequence applied.
    seen: u64,
    /// The follower stopped (its consumer could not be made or its stream ended).
    stopped: bool,
}

/// The newest message of each key the follower has seen: stream sequence and whether it is a
/// put (deletes and purges are not).
type Newest = HashMap<String, (u64, bool)>;

/// A bucket's live-key index.
#[derive(Debug)]
pub(super) struct KeyIndex {
    newest: Mutex<Newest>,
    progress: watch::Sender<Progress>,
    follower: Mutex<Option<JoinHandle<()>>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the map half-written in a way that matters:
    // every update is one insert.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl KeyIndex {
    pub(super) fn new() -> Self {
        Self {
            newest: Mutex::new(Newest::new()),
            progress: watch::Sender::new(Progress::default()),
            follower: Mutex::new(None),
        }
    }

    /// Starts following `stream` unless a follower is running; a stopped one is replaced by a
    /// fresh one that starts over from the last message of every key.
    pub(super) fn ensure_following(
        self: &Arc<Self>,
        stream: &jetstream::stream::Stream,
        subject_prefix: &str,
        inbox: String,
    ) {
        let mut follower = locked(&self.follower);
        if follower.as_ref().is_some_and(|f| !f.is_finished()) {
            return;
        }
        locked(&self.newest).clear();
        self.progress.send_replace(Progress::default());
        let index = Arc::clone(self);
        let stream = stream.clone();
        let prefix = subject_prefix.to_owned();
        *follower = Some(tokio::spawn(async move {
            if let Err(e) = index.follow(stream, &prefix, inbox).await {
                tracing::debug!(error = %e, "key index follower stopped");
            }
            index.progress.send_modify(|p| p.stopped = true);
        }));
    }

    /// Stops the follower; the next listing starts a fresh one.
    pub(super) fn stop(&self) {
        if let Some(follower) = locked(&self.follower).take() {
            follower.abort();
        }
    }

    async fn follow(
        &self,
        stream: jetstream::stream::Stream,
        subject_prefix: &str,
        inbox: String,
    ) -> Result<(), String> {
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_subject: inbox,
                description: Some("hive-kv key index".to_owned()),
                filter_subject: format!("{subject_prefix}>"),
                headers_only: true,
                replay_policy: jetstream::consumer::ReplayPolicy::Instant,
                deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        while let Some(message) = messages.next().await {
            // The ordered consumer reports a missed heartbeat or a gap and re-creates itself
            // at the first sequence not delivered: nothing to do but go on.
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "key index consumer restarts");
                    continue;
                }
            };
            let Ok(info) = message.info() else { continue };
            let sequence = info.stream_sequence;
            if let Some(key) = message.subject.as_str().strip_prefix(subject_prefix) {
                let put = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(KV_OPERATION))
                    .is_none_or(|op| op.as_str() == "PUT");
                self.apply(key, sequence, put);
            }
            self.progress.send_modify(|p| p.seen = p.seen.max(sequence));
        }
        Err("the consumer's stream ended".to_owned())
    }

    fn apply(&self, key: &str, sequence: u64, put: bool) {
        let mut newest = locked(&self.newest);
        match newest.get_mut(key) {
            Some(known) if known.0 >= sequence => {}
            Some(known) => *known = (sequence, put),
            None => {
                newest.insert(key.to_owned(), (sequence, put));
            }
        }
    }

    /// Waits until the follower has applied `sequence`.
    pub(super) async fn wait_for(&self, sequence: u64) -> Result<(), String> {
        let mut progress = self.progress.subscribe();
        let reached = progress
            .wait_for(|p| p.stopped || p.seen >= sequence)
            .await
            .map_err(|e| e.to_string())?;
        if reached.seen >= sequence {
            Ok(())
        } else {
            Err("the key index stopped before it caught up".to_owned())
        }
    }

    /// Keys whose newest message is a put still in the stream (sequence at least
    /// `first_sequence`) and that start with `prefix`, sorted.
    pub(super) fn live_keys(&self, first_sequence: u64, prefix: Option<&str>) -> Vec<String> {
        let mut keys: Vec<String> = locked(&self.newest)
            .iter()
            .filter(|&(key, &(sequence, put))| {
                put && sequence >= first_sequence && matches_prefix(key, prefix)
            })
            .map(|(key, _)| key.clone())
            .collect();
        keys.sort_unstable();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_message_of_a_key_decides() {
        let index = KeyIndex::new();
        index.apply("a", 5, true);
        index.apply("a", 3, false); // older: ignored
        index.apply("b", 6, true);
        index.apply("b", 7, false); // deleted
        index.apply("c", 2, true);
        index.apply("d.x", 8, true);
        assert_eq!(index.live_keys(1, None), ["a", "c", "d.x"]);
        assert_eq!(index.live_keys(1, Some("d.")), ["d.x"]);
        // Messages below the stream's first sequence have expired.
        assert_eq!(index.live_keys(3, None), ["a", "d.x"]);
    }

    #[tokio::test]
    async fn waiting_ends_when_caught_up_or_stopped() {
        let index = KeyIndex::new();
        index.progress.send_modify(|p| p.seen = 9);
        assert!(index.wait_for(9).await.is_ok());
        index.progress.send_modify(|p| p.stopped = true);
        assert!(index.wait_for(10).await.is_err());
    }
}
