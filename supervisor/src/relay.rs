//! The outbox relay: performs the effects steps recorded in the outbox, at least once each,
//! through the `EffectHandler` registered for their kind. Woken right after a checkpoint that may
//! have recorded effects, and every `relay_interval` regardless (effects whose relay died become
//! due again when their lease ends). Effects are performed outside any transaction; each one's
//! completion is committed on its own.

use std::sync::Arc;
use std::time::Duration;

use flywheel_actors::agent::EffectError;
use flywheel_contracts::TenantId;
use flywheel_storage::{StorageError, outbox};

use crate::runtime::Shared;

pub(crate) async fn run(shared: Arc<Shared>) {
    loop {
        if let Err(e) = relay_once(&shared).await {
            tracing::warn!(error = %e, "Outbox relay pass failed; will retry.");
        }
        tokio::select! {
            _ = shared.relay_wake.notified() => {}
            _ = tokio::time::sleep(shared.config.relay_interval) => {}
        }
    }
}

async fn relay_once(shared: &Shared) -> Result<(), StorageError> {
    for tenant in shared.db.tenants_with_due_effects().await? {
        relay_tenant(shared, tenant).await?;
    }
    Ok(())
}

async fn relay_tenant(shared: &Shared, tenant: TenantId) -> Result<(), StorageError> {
    let config = &shared.config;
    let mut tx = shared.db.begin(tenant).await?;
    let effects = outbox::claim(&mut tx, 50, config.relay_lease).await?;
    tx.commit().await?;
    for effect in effects {
        let outcome = match shared.registry.effect(&effect.kind) {
            Some(handler) => handler.perform(tenant, &effect.idempotency_key, &effect.payload).await,
            None => Err(EffectError::Retryable(format!("no handler for effect kind {:?} on this node", effect.kind))),
        };
        let mut tx = shared.db.begin(tenant).await?;
        match outcome {
            Ok(()) => outbox::complete(&mut tx, effect.id).await?,
            Err(e) => {
                let give_up = matches!(e, EffectError::Fatal(_)) || effect.attempts >= config.relay_max_attempts;
                let exponent = u32::try_from(effect.attempts.clamp(1, 10)).unwrap_or(10);
                let delay = Duration::from_millis(500)
                    .saturating_mul(2u32.saturating_pow(exponent - 1))
                    .min(Duration::from_secs(300));
                tracing::warn!(tenant_id = %tenant, effect = %effect.kind, key = %effect.idempotency_key, attempts = effect.attempts, give_up, error = %e, "Effect failed.");
                outbox::retry_later(&mut tx, effect.id, &e.to_string(), delay, give_up).await?;
            }
        }
        tx.commit().await?;
    }
    Ok(())
}
