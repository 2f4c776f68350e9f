//! Flywheel's cluster layer: node membership over ractor_cluster, tenants hashed onto virtual
//! shards placed by rendezvous hashing and held under epoch-fenced leases in PostgreSQL,
//! failover and draining, and the admin gRPC control plane (tonic).
//!
//! So far: placement (virtual shards and rendezvous hashing). Membership, leases, routing and the
//! admin plane follow; a node runs alone (owning every tenant) until then.

pub mod placement;
