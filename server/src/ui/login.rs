//! The login page and logout.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::{hx_redirect, paths};
use crate::auth::Principal;
use crate::auth::http::session_cookie;
use crate::error::Error;
use std::sync::Arc;

use crate::auth::Auth;
use crate::config::Settings;

#[derive(Debug, Default, Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Only local paths are followed after login (no open redirect). Browsers drop tabs and
/// newlines from URLs, so `/\t/evil.example` would become `//evil.example`: any control
/// character or whitespace, a backslash, or a second slash first is refused.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            n.to_string()
        }
        _ => paths::DASHBOARD.to_string(),
    }
}

fn form(next: &str, error: Option<&str>, username: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Log in · Dragonfly" }
                link rel="stylesheet" href=(paths::APP_CSS);
            }
            body {
                main.login {
                    form.panel method="post" action=(paths::LOGIN) {
                        h1 { "Dragonfly" }
                        p.muted { "Log in to manage your machines." }
                        @if let Some(e) = error { p.error role="alert" { (e) } }
                        input type="hidden" name="next" value=(next);
                        label for="username" { "Username" }
                        input #username name="username" autocomplete="username" required autofocus value=(username);
                        label for="password" { "Password" }
                        input #password name="password" type="password" autocomplete="current-password" required;
                        p { button type="submit" { "Log in" } }
                        p.muted { "First start? The admin password was printed once on the server's console. "
                            "Set a new one with " code { "dragonfly admin set-password" } "." }
                    }
                }
            }
        }
    }
}

pub async fn page(Query(q): Query<Next>) -> Markup {
    form(&safe_next(q.next.as_deref()), None, "")
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

pub async fn submit(
    State(auth): State<Auth>,
    State(settings): State<Arc<Settings>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    if f.username.len() > 64 || f.password.len() > 1024 {
        return (
            StatusCode::UNAUTHORIZED,
            form(&next, Some("Wrong username or password."), ""),
        )
            .into_response();
    }
    match auth.login(Some(peer.ip()), &f.username, &f.password).await {
        Ok(s) => {
            tracing::info!(user = %s.username, peer = %peer.ip(), "operator logged in (UI)");
            let jar = jar.add(session_cookie(s.cookie, settings.tls, false));
            (jar, Redirect::to(&next)).into_response()
        }
        Err(Error::RateLimited { message, .. }) => (
            StatusCode::TOO_MANY_REQUESTS,
            form(&next, Some(&message), &f.username),
        )
            .into_response(),
        Err(Error::Unauthorized(_)) => (
            StatusCode::UNAUTHORIZED,
            form(&next, Some("Wrong username or password."), &f.username),
        )
            .into_response(),
        Err(e) => super::error_page(&e),
    }
}

pub async fn logout(
    State(auth): State<Auth>,
    State(settings): State<Arc<Settings>>,
    axum::Extension(p): axum::Extension<Principal>,
    jar: CookieJar,
) -> Response {
    if let Principal::Operator { session, .. } = &p {
        if let Err(e) = auth.logout(session).await {
            return super::toast_error(&e);
        }
    }
    let jar = jar.add(session_cookie(String::new(), settings.tls, true));
    (jar, hx_redirect(paths::LOGIN)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(
            safe_next(Some("/machines?state=failed")),
            "/machines?state=failed"
        );
        for bad in [
            "//evil.example",
            "https://evil.example",
            "evil",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn the_login_form_renders_its_error() {
        let html = form("/", Some("Wrong username or password."), "ops").into_string();
        assert!(html.contains("role=\"alert\""));
        assert!(html.contains("value=\"ops\""));
        assert!(!html.contains("<script"), "the login page needs no script");
    }
}
