//! Flywheel's cluster layer: node membership over ractor_cluster, tenants hashed onto virtual
//! shards placed by rendezvous hashing and held under epoch-fenced leases in PostgreSQL,
//! failover and draining, and the admin gRPC control plane (tonic).
//!
//! Filled by the cluster issue; a node runs alone (owning every tenant) until then.
