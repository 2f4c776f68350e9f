//! API keys: generation, hashing and the pre-tenant lookup that turns a presented key into a
//! tenant and a role.
//!
//! A key is `fwk_` followed by 64 hex digits (256 random bits). Only its SHA-256 is stored:
//! for a secret of that entropy a fast hash is as safe as a slow one, and it keeps
//! authentication to one indexed lookup per request (a password hash such as argon2 is for
//! low-entropy secrets chosen by people).

use flywheel_contracts::ids::ApiKeyId;
use flywheel_contracts::{Role, TenantId};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{Database, Result, StorageError, TenantTx, audit};

const KEY_PREFIX: &str = "fwk_";
/// Characters of a key shown to humans to tell keys apart (`fwk_` + 8 hex digits).
const DISPLAY_LEN: usize = 12;

/// A freshly generated key: `plain` is shown once and never stored.
#[derive(Debug)]
pub struct NewKey {
    pub plain: flywheel_contracts::Secret<String>,
    pub prefix: String,
    hash: [u8; 32],
}

impl NewKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let mut plain = String::with_capacity(KEY_PREFIX.len() + 64);
        plain.push_str(KEY_PREFIX);
        for b in bytes {
            plain.push_str(&format!("{b:02x}"));
        }
        let prefix = plain[..DISPLAY_LEN].to_owned();
        let hash = hash_key(&plain);
        Self { plain: plain.into(), prefix, hash }
    }

    pub(crate) fn hash(&self) -> &[u8] {
        &self.hash
    }
}

fn hash_key(plain: &str) -> [u8; 32] {
    Sha256::digest(plain.as_bytes()).into()
}

/// Who is calling: resolved from an API key, used for every authorization decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: TenantId,
    pub key_id: ApiKeyId,
    pub role: Role,
    /// False when the tenant is suspended or deleted.
    pub tenant_active: bool,
}

impl Database {
    /// Resolves a presented key. `None` for a malformed, unknown, revoked or expired key (the
    /// caller answers all of these the same way).
    pub async fn authenticate(&self, presented: &str) -> Result<Option<Principal>> {
        let well_formed = presented.len() == KEY_PREFIX.len() + 64
            && presented.starts_with(KEY_PREFIX)
            && presented[KEY_PREFIX.len()..].bytes().all(|b| b.is_ascii_hexdigit());
        if !well_formed {
            return Ok(None);
        }
        let row: Option<(Uuid, Uuid, String, String)> =
            sqlx::query_as("select tenant_id, key_id, role, tenant_status from auth_lookup_api_key($1)")
                .bind(hash_key(presented).as_slice())
                .fetch_optional(self.pool())
                .await?;
        row.map(|(tenant, key, role, status)| {
            Ok(Principal {
                tenant_id: TenantId::from_uuid(tenant),
                key_id: ApiKeyId::from_uuid(key),
                role: role.parse().map_err(|_| StorageError::Internal(format!("unknown role {role:?} in api_keys")))?,
                tenant_active: status == "active",
            })
        })
        .transpose()
    }
}

/// Issues a new key for the transaction's tenant and records it in the audit log.
pub async fn create(tx: &mut TenantTx, name: &str, role: Role, actor: &audit::Actor) -> Result<(ApiKeyId, NewKey)> {
    let key = NewKey::generate();
    let id = ApiKeyId::new();
    let tenant = tx.tenant_id();
    sqlx::query("insert into api_keys (tenant_id, id, name, prefix, key_hash, role) values ($1, $2, $3, $4, $5, $6)")
        .bind(tenant.as_uuid())
        .bind(id.as_uuid())
        .bind(name)
        .bind(&key.prefix)
        .bind(key.hash.as_slice())
        .bind(role.as_str())
        .execute(tx.conn())
        .await?;
    audit::record(
        tx,
        actor,
        "api_key.create",
        "api_key",
        &id.to_string(),
        None,
        Some(serde_json::json!({"name": name, "role": role.as_str(), "prefix": key.prefix})),
    )
    .await?;
    Ok((id, key))
}

/// Revokes a key of the transaction's tenant. `NotFound` if it has no such key.
pub async fn revoke(tx: &mut TenantTx, id: ApiKeyId, actor: &audit::Actor) -> Result<()> {
    let tenant = tx.tenant_id();
    let done =
        sqlx::query("update api_keys set revoked_at = now() where tenant_id = $1 and id = $2 and revoked_at is null")
            .bind(tenant.as_uuid())
            .bind(id.as_uuid())
            .execute(tx.conn())
            .await?;
    if done.rows_affected() == 0 {
        return Err(StorageError::NotFound);
    }
    audit::record(tx, actor, "api_key.revoke", "api_key", &id.to_string(), None, None).await
}
