//! Hot state mirrored in Redis (a cache: PostgreSQL is the truth, and losing Redis loses
//! nothing). Encoded with bincode 2; the first field is the format version, so a node reading an
//! entry it does not understand ignores it instead of misreading it.

use serde::{Deserialize, Serialize};

/// The state of a run as of its last checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHot {
    pub format: u8,
    pub status: String,
    pub cursor: i32,
    pub version: i64,
    pub updated_at_ms: i64,
}

impl RunHot {
    pub const FORMAT: u8 = 1;

    pub fn encode(&self) -> Vec<u8> {
        // Encoding plain integers and strings into a Vec cannot fail.
        bincode::serde::encode_to_vec(self, bincode::config::standard()).unwrap_or_default()
    }

    /// `None` for bytes of another format or version.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (hot, _): (Self, usize) = bincode::serde::decode_from_slice(bytes, bincode::config::standard()).ok()?;
        (hot.format == Self::FORMAT).then_some(hot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_formats() {
        let hot = RunHot { format: RunHot::FORMAT, status: "running".into(), cursor: 3, version: 7, updated_at_ms: 1 };
        assert_eq!(RunHot::decode(&hot.encode()), Some(hot.clone()));
        let other = RunHot { format: 9, ..hot };
        assert_eq!(RunHot::decode(&other.encode()), None);
        assert_eq!(RunHot::decode(b"garbage"), None);
    }
}
