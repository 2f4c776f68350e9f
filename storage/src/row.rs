//! Conversions from stored columns to contract types, shared by the repositories.

use flywheel_contracts::{Currency, Money};
use serde::de::DeserializeOwned;

use crate::{Result, StorageError};

/// A text column holding a snake_case enum value (`status`, `type`, …).
pub(crate) fn enum_column<T: DeserializeOwned>(column: &str, value: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|_| StorageError::Internal(format!("unexpected {column} {value:?} in the database")))
}

/// Several text values (`channels text[]`).
pub(crate) fn enum_array<T: DeserializeOwned>(column: &str, values: &[String]) -> Result<Vec<T>> {
    values.iter().map(|v| enum_column(column, v)).collect()
}

/// A `numeric` read as text (`budget::text`) and its `char(3)` currency, as exact `Money`.
pub(crate) fn money(column: &str, amount: Option<String>, currency: Option<String>) -> Result<Option<Money>> {
    match (amount, currency) {
        (Some(amount), Some(code)) => {
            let currency =
                Currency::parse(code.trim()).map_err(|e| StorageError::Internal(format!("{column} currency: {e}")))?;
            // numeric(20, 4) prints four decimals; drop the zeros the currency does not use.
            let exp = usize::from(currency.exponent());
            let trimmed = match amount.split_once('.') {
                Some((whole, frac)) => {
                    let (keep, drop) = frac.split_at(frac.len().min(exp));
                    if drop.bytes().any(|b| b != b'0') {
                        return Err(StorageError::Internal(format!("{column} {amount} has sub-unit precision")));
                    }
                    if keep.is_empty() { whole.to_owned() } else { format!("{whole}.{keep}") }
                }
                None => amount,
            };
            Money::parse(&trimmed, currency).map(Some).map_err(|e| StorageError::Internal(format!("{column}: {e}")))
        }
        (None, None) => Ok(None),
        _ => Err(StorageError::Internal(format!("{column} has an amount without a currency or the reverse"))),
    }
}

/// A JSON object column (`jsonb` constrained to objects).
pub(crate) fn object(column: &str, value: serde_json::Value) -> Result<serde_json::Map<String, serde_json::Value>> {
    match value {
        serde_json::Value::Object(map) => Ok(map),
        other => Err(StorageError::Internal(format!("{column} is {other}, not an object"))),
    }
}
