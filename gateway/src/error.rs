//! `ApiError`: every way a request can fail, mapped to a status code and the JSON body
//! `{"error": {"code", "message", "field"?}}` in this one place. Internal details are logged,
//! never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flywheel_contracts::api::error::{ErrorBody, ErrorDetail};
use flywheel_storage::StorageError;
use flywheel_supervisor::RuntimeError;

#[derive(Debug)]
pub enum ApiError {
    /// 400: the body is not JSON (or not a JSON object).
    MalformedJson(String),
    /// 422: well-formed JSON that breaks the schema or a business rule.
    Validation { field: Option<String>, message: String },
    /// 404: no such record for this tenant (another tenant's record looks exactly the same).
    NotFound,
    /// 409: a unique value within the tenant is already taken.
    Conflict { field: String },
    /// 409: the request does not fit the record's current state (an approval already decided).
    StateConflict { field: String, message: String },
    /// 413.
    PayloadTooLarge { limit: usize },
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 401: no key, or not a valid one.
    Unauthorized,
    /// 403: the key is valid but its role (or its tenant's state) does not allow this.
    Forbidden(String),
    /// 405.
    MethodNotAllowed,
    /// 413 for a part of the body (an event of a batch), naming it.
    TooLarge { field: Option<String>, message: String },
    /// 429: a rate limit; retry after this many seconds.
    RateLimited { retry_after_secs: u64 },
    /// 503: the ingest backlog is at its bound; retry after this many seconds.
    Overloaded { retry_after_secs: u64 },
    /// 503: a dependency is down or saturated; retry later.
    Unavailable,
    /// 500: our fault; the detail is in the log.
    Internal,
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation { field: Some(field.into()), message: message.into() }
    }

    fn parts(&self) -> (StatusCode, &'static str, String, Option<String>) {
        match self {
            ApiError::MalformedJson(m) => (StatusCode::BAD_REQUEST, "malformed_json", m.clone(), None),
            ApiError::Validation { field, message } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", message.clone(), field.clone())
            }
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", "no such resource".into(), None),
            ApiError::Conflict { field } => (
                StatusCode::CONFLICT,
                "conflict",
                format!("{field} is already taken by another record"),
                Some(field.clone()),
            ),
            ApiError::StateConflict { field, message } => {
                (StatusCode::CONFLICT, "conflict", message.clone(), Some(field.clone()))
            }
            ApiError::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is larger than {limit} bytes"),
                None,
            ),
            ApiError::TooLarge { field, message } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message.clone(), field.clone())
            }
            ApiError::RateLimited { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many events or requests; retry in {retry_after_secs} s"),
                None,
            ),
            ApiError::Overloaded { retry_after_secs } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!("the event backlog is full; retry in {retry_after_secs} s"),
                None,
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json".into(),
                None,
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid API key is required: Authorization: Bearer <key>".into(),
                None,
            ),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone(), None),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed on this path".into(),
                None,
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service is temporarily unavailable; retry shortly".into(),
                None,
            ),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error".into(), None),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => ApiError::NotFound,
            StorageError::Conflict { field } => ApiError::Conflict { field: field.into_owned() },
            StorageError::Invalid { field, message } => {
                ApiError::Validation { field: Some(field.into_owned()), message }
            }
            StorageError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "Storage unavailable.");
                ApiError::Unavailable
            }
            StorageError::Internal(detail) => {
                tracing::error!(error = %detail, "Storage error.");
                ApiError::Internal
            }
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::NotFound => ApiError::NotFound,
            RuntimeError::Forbidden(m) => ApiError::Forbidden(m),
            RuntimeError::Invalid { field, message } => ApiError::Validation { field: Some(field), message },
            RuntimeError::Conflict { field, message } => ApiError::StateConflict { field, message },
            RuntimeError::Storage(s) => s.into(),
            RuntimeError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "Runtime unavailable.");
                ApiError::Unavailable
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, field) = self.parts();
        let body = ErrorBody { error: ErrorDetail { code: code.to_owned(), message, field } };
        let mut response = (status, Json(body)).into_response();
        match self {
            ApiError::Unauthorized => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Unavailable => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::RateLimited { retry_after_secs } | ApiError::Overloaded { retry_after_secs } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
            }
            _ => {}
        }
        response
    }
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
