//! API tokens for automation: created (shown once), listed, revoked.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::ApiJson;
use crate::auth::{Auth, Principal, Scope, TokenView};
use crate::error::{Error, ErrorBody, Result};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What the token is for, 1–64 characters.
    pub name: String,
    pub scope: Scope,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: TokenView,
    /// The secret, shown only in this response: send it as `Authorization: Bearer <secret>`.
    pub secret: String,
}

fn require_admin(p: &Principal) -> Result<()> {
    match p {
        Principal::Token {
            scope: Scope::Read, ..
        } => Err(Error::Forbidden(
            "a read-only token cannot manage tokens".into(),
        )),
        _ => Ok(()),
    }
}

/// List API tokens (never their secrets).
#[utoipa::path(
    get, path = "/api/v1/tokens", tag = "auth",
    responses(
        (status = 200, description = "Tokens", body = [TokenView]),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
    )
)]
pub async fn list(
    State(auth): State<Auth>,
    axum::Extension(p): axum::Extension<Principal>,
) -> Result<Json<Vec<TokenView>>> {
    require_admin(&p)?;
    Ok(Json(auth.tokens().await?))
}

/// Create an API token; its secret is in this response only.
#[utoipa::path(
    post, path = "/api/v1/tokens", tag = "auth",
    request_body = CreateToken,
    responses(
        (status = 201, description = "Created", body = CreatedToken),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 422, description = "Invalid value", body = ErrorBody),
    )
)]
pub async fn create(
    State(auth): State<Auth>,
    axum::Extension(p): axum::Extension<Principal>,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>)> {
    require_admin(&p)?;
    let (token, secret) = auth.create_token(&body.name, body.scope, &p.name()).await?;
    tracing::info!(token = %token.id, by = %p.name(), "API token created");
    Ok((StatusCode::CREATED, Json(CreatedToken { token, secret })))
}

/// Revoke an API token.
#[utoipa::path(
    delete, path = "/api/v1/tokens/{id}", tag = "auth",
    params(("id" = String, Path, description = "Token id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 404, description = "No such live token", body = ErrorBody),
    )
)]
pub async fn revoke(
    State(auth): State<Auth>,
    axum::Extension(p): axum::Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    require_admin(&p)?;
    auth.revoke_token(&id).await?;
    tracing::info!(token = %id, by = %p.name(), "API token revoked");
    Ok(StatusCode::NO_CONTENT)
}
