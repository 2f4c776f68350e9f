//! `StorageError`: what went wrong in storage, shaped by how the caller should react.

use std::borrow::Cow;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No such row for this tenant. Another tenant's row is reported exactly like a missing one.
    #[error("not found")]
    NotFound,
    /// A unique key already holds this value within the tenant (client's fault; HTTP 409).
    #[error("{field} is already taken")]
    Conflict { field: Cow<'static, str> },
    /// The database refused the value: a check constraint or a reference to a row that does not
    /// exist for this tenant (client's fault; HTTP 422).
    #[error("{message}")]
    Invalid { field: Cow<'static, str>, message: String },
    /// The database or Redis is unreachable or saturated; retry later (HTTP 503).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A broken invariant or an unexpected database answer (our fault; HTTP 500).
    #[error("storage error: {0}")]
    Internal(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StorageError::Unavailable(_))
    }
}

/// Constraints whose name does not say which input field they guard.
const CONSTRAINT_FIELDS: &[(&str, &str)] = &[
    ("campaigns_dates_check", "end_date"),
    ("campaigns_budget_currency_check", "budget"),
    ("influencer_campaigns_dates_check", "end_date"),
    ("influencer_campaigns_budget_currency_check", "budget"),
    ("affiliate_events_amount_currency_check", "amount"),
    ("leads_contact_check", "email"),
    ("landing_pages_tenant_id_url_path_variant_key", "url_path"),
    ("tenants_slug_key", "slug"),
    ("api_keys_key_hash_key", "api_key"),
];

/// The input field a constraint guards: from the table above, else from the naming
/// convention `<table>_[tenant_id_]<field>_(key|fkey|check)`.
fn constraint_field(table: Option<&str>, constraint: &str) -> Cow<'static, str> {
    if let Some((_, field)) = CONSTRAINT_FIELDS.iter().find(|(c, _)| *c == constraint) {
        return Cow::Borrowed(field);
    }
    let mut rest = constraint;
    if let Some(t) = table {
        rest = rest.strip_prefix(t).and_then(|r| r.strip_prefix('_')).unwrap_or(rest);
    }
    rest = rest.strip_prefix("tenant_id_").unwrap_or(rest);
    for suffix in ["_fkey", "_key", "_check"] {
        if let Some(r) = rest.strip_suffix(suffix) {
            rest = r;
            break;
        }
    }
    Cow::Owned(rest.to_owned())
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StorageError::NotFound,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StorageError::Unavailable(e.to_string())
            }
            sqlx::Error::Database(db) => {
                let constraint = db.constraint().unwrap_or_default().to_owned();
                let field = constraint_field(db.table(), &constraint);
                match db.kind() {
                    sqlx::error::ErrorKind::UniqueViolation => StorageError::Conflict { field },
                    sqlx::error::ErrorKind::ForeignKeyViolation => {
                        StorageError::Invalid { message: format!("{field} does not name an existing record"), field }
                    }
                    sqlx::error::ErrorKind::CheckViolation => {
                        StorageError::Invalid { message: format!("{field} is not acceptable"), field }
                    }
                    sqlx::error::ErrorKind::NotNullViolation => {
                        StorageError::Invalid { message: format!("{field} is required"), field }
                    }
                    _ => {
                        // 53xxx: insufficient resources; 57P0x: shutting down; 08xxx: connection.
                        let code = db.code().unwrap_or_default();
                        if code.starts_with("53") || code.starts_with("57P") || code.starts_with("08") {
                            StorageError::Unavailable(db.message().to_owned())
                        } else {
                            StorageError::Internal(format!("{} ({code})", db.message()))
                        }
                    }
                }
            }
            other => StorageError::Internal(other.to_string()),
        }
    }
}

impl From<fred::error::Error> for StorageError {
    fn from(e: fred::error::Error) -> Self {
        use fred::error::ErrorKind;
        match e.kind() {
            ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled | ErrorKind::Backpressure => {
                StorageError::Unavailable(e.to_string())
            }
            _ => StorageError::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_from_constraint_names() {
        assert_eq!(constraint_field(Some("leads"), "leads_tenant_id_email_key"), "email");
        assert_eq!(constraint_field(Some("leads"), "leads_tenant_id_campaign_id_fkey"), "campaign_id");
        assert_eq!(constraint_field(Some("leads"), "leads_phone_check"), "phone");
        assert_eq!(constraint_field(Some("campaigns"), "campaigns_dates_check"), "end_date");
        assert_eq!(constraint_field(Some("affiliates"), "affiliates_tenant_id_referral_code_key"), "referral_code");
    }
}
