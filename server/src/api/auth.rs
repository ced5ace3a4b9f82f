//! The login, logout and whoami endpoints. The guard that closes every non-public route is
//! `auth::http::require_operator`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum_extra::extract::cookie::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::ApiJson;
use crate::auth::Principal;
use crate::auth::http::session_cookie;
use crate::error::{Error, ErrorBody, Result};
use std::sync::Arc;

use crate::auth::Auth;
use crate::config::Settings;

/// Credentials for a session.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// The logged-in operator.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub username: String,
    /// `session` or `token`.
    pub via: String,
    /// Send as `X-CSRF-Token` with every state-changing request made with the session
    /// cookie (absent for token requests).
    pub csrf_token: Option<String>,
}

/// Log in; sets the session cookie.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    security(()),
    responses(
        (status = 200, description = "Logged in; the session cookie is set", body = Me),
        (status = 401, description = "Wrong username or password", body = ErrorBody),
        (status = 429, description = "Too many attempts", body = ErrorBody),
    )
)]
pub async fn login(
    State(auth): State<Auth>,
    State(settings): State<Arc<Settings>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<(CookieJar, Json<Me>)> {
    if body.username.len() > 64 || body.password.len() > 1024 {
        return Err(Error::Unauthorized("wrong username or password".into()));
    }
    let s = auth
        .login(Some(peer.ip()), &body.username, &body.password)
        .await?;
    tracing::info!(user = %s.username, peer = %peer.ip(), "operator logged in");
    let jar = jar.add(session_cookie(s.cookie, settings.tls, false));
    Ok((
        jar,
        Json(Me {
            username: s.username,
            via: "session".into(),
            csrf_token: Some(s.csrf),
        }),
    ))
}

/// End the session.
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth",
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "Not logged in", body = ErrorBody),
    )
)]
pub async fn logout(
    State(auth): State<Auth>,
    State(settings): State<Arc<Settings>>,
    axum::Extension(p): axum::Extension<Principal>,
    jar: CookieJar,
) -> Result<(CookieJar, axum::http::StatusCode)> {
    if let Principal::Operator { session, .. } = &p {
        auth.logout(session).await?;
    }
    let jar = jar.add(session_cookie(String::new(), settings.tls, true));
    Ok((jar, axum::http::StatusCode::NO_CONTENT))
}

/// Who am I?
#[utoipa::path(
    get, path = "/api/v1/auth/me", tag = "auth",
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Not logged in", body = ErrorBody),
    )
)]
pub async fn me(axum::Extension(p): axum::Extension<Principal>) -> Json<Me> {
    Json(match p {
        Principal::Operator { username, csrf, .. } => Me {
            username,
            via: "session".into(),
            csrf_token: Some(csrf),
        },
        Principal::Token { name, .. } => Me {
            username: name,
            via: "token".into(),
            csrf_token: None,
        },
    })
}
