//! Authentication at the HTTP boundary: the middleware that closes every non-public route,
//! and the login/logout/whoami endpoints.
//!
//! A request is an operator's when it carries a live session cookie, or automation's when it
//! carries `Authorization: Bearer dfo_…` (an API token). Browsers send cookies on their own,
//! so a cookie-authenticated request that changes state must also carry the session's CSRF
//! token in `X-CSRF-Token`; bearer requests need none (nothing sends them implicitly).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::ApiJson;
use crate::auth::{Principal, Scope, same_secret};
use crate::error::{Error, ErrorBody, Result};
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "dragonfly_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Finds the principal of a request without enforcing anything.
pub async fn principal(state: &AppState, headers: &HeaderMap) -> Result<Option<Principal>> {
    if let Some(token) = bearer(headers) {
        return state.auth.token(token).await;
    }
    let jar = CookieJar::from_headers(headers);
    match jar.get(SESSION_COOKIE) {
        Some(c) if c.value().len() <= 128 => state.auth.session(c.value()).await,
        _ => Ok(None),
    }
}

fn safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Checks that `principal` may make a request with `method` and these headers.
pub fn authorize(principal: &Principal, method: &Method, headers: &HeaderMap) -> Result<()> {
    match principal {
        Principal::Token {
            scope: Scope::Read, ..
        } if !safe(method) => Err(Error::Forbidden("this API token is read-only".into())),
        Principal::Operator { csrf, .. } if !safe(method) => {
            let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            match sent {
                Some(s) if same_secret(s, csrf) => Ok(()),
                _ => Err(Error::Forbidden(
                    "missing or wrong X-CSRF-Token for this session".into(),
                )),
            }
        }
        _ => Ok(()),
    }
}

/// Middleware for every non-public route: 401 without credentials, 403 when they do not
/// allow the request; otherwise the [`Principal`] is put in the request's extensions.
pub async fn require_operator(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let found = match principal(&state, req.headers()).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let Some(p) = found else {
        return Error::Unauthorized(
            "log in, or send an API token as Authorization: Bearer <token>".into(),
        )
        .into_response();
    };
    if let Err(e) = authorize(&p, req.method(), req.headers()) {
        return e.into_response();
    }
    req.extensions_mut().insert(p);
    next.run(req).await
}

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

/// The session cookie for `value`; `max_age` 0 deletes it.
pub fn session_cookie(value: String, secure: bool, remove: bool) -> Cookie<'static> {
    let mut c = Cookie::build((SESSION_COOKIE, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .build();
    if remove {
        c.make_removal();
    }
    c
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
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<(CookieJar, Json<Me>)> {
    if body.username.len() > 64 || body.password.len() > 1024 {
        return Err(Error::Unauthorized("wrong username or password".into()));
    }
    let s = state
        .auth
        .login(Some(peer.ip()), &body.username, &body.password)
        .await?;
    tracing::info!(user = %s.username, peer = %peer.ip(), "operator logged in");
    let jar = jar.add(session_cookie(s.cookie, state.settings.tls, false));
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
    State(state): State<AppState>,
    axum::Extension(p): axum::Extension<Principal>,
    jar: CookieJar,
) -> Result<(CookieJar, axum::http::StatusCode)> {
    if let Principal::Operator { session, .. } = &p {
        state.auth.logout(session).await?;
    }
    let jar = jar.add(session_cookie(String::new(), state.settings.tls, true));
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
