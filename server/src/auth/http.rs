//! Authentication at the HTTP boundary, shared by the API and the UI: who is making a
//! request, whether they may, and the session cookie.
//!
//! A request is an operator's when it carries a live session cookie, or automation's when it
//! carries `Authorization: Bearer dfo_…` (an API token). Browsers send cookies on their own,
//! so a cookie-authenticated request that changes state must also carry the session's CSRF
//! token in `X-CSRF-Token`; bearer requests need none (nothing sends them implicitly).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use super::{Auth, Principal, Scope, same_secret};
use crate::error::{Error, Result};

pub const SESSION_COOKIE: &str = "dragonfly_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive,
/// RFC 9110 11.1).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Finds the principal of a request without enforcing anything.
pub async fn principal(auth: &Auth, headers: &HeaderMap) -> Result<Option<Principal>> {
    if let Some(token) = bearer(headers) {
        return auth.token(token).await;
    }
    let jar = CookieJar::from_headers(headers);
    match jar.get(SESSION_COOKIE) {
        Some(c) if c.value().len() <= 128 => auth.session(c.value()).await,
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
pub async fn require_operator(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    let found = match principal(&auth, req.headers()).await {
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
