//! Cluster announcements over Redis pub/sub: the fast path of membership.
//!
//! PostgreSQL decides who owns a shard (leases, epochs, fences) and a node learns of changes on
//! its lease tick, every third of the lease time-to-live. That bounds a failover, which has to
//! wait for a dead node's leases to expire anyway, but it would also delay every planned move: a
//! joining node's share, a drain, a graceful shutdown. So a node announces each change it makes
//! (joined, handed shards over, took shards, drained, left) on one channel, and every other node
//! ticks at once when it hears one. An announcement carries no state — only the announcing
//! node's id — so a lost or duplicated message costs at most a tick's delay or an extra tick:
//! safety never depends on Redis.
//!
//! The channel is shared by all tenants (it carries node ids, never tenant data): like the
//! ingest streams, an exception to `TenantKey`, documented in ARCHITECTURE.md.

use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::types::Builder;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::task::JoinHandle;

use crate::redis::RedisStore;
use crate::{Result, StorageError};

/// Publishes and subscribes to one deployment's cluster channel (`{ns}:cluster:changes`).
#[derive(Debug, Clone)]
pub struct ClusterBus {
    store: RedisStore,
    channel: String,
}

impl RedisStore {
    /// The cluster's announcement channel in this store's namespace.
    pub fn cluster_bus(&self) -> ClusterBus {
        ClusterBus { store: self.clone(), channel: format!("{}:cluster:changes", self.namespace()) }
    }
}

impl ClusterBus {
    /// Tells every other node that `node` changed something; answers how many listened.
    pub async fn announce(&self, node: &str) -> Result<u64> {
        Ok(self.store.pool().next().publish(self.channel.as_str(), node).await?)
    }

    /// Subscribes on a connection of its own that resubscribes after every reconnect.
    pub async fn listen(&self) -> Result<ClusterListener> {
        let config = self.store.pool().next().client_config();
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(5);
                c.internal_command_timeout = Duration::from_secs(5);
            })
            .set_policy(fred::types::config::ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build_subscriber_client()
            .map_err(StorageError::from)?;
        client.init().await.map_err(|e| StorageError::Unavailable(format!("cannot connect to Redis: {e}")))?;
        let messages = client.message_rx();
        let resubscriber = client.manage_subscriptions();
        client.subscribe(self.channel.as_str()).await?;
        Ok(ClusterListener { client, messages, resubscriber })
    }
}

/// A subscription to the cluster channel.
pub struct ClusterListener {
    client: SubscriberClient,
    messages: tokio::sync::broadcast::Receiver<fred::types::Message>,
    resubscriber: JoinHandle<()>,
}

impl std::fmt::Debug for ClusterListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterListener").finish_non_exhaustive()
    }
}

/// What the channel said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A node announced a change.
    Change { node: String },
    /// Messages were dropped (this listener fell behind): something changed, who is unknown.
    Missed,
}

impl ClusterListener {
    /// The next announcement; `None` once the subscription is closed.
    pub async fn next(&mut self) -> Option<Heard> {
        loop {
            match self.messages.recv().await {
                Ok(message) => {
                    if let Some(node) = message.value.as_string() {
                        return Some(Heard::Change { node });
                    }
                    // Not ours to understand (a foreign publisher): ignored.
                }
                Err(RecvError::Lagged(_)) => return Some(Heard::Missed),
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Drops the announcements already queued: one tick answers them all.
    pub fn skip_pending(&mut self) {
        loop {
            match self.messages.try_recv() {
                Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }

    /// Unsubscribes and closes the connection.
    pub async fn close(self) {
        self.resubscriber.abort();
        let _ = self.client.quit().await;
    }
}
