//! Typed identifiers. A `TenantId` is never confused with a lead's id: each is its own type.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::InvalidValue;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered (UUIDv7) id: listing by id lists by creation time.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| InvalidValue::new(concat!("not a valid ", stringify!($name), " (a UUID)")))
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

id_type!(
    /// The tenant (a company) every row, message, key and vector belongs to.
    TenantId
);
id_type!(ApiKeyId);
id_type!(BrandCoreId);
id_type!(PersonaId);
id_type!(CampaignId);
id_type!(LeadId);
id_type!(LandingPageId);
id_type!(AffiliateId);
id_type!(UserId);
id_type!(MemoryItemId);
id_type!(RunId);
id_type!(RunStepId);
id_type!(ApprovalId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_print_as_uuids() {
        let id = TenantId::new();
        let parsed: TenantId = id.to_string().parse().expect("a printed id parses back");
        assert_eq!(parsed, id);
        assert!("not-a-uuid".parse::<TenantId>().is_err());
    }

    #[test]
    fn new_ids_are_time_ordered() {
        let a = LeadId::new();
        let b = LeadId::new();
        assert!(a < b, "UUIDv7 ids sort by creation");
    }
}
