//! Request extractors that turn bad input into precise errors: `ValidJson<T>` (media type,
//! size, JSON syntax, the contract's JSON Schema, then the Rust type) and `ListParams`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use flywheel_contracts::schema::{self, SchemaRef};
use flywheel_storage::ListQuery;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// A request body type and the schema that describes it.
pub(crate) trait Contract: DeserializeOwned {
    const SCHEMA: SchemaRef;
}

macro_rules! contract {
    ($($ty:ty => $schema:ident),* $(,)?) => {
        $(impl Contract for $ty { const SCHEMA: SchemaRef = schema::$schema; })*
    };
}

contract! {
    flywheel_contracts::api::brand_core::BrandCoreCreate => BRAND_CORE_CREATE,
    flywheel_contracts::api::brand_core::BrandCoreUpdate => BRAND_CORE_UPDATE,
    flywheel_contracts::api::persona::PersonaCreate => PERSONA_CREATE,
    flywheel_contracts::api::persona::PersonaUpdate => PERSONA_UPDATE,
    flywheel_contracts::api::campaign::CampaignCreate => CAMPAIGN_CREATE,
    flywheel_contracts::api::campaign::CampaignUpdate => CAMPAIGN_UPDATE,
    flywheel_contracts::api::lead::LeadCreate => LEAD_CREATE,
    flywheel_contracts::api::lead::LeadUpdate => LEAD_UPDATE,
    flywheel_contracts::api::run::RunCreate => RUN_CREATE,
    flywheel_contracts::api::approval::DecisionRequest => DECISION_REQUEST,
    flywheel_contracts::api::approval::ApprovalPolicyPut => APPROVAL_POLICY_PUT,
    flywheel_contracts::api::model_budget::ModelBudgetPut => MODEL_BUDGET_PUT,
    flywheel_contracts::api::tracking::TrackingSettingsUpdate => TRACKING_UPDATE,
}

/// A JSON body checked against its contract. A top-level `tenant_id` is dropped before
/// anything else looks at the body: the tenant is the API key's, whatever the body says.
pub(crate) struct ValidJson<T>(pub T);

impl<T: Contract> FromRequest<AppState> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json")
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.config().max_body_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::MalformedJson("the request body could not be read".into())
            }
        })?;
        let mut value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::MalformedJson(format!("the body is not valid JSON: {e}")))?;
        if let Some(object) = value.as_object_mut()
            && object.remove("tenant_id").is_some()
        {
            tracing::debug!("Ignored a tenant_id in a request body.");
        }
        schema::validate(T::SCHEMA, &value).map_err(|v| ApiError::Validation { field: v.field, message: v.message })?;
        // The schema passed; the typed parse adds the rules a schema cannot say (an exact
        // amount for the currency, a normalised email) and names the field that broke them.
        serde_path_to_error::deserialize(value).map(ValidJson).map_err(|e| {
            let path = e.path().to_string();
            ApiError::Validation { field: (path != ".").then_some(path), message: e.into_inner().to_string() }
        })
    }
}

/// `?limit=&cursor=` plus any filters a list accepts. Unknown parameters (a `tenant_id`
/// included) are ignored.
pub(crate) struct ListParams {
    pub query: ListQuery,
    params: HashMap<String, String>,
}

impl ListParams {
    /// A filter parsed by `parse`; a value it refuses is a 422 naming the parameter.
    pub fn filter<T>(&self, name: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<Option<T>, ApiError> {
        match self.params.get(name) {
            None => Ok(None),
            Some(raw) => {
                parse(raw).map(Some).ok_or_else(|| ApiError::validation(name, format!("{raw:?} is not a valid {name}")))
            }
        }
    }
}

impl FromRequestParts<AppState> for ListParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        let Query(params) = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map_err(|_| ApiError::Validation { field: None, message: "the query string is malformed".into() })?;
        let limit = match params.get("limit") {
            None => ListQuery::DEFAULT_LIMIT,
            Some(raw) => {
                raw.parse::<u32>().ok().filter(|n| (1..=ListQuery::MAX_LIMIT).contains(n)).ok_or_else(|| {
                    ApiError::validation("limit", format!("limit is a whole number from 1 to {}", ListQuery::MAX_LIMIT))
                })?
            }
        };
        let after = match params.get("cursor") {
            None => None,
            Some(raw) => Some(
                uuid::Uuid::parse_str(raw)
                    .map_err(|_| ApiError::validation("cursor", "cursor is the next_cursor of a previous page"))?,
            ),
        };
        Ok(ListParams { query: ListQuery { limit, after }, params })
    }
}

/// A record id from the path. Anything that is not an id is answered like an unknown id.
pub(crate) fn path_id<T: std::str::FromStr>(raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

/// A snake_case enum value from a query parameter.
pub(crate) fn enum_param<T: DeserializeOwned>(raw: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(raw.to_owned())).ok()
}
