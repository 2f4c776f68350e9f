//! Authentication: `Authorization: Bearer <api key>` → the caller's [`Principal`] (tenant and
//! role). The tenant is the key's, always; handlers get it from here and nowhere else.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use flywheel_storage::api_keys::Principal;
use flywheel_storage::audit::Actor;

use crate::AppState;
use crate::error::ApiError;

/// The authenticated caller of a `/v1` endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Auth(pub Principal);

impl Auth {
    /// Fails with 403 unless the caller's role may write tenant data.
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.0.role.can_write() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("the {} role cannot change data", self.0.role)))
        }
    }

    pub fn actor(&self) -> Actor {
        Actor::ApiKey(self.0.key_id)
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Auth::from_headers(&parts.headers, state).await
    }
}

impl Auth {
    /// The caller named by `Authorization: Bearer <key>`, for handlers that accept other
    /// credentials too (the collect endpoint also takes a public write key).
    pub(crate) async fn from_headers(headers: &HeaderMap, state: &AppState) -> Result<Self, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or(ApiError::Unauthorized)?;
        let principal = state.db().authenticate(presented).await?.ok_or(ApiError::Unauthorized)?;
        if !principal.tenant_active {
            return Err(ApiError::Forbidden("this tenant is suspended".into()));
        }
        Ok(Auth(principal))
    }
}

/// An authenticated caller whose role may write; anyone else gets 403 before the body is read.
#[derive(Debug, Clone, Copy)]
pub struct Writer(pub Auth);

impl FromRequestParts<AppState> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let auth = Auth::from_request_parts(parts, state).await?;
        auth.require_write()?;
        Ok(Writer(auth))
    }
}

/// An authenticated caller whose role may decide approvals at all (not a viewer); whether it
/// may decide a given approval is that approval's `allowed_roles`. Checked before the body.
#[derive(Debug, Clone, Copy)]
pub struct Decider(pub Auth);

impl FromRequestParts<AppState> for Decider {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let auth = Auth::from_request_parts(parts, state).await?;
        if auth.0.role == flywheel_contracts::Role::Viewer {
            return Err(ApiError::Forbidden("the viewer role cannot decide approvals".into()));
        }
        Ok(Decider(auth))
    }
}

/// An authenticated owner (policies, budgets, keys); anyone else gets 403 before the body is read.
#[derive(Debug, Clone, Copy)]
pub struct Owner(pub Auth);

impl FromRequestParts<AppState> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let auth = Auth::from_request_parts(parts, state).await?;
        if !auth.0.role.can_administer() {
            return Err(ApiError::Forbidden(format!("only an owner can do this; the key's role is {}", auth.0.role)));
        }
        Ok(Owner(auth))
    }
}
