//! `Email`: a trimmed, lower-cased address with one `@`, a non-empty local part and a dotted
//! domain. Lower-casing makes "Ann@Example.com" and "ann@example.com" the same lead.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::InvalidValue;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let s = s.trim().to_lowercase();
        let bad = || InvalidValue::new("not a valid email address");
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.contains('@');
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(bad());
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        assert_eq!(Email::parse(" Ann@Example.COM ").map(String::from), Ok("ann@example.com".into()));
        for bad in
            ["", "ann", "@x.com", "ann@", "ann@x", "ann@@x.com", "a b@x.com", "ann@x..com", "a\0b@x.co", "a\u{7}b@x.co"]
        {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
