//! `Phone`: an E.164 number (`+` then 7–15 digits, no leading zero), the form WhatsApp and SMS
//! providers require. Spaces, dashes, dots and parentheses are removed before checking.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::InvalidValue;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

impl Phone {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let compact: String = s.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')')).collect();
        let digits = compact.strip_prefix('+').unwrap_or("");
        let ok =
            (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        if ok {
            Ok(Self(compact))
        } else {
            Err(InvalidValue::new("a phone number is in E.164 form, e.g. +14155550123"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Phone {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Phone> for String {
    fn from(p: Phone) -> String {
        p.0
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones() {
        assert_eq!(Phone::parse("+1 (415) 555-0123").map(String::from), Ok("+14155550123".into()));
        for bad in ["", "14155550123", "+0123456789", "+12", "+1234567890123456", "+1415abc0123"] {
            assert!(Phone::parse(bad).is_err(), "{bad}");
        }
    }
}
