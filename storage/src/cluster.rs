//! The cluster's shared state in PostgreSQL: the node registry (registration, heartbeat,
//! draining, departure) and the shard leases with their history.
//!
//! Every lease decision is one conditional statement judged by the database's clock
//! (`clock_timestamp()`), so nodes' clocks never decide who owns a shard. A lease is taken only
//! when it is free or expired (epoch + 1, logged), renewed only by its owner at the epoch it
//! holds and before it expires, and released only by its owner at its epoch. A checkpoint is
//! fenced by [`crate::runs::Fence`], checked in the checkpoint's own transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{Database, Result, StorageError};

/// How a node announces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRegistration {
    pub node_id: String,
    pub cluster_addr: Option<String>,
    pub grpc_addr: Option<String>,
    pub http_addr: Option<String>,
}

/// A node as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NodeRecord {
    pub node_id: String,
    pub cluster_addr: Option<String>,
    pub grpc_addr: Option<String>,
    pub http_addr: Option<String>,
    pub draining: bool,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
    /// Heartbeat within the lease time-to-live and not departed.
    pub live: bool,
}

/// One shard's lease.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LeaseRecord {
    pub shard: i32,
    pub owner_node: Option<String>,
    pub epoch: i64,
    pub expires_at: DateTime<Utc>,
    pub acquired_at: Option<DateTime<Utc>>,
    /// Judged by the database's clock when read.
    pub expired: bool,
}

/// A held lease: the shard and the epoch it was acquired at.
pub type Held = (i32, i64);

fn secs(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

fn split(held: &[Held]) -> (Vec<i32>, Vec<i64>) {
    held.iter().copied().unzip()
}

impl Database {
    /// Registers (or re-registers, after a restart with the same id) a node as live.
    pub async fn register_node(&self, node: &NodeRegistration) -> Result<()> {
        sqlx::query(
            "insert into cluster_nodes (node_id, cluster_addr, grpc_addr, http_addr)
             values ($1, $2, $3, $4)
             on conflict (node_id) do update
                set cluster_addr = excluded.cluster_addr, grpc_addr = excluded.grpc_addr,
                    http_addr = excluded.http_addr, draining = false, left_at = null,
                    started_at = clock_timestamp(), heartbeat_at = clock_timestamp()",
        )
        .bind(&node.node_id)
        .bind(&node.cluster_addr)
        .bind(&node.grpc_addr)
        .bind(&node.http_addr)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records a heartbeat; answers whether the node has been asked to drain. `NotFound` when
    /// the node is not registered (or has left).
    pub async fn heartbeat(&self, node_id: &str) -> Result<bool> {
        sqlx::query_scalar(
            "update cluster_nodes set heartbeat_at = clock_timestamp()
              where node_id = $1 and left_at is null returning draining",
        )
        .bind(node_id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StorageError::NotFound)
    }

    /// Every registered node, live or not, judged live against `ttl`.
    pub async fn cluster_nodes(&self, ttl: Duration) -> Result<Vec<NodeRecord>> {
        Ok(sqlx::query_as(
            "select node_id, cluster_addr, grpc_addr, http_addr, draining, started_at, heartbeat_at, left_at,
                    (left_at is null and heartbeat_at > clock_timestamp() - make_interval(secs => $1)) as live
               from cluster_nodes order by node_id",
        )
        .bind(secs(ttl))
        .fetch_all(self.pool())
        .await?)
    }

    /// Asks a node to drain (or to take shards again). `NotFound` for an unknown or departed
    /// node.
    pub async fn set_draining(&self, node_id: &str, draining: bool) -> Result<()> {
        let done = sqlx::query("update cluster_nodes set draining = $2 where node_id = $1 and left_at is null")
            .bind(node_id)
            .bind(draining)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }

    /// Marks a node as departed (graceful shutdown).
    pub async fn node_left(&self, node_id: &str) -> Result<()> {
        sqlx::query("update cluster_nodes set left_at = clock_timestamp() where node_id = $1")
            .bind(node_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Every shard's lease.
    pub async fn shard_leases(&self) -> Result<Vec<LeaseRecord>> {
        Ok(sqlx::query_as(
            "select shard, owner_node, epoch, expires_at, acquired_at,
                    (owner_node is null or expires_at <= clock_timestamp()) as expired
               from shard_leases order by shard",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Takes the shards among `shards` whose lease is free or expired, each at its epoch + 1,
    /// and logs each acquisition. Answers what was taken.
    pub async fn acquire_shards(&self, node_id: &str, shards: &[i32], ttl: Duration) -> Result<Vec<Held>> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(
            "with free as (
                 -- A lease row share-locked by a checkpoint in progress is skipped, not waited
                 -- for: that checkpoint commits under the old epoch first, and the shard is
                 -- taken on a later tick.
                 select shard from shard_leases
                  where shard = any($2) and (owner_node is null or expires_at <= clock_timestamp())
                  for update skip locked),
             taken as (
                 update shard_leases l
                    set owner_node = $1, epoch = l.epoch + 1, acquired_at = clock_timestamp(),
                        expires_at = clock_timestamp() + make_interval(secs => $3)
                   from free where l.shard = free.shard
                 returning l.shard, l.epoch),
             logged as (
                 insert into shard_lease_log (shard, epoch, owner_node, event)
                 select shard, epoch, $1, 'acquired' from taken)
             select shard, epoch from taken order by shard",
        )
        .bind(node_id)
        .bind(shards)
        .bind(secs(ttl))
        .fetch_all(self.pool())
        .await?)
    }

    /// Extends the leases `node_id` still holds at their epochs and before they expire.
    /// Answers the ones renewed; any other was lost.
    pub async fn renew_shards(&self, node_id: &str, held: &[Held], ttl: Duration) -> Result<Vec<Held>> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let (shards, epochs) = split(held);
        Ok(sqlx::query_as(
            "update shard_leases l set expires_at = clock_timestamp() + make_interval(secs => $4)
               from unnest($2::integer[], $3::bigint[]) as h(shard, epoch)
              where l.shard = h.shard and l.epoch = h.epoch and l.owner_node = $1
                and l.expires_at > clock_timestamp()
             returning l.shard, l.epoch",
        )
        .bind(node_id)
        .bind(&shards)
        .bind(&epochs)
        .bind(secs(ttl))
        .fetch_all(self.pool())
        .await?)
    }

    /// Gives up leases `node_id` holds at their epochs (handover, drain, shutdown): they are
    /// free at once. Answers the shards released.
    pub async fn release_shards(&self, node_id: &str, held: &[Held]) -> Result<Vec<i32>> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let (shards, epochs) = split(held);
        Ok(sqlx::query_scalar(
            "with released as (
                 update shard_leases l set owner_node = null, expires_at = clock_timestamp()
                   from unnest($2::integer[], $3::bigint[]) as h(shard, epoch)
                  where l.shard = h.shard and l.epoch = h.epoch and l.owner_node = $1
                 returning l.shard, l.epoch),
             logged as (
                 insert into shard_lease_log (shard, epoch, owner_node, event)
                 select shard, epoch, $1, 'released' from released)
             select shard from released order by shard",
        )
        .bind(node_id)
        .bind(&shards)
        .bind(&epochs)
        .fetch_all(self.pool())
        .await?)
    }
}
