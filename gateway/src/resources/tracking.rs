//! Tracking settings (`GET|PATCH /v1/tracking`, `POST /v1/tracking/rotate_key`; changes by
//! owners) and stored events: `GET /v1/events?type=&from=&to=&visitor_id=&session_id=&lead_id=`
//! and `GET /v1/leads/{id}/timeline` (the lead's events and its visitors' anonymous history).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use flywheel_contracts::api::tracking::{StoredEvents, TrackingSettings, TrackingSettingsUpdate};
use flywheel_contracts::events::EventType;
use flywheel_storage::events::{self, EventCursor, EventFilter, EventPage};
use flywheel_storage::tracking::{self, Settings, SettingsChange};

use crate::AppState;
use crate::auth::{Auth, Owner};
use crate::error::ApiError;
use crate::extract::{ValidJson, enum_param, path_id};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tracking", get(show).patch(update))
        .route("/v1/tracking/rotate_key", post(rotate_key))
        .route("/v1/events", get(list))
        .route("/v1/leads/{id}/timeline", get(timeline))
}

/// Where pages load the script from: the configured public URL, else this request's host.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config().public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost:8080");
    format!("http://{host}")
}

fn resource(settings: Settings, base: &str) -> TrackingSettings {
    let cookieless = if settings.cookieless { " data-cookieless" } else { "" };
    TrackingSettings {
        snippet: format!(r#"<script async src="{base}/t.js" data-key="{}"{cookieless}></script>"#, settings.write_key),
        write_key: settings.write_key,
        allowed_origins: settings.allowed_origins,
        cookieless: settings.cookieless,
        events_per_second: settings.events_per_second,
        key_rotated_at: settings.key_rotated_at,
        updated_at: settings.updated_at,
    }
}

async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    auth: Auth,
) -> Result<Json<TrackingSettings>, ApiError> {
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let settings = tracking::get(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(resource(settings, &base_url(&state, &headers))))
}

async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Owner(auth): Owner,
    ValidJson(input): ValidJson<TrackingSettingsUpdate>,
) -> Result<Json<TrackingSettings>, ApiError> {
    let origins = input.allowed_origins.map(|list| {
        // Origins compare case-insensitively and never carry a trailing slash.
        list.into_iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect::<Vec<_>>()
    });
    let change = SettingsChange {
        allowed_origins: origins,
        cookieless: input.cookieless,
        events_per_second: input.events_per_second.into_change(),
    };
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let settings = tracking::update(&mut tx, &change, &auth.actor()).await?;
    tx.commit().await?;
    state.tracking().forget_tenant(auth.0.tenant_id);
    Ok(Json(resource(settings, &base_url(&state, &headers))))
}

async fn rotate_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Owner(auth): Owner,
) -> Result<Json<TrackingSettings>, ApiError> {
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let settings = tracking::rotate_key(&mut tx, &auth.actor()).await?;
    tx.commit().await?;
    state.tracking().forget_tenant(auth.0.tenant_id);
    Ok(Json(resource(settings, &base_url(&state, &headers))))
}

fn page(params: &HashMap<String, String>) -> Result<EventPage, ApiError> {
    let limit = match params.get("limit") {
        None => 100,
        Some(raw) => raw.parse::<u32>().ok().filter(|n| (1..=EventPage::MAX_LIMIT).contains(n)).ok_or_else(|| {
            ApiError::validation("limit", format!("limit is a whole number from 1 to {}", EventPage::MAX_LIMIT))
        })?,
    };
    let after = params
        .get("cursor")
        .map(|raw| {
            EventCursor::parse(raw)
                .ok_or_else(|| ApiError::validation("cursor", "cursor is the next_cursor of a previous page"))
        })
        .transpose()?;
    Ok(EventPage { limit, after })
}

fn time_param(params: &HashMap<String, String>, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    params
        .get(name)
        .map(|raw| {
            DateTime::parse_from_rfc3339(raw).map(|d| d.with_timezone(&Utc)).map_err(|_| {
                ApiError::validation(name, format!("{name} is an RFC 3339 time with a zone, e.g. 2026-11-25T00:00:00Z"))
            })
        })
        .transpose()
}

fn token_param(params: &HashMap<String, String>, name: &str) -> Result<Option<String>, ApiError> {
    params
        .get(name)
        .map(|raw| {
            let ok = (1..=128).contains(&raw.len())
                && raw.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
            if ok {
                Ok(raw.clone())
            } else {
                Err(ApiError::validation(name, format!("{name} is 1 to 128 letters, digits and . _ : - characters")))
            }
        })
        .transpose()
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<StoredEvents>, ApiError> {
    let filter = EventFilter {
        event_type: params
            .get("type")
            .map(|raw| {
                enum_param::<EventType>(raw)
                    .ok_or_else(|| ApiError::validation("type", format!("{raw:?} is not an event type")))
            })
            .transpose()?,
        from: time_param(&params, "from")?,
        to: time_param(&params, "to")?,
        visitor_id: token_param(&params, "visitor_id")?,
        session_id: token_param(&params, "session_id")?,
        lead_id: params
            .get("lead_id")
            .map(|raw| {
                uuid::Uuid::parse_str(raw)
                    .map_err(|_| ApiError::validation("lead_id", "lead_id is a lead's id (a UUID)"))
            })
            .transpose()?,
    };
    let page = page(&params)?;
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let (data, next_cursor) = events::list(&mut tx, &filter, page).await?;
    tx.commit().await?;
    Ok(Json(StoredEvents { data, next_cursor }))
}

async fn timeline(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<StoredEvents>, ApiError> {
    let id: flywheel_contracts::ids::LeadId = path_id(&id)?;
    let page = page(&params)?;
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    // 404 for a lead that is not this tenant's, exactly as for an unknown id.
    flywheel_storage::leads::get(&mut tx, id).await?;
    let (data, next_cursor) = events::timeline(&mut tx, id.as_uuid(), page).await?;
    tx.commit().await?;
    Ok(Json(StoredEvents { data, next_cursor }))
}
