//! `Patch<T>`: a field of a partial update (HTTP PATCH). Absent means "leave it", `null` means
//! "clear it", a value means "set it" — three states an `Option` cannot tell apart.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Patch<T> {
    #[default]
    Missing,
    Null,
    Value(T),
}

impl<T> Patch<T> {
    pub fn is_missing(&self) -> bool {
        matches!(self, Patch::Missing)
    }
    /// `None` when the field was absent, `Some(None)` when it is to be cleared.
    pub fn into_change(self) -> Option<Option<T>> {
        match self {
            Patch::Missing => None,
            Patch::Null => Some(None),
            Patch::Value(v) => Some(Some(v)),
        }
    }
    pub fn as_ref(&self) -> Patch<&T> {
        match self {
            Patch::Missing => Patch::Missing,
            Patch::Null => Patch::Null,
            Patch::Value(v) => Patch::Value(v),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Reached only when the field is present; absence is `#[serde(default)]`.
        Ok(match Option::<T>::deserialize(d)? {
            None => Patch::Null,
            Some(v) => Patch::Value(v),
        })
    }
}

impl<T: Serialize> Serialize for Patch<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            // Skipped by `skip_serializing_if = "Patch::is_missing"`; null if serialized anyway.
            Patch::Missing | Patch::Null => s.serialize_none(),
            Patch::Value(v) => v.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct P {
        #[serde(default, skip_serializing_if = "Patch::is_missing")]
        phone: Patch<String>,
    }

    #[test]
    fn three_states() {
        let missing: P = serde_json::from_str("{}").expect("parses");
        let null: P = serde_json::from_str(r#"{"phone": null}"#).expect("parses");
        let value: P = serde_json::from_str(r#"{"phone": "+15550100"}"#).expect("parses");
        assert_eq!(missing.phone, Patch::Missing);
        assert_eq!(null.phone, Patch::Null);
        assert_eq!(value.phone, Patch::Value("+15550100".to_owned()));
        assert_eq!(serde_json::to_string(&missing).expect("serializes"), "{}");
        assert_eq!(serde_json::to_string(&null).expect("serializes"), r#"{"phone":null}"#);
    }
}
