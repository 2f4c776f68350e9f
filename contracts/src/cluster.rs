//! The messages nodes exchange over the cluster transport (ractor_cluster): typed, versioned
//! by a leading format byte, encoded with bincode 2. A node that receives a format it does not
//! know refuses the message instead of misreading it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a cluster message could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("cluster message format {0}, this node reads format {f}", f = FORMAT)]
    Format(u8),
    #[error("undecodable cluster message: {0}")]
    Malformed(String),
}

/// The one format of every message below.
pub const FORMAT: u8 = 1;

/// A message between nodes.
pub trait Wire: Serialize + for<'de> Deserialize<'de> {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        // Serialising these plain structs cannot fail; an empty body would be refused as
        // malformed by the receiver rather than misread.
        out.extend(bincode::serde::encode_to_vec(self, bincode::config::standard()).unwrap_or_default());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        match bytes.first() {
            Some(&FORMAT) => {}
            Some(other) => return Err(WireError::Format(*other)),
            None => return Err(WireError::Malformed("empty message".into())),
        }
        let (value, read): (Self, usize) = bincode::serde::decode_from_slice(&bytes[1..], bincode::config::standard())
            .map_err(|e| WireError::Malformed(e.to_string()))?;
        if read + 1 != bytes.len() {
            return Err(WireError::Malformed(format!("{} trailing bytes", bytes.len() - read - 1)));
        }
        Ok(value)
    }
}

/// Execute a queued run: sent to the node owning the run's tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteRun {
    pub tenant: Uuid,
    pub agent: String,
    pub run: Uuid,
}
impl Wire for ExecuteRun {}

/// Ask the owner of a tenant for its live actor tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeRequest {
    pub tenant: Uuid,
}
impl Wire for TreeRequest {}

/// A tenant's live actor tree, as its owner sees it (`None`: not active there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeReply {
    pub node: String,
    pub tree: Option<WireTree>,
}
impl Wire for TreeReply {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireTree {
    pub tenant: Uuid,
    /// Each agent's name and the runs it executes now.
    pub agents: Vec<(String, Vec<Uuid>)>,
    pub rejected_messages: u64,
}

/// An echo, for measuring the transport (`flywheel-bench cluster`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    pub seq: u64,
    pub payload: Vec<u8>,
}
impl Wire for Echo {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_refuse_other_formats() {
        let m = ExecuteRun { tenant: Uuid::now_v7(), agent: "branding".into(), run: Uuid::now_v7() };
        let bytes = m.encode();
        assert_eq!(ExecuteRun::decode(&bytes), Ok(m));
        let mut other = bytes.clone();
        other[0] = 9;
        assert_eq!(ExecuteRun::decode(&other), Err(WireError::Format(9)));
        assert!(matches!(ExecuteRun::decode(&[]), Err(WireError::Malformed(_))));
        assert!(matches!(ExecuteRun::decode(&bytes[..bytes.len() - 1]), Err(WireError::Malformed(_))));
        let mut longer = bytes;
        longer.push(0);
        assert!(matches!(ExecuteRun::decode(&longer), Err(WireError::Malformed(_))));
    }
}
