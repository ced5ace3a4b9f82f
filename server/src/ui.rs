//! The web UI: server-rendered pages (Maud) enhanced with htmx, served with its assets from
//! this binary. One file per page; shared pieces here. Pages need a session (or an API
//! token); without one they redirect to the login page.

pub mod assets;
pub mod dashboard;
pub mod login;
pub mod machine;
pub mod machines;
pub mod os;
pub mod rules;
pub mod tokens;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::auth::http::{authorize, principal};
use crate::auth::{Auth, Principal};
use crate::error::Error;
use crate::machines::{Machine, State as MState};
use crate::state::AppState;

/// Every UI path, in one place.
pub mod paths {
    pub const DASHBOARD: &str = "/";
    pub const LOGIN: &str = "/login";
    pub const LOGOUT: &str = "/logout";
    pub const MACHINES: &str = "/machines";
    pub const MACHINE_ROWS: &str = "/machines/rows";
    pub const BULK_CONFIRM: &str = "/machines/bulk/confirm";
    pub const BULK_APPLY: &str = "/machines/bulk/apply";
    pub const OS: &str = "/os";
    pub const RULES: &str = "/rules";
    pub const SSH_KEYS: &str = "/os/ssh-keys";
    /// Refresh every OS entry's checksum from its published list.
    pub const OS_REFRESH: &str = "/os-refresh";
    pub const TOKENS: &str = "/tokens";
    pub const HTMX: &str = "/static/vendor/htmx-2.0.11/htmx.min.js";
    pub const APP_JS: &str = "/static/app.js";
    pub const APP_CSS: &str = "/static/app.css";

    pub fn machine(id: &str) -> String {
        format!("/machines/{id}")
    }
    pub fn machine_action(id: &str, action: &str) -> String {
        format!("/machines/{id}/{action}")
    }
    pub fn os_entry(slug: &str) -> String {
        format!("/os/{slug}")
    }
    pub fn held_action(machine: &str, held: i64, action: &str) -> String {
        format!("/machines/{machine}/held/{held}/{action}")
    }

    pub fn token(id: &str) -> String {
        format!("/tokens/{id}")
    }
}

/// UI routes: (public, protected).
pub fn router(state: AppState) -> Router<AppState> {
    let public = Router::new()
        .route(paths::LOGIN, get(login::page).post(login::submit))
        .route("/static/{*path}", get(assets::serve));
    let protected = Router::new()
        .route(paths::DASHBOARD, get(dashboard::page))
        .route("/dashboard/live", get(dashboard::live))
        .route(paths::LOGOUT, post(login::logout))
        .route(paths::MACHINES, get(machines::page))
        .route(paths::MACHINE_ROWS, get(machines::rows))
        .route(paths::BULK_CONFIRM, post(machines::bulk_confirm))
        .route(paths::BULK_APPLY, post(machines::bulk_apply))
        .route("/machines/{id}", get(machine::page).delete(machine::delete))
        .route("/machines/{id}/status", get(machine::status))
        .route("/machines/{id}/assign", post(machine::assign))
        .route("/machines/{id}/reimage", post(machine::reimage))
        .route("/machines/{id}/cancel", post(machine::cancel))
        .route("/machines/{id}/details", post(machine::details))
        .route(
            "/machines/{id}/held/{held}/{answer}",
            post(machine::decide_held),
        )
        .route(paths::OS, get(os::page).post(os::create))
        .route(paths::SSH_KEYS, post(os::save_ssh_keys))
        .route(paths::OS_REFRESH, post(os::refresh))
        .route("/os/{slug}", axum::routing::delete(os::delete))
        .route(paths::RULES, get(rules::page).post(rules::create))
        .route("/rules/{id}", axum::routing::delete(rules::delete))
        .route(paths::TOKENS, get(tokens::page).post(tokens::create))
        .route("/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route_layer(axum::middleware::from_fn_with_state(state, require_login))
        // What an operator sees is theirs alone: never kept by a browser or a proxy.
        .layer(
            tower_http::set_header::SetResponseHeaderLayer::if_not_present(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            ),
        );
    public.merge(protected)
}

/// Like the API's guard, but a browser without a session is sent to the login page.
async fn require_login(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    let found = match principal(&auth, req.headers()).await {
        Ok(p) => p,
        Err(e) => return error_page(&e),
    };
    let Some(p) = found else {
        let next_path = req.uri().path().to_string();
        let target = if next_path == paths::DASHBOARD {
            paths::LOGIN.to_string()
        } else {
            format!("{}?next={}", paths::LOGIN, urlencode(&next_path))
        };
        if is_htmx(req.headers()) {
            return ([("HX-Redirect", target)], StatusCode::UNAUTHORIZED).into_response();
        }
        return Redirect::to(&target).into_response();
    };
    if let Err(e) = authorize(&p, req.method(), req.headers()) {
        return toast_error(&e);
    }
    req.extensions_mut().insert(p);
    next.run(req).await
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// What every page needs to know about the request.
pub struct Ctx {
    pub user: String,
    pub csrf: Option<String>,
    /// The nav entry to highlight.
    pub section: &'static str,
}

impl Ctx {
    pub fn new(p: &Principal, section: &'static str) -> Ctx {
        match p {
            Principal::Operator { username, csrf, .. } => Ctx {
                user: username.clone(),
                csrf: Some(csrf.clone()),
                section,
            },
            Principal::Token { name, .. } => Ctx {
                user: format!("token {name}"),
                csrf: None,
                section,
            },
        }
    }
}

const HTMX_CONFIG: &str =
    r#"{"allowEval":false,"includeIndicatorStyles":false,"selfRequestsOnly":true}"#;

/// The page frame: head, navigation, main, the toast area.
pub fn layout(ctx: &Ctx, title: &str, body: Markup) -> Markup {
    let nav = [
        (paths::DASHBOARD, "Dashboard", "dashboard"),
        (paths::MACHINES, "Machines", "machines"),
        (paths::OS, "OS images", "os"),
        (paths::RULES, "Rules", "rules"),
        (paths::TOKENS, "API tokens", "tokens"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Dragonfly" }
                link rel="stylesheet" href=(paths::APP_CSS);
                @if let Some(csrf) = &ctx.csrf { meta name="csrf-token" content=(csrf); }
                meta name="htmx-config" content=(HTMX_CONFIG);
                script src=(paths::HTMX) defer {}
                script src=(paths::APP_JS) defer {}
            }
            body data-live {
                a.skip href="#main" hidden { "Skip to content" }
                header.top {
                    a.brand href=(paths::DASHBOARD) { "Dragonfly" }
                    nav aria-label="Main" {
                        @for (href, label, key) in nav {
                            @if key == ctx.section {
                                a href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                    div.who {
                        span #live-status .live.off { "connecting…" }
                        span { (ctx.user) }
                        button.secondary hx-post=(paths::LOGOUT) { "Log out" }
                    }
                }
                main #main { (body) }
                div #toast aria-live="polite" {}
            }
        }
    }
}

/// A lifecycle state badge; offline is shown beside the state, not instead of it.
pub fn state_badge(state: MState, offline: bool) -> Markup {
    html! {
        span class={ "badge " (state.as_str()) } { (state.as_str()) }
        @if offline { " " span.badge.offline title="no heartbeat recently" { "offline" } }
    }
}

pub fn machine_name(m: &Machine) -> String {
    m.hostname.clone().unwrap_or_else(|| m.boot_mac.clone())
}

pub fn bytes(n: Option<u64>) -> String {
    match n {
        None => "—".into(),
        Some(b) if b >= 1 << 40 => format!("{:.1} TiB", b as f64 / (1u64 << 40) as f64),
        Some(b) if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        Some(b) => format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64),
    }
}

/// `2026-11-25T09:00:01.123Z` → `2026-11-25 09:00:01`
pub fn when(ts: &str) -> String {
    ts.get(..19).unwrap_or(ts).replace('T', " ")
}

/// A toast for an htmx request that failed: swapped into `#toast` whatever the target was.
pub fn toast_error(e: &Error) -> Response {
    let (status, message) = user_message(e);
    (
        status,
        [("HX-Retarget", "#toast"), ("HX-Reswap", "innerHTML")],
        html! { div.toast role="alert" { (message) } },
    )
        .into_response()
}

pub fn toast_ok(message: &str) -> Markup {
    html! { div.toast.ok role="status" { (message) } }
}

fn user_message(e: &Error) -> (StatusCode, String) {
    match e {
        Error::Store(_) | Error::Internal(_) => {
            tracing::error!(error = %e, "UI request failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on the server; see its log.".into(),
            )
        }
        Error::NotFound(what) => (StatusCode::NOT_FOUND, format!("{what} not found")),
        Error::Invalid { field, message } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{field}: {message}"),
        ),
        Error::Conflict(m) => (StatusCode::CONFLICT, m.clone()),
        Error::Unresolved { field, message } => {
            (StatusCode::CONFLICT, format!("{field}: {message}"))
        }
        Error::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
        other => (StatusCode::BAD_REQUEST, other.to_string()),
    }
}

/// A whole-page error (a bad link, a deleted machine).
pub fn error_page(e: &Error) -> Response {
    let (status, message) = user_message(e);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Error · Dragonfly" }
                link rel="stylesheet" href=(paths::APP_CSS);
            }
            body { main.login { div.panel {
                h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("Error")) }
                p { (message) }
                p { a href=(paths::DASHBOARD) { "Back to the dashboard" } }
            } } }
        }
    };
    (status, page).into_response()
}

/// UI handlers return this: a page or partial, or an error rendered for a person.
pub type UiResult = Result<Response, UiError>;

/// An error on its way to a person: a toast for htmx requests, a page otherwise.
pub struct UiError {
    error: Error,
    htmx: bool,
}

impl UiError {
    pub fn new(error: Error, headers: &HeaderMap) -> UiError {
        UiError {
            error,
            htmx: is_htmx(headers),
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        if self.htmx {
            toast_error(&self.error)
        } else {
            error_page(&self.error)
        }
    }
}

/// `result.ui(&headers)?` in UI handlers.
pub trait UiResultExt<T> {
    fn ui(self, headers: &HeaderMap) -> Result<T, UiError>;
}

impl<T> UiResultExt<T> for Result<T, Error> {
    fn ui(self, headers: &HeaderMap) -> Result<T, UiError> {
        self.map_err(|e| UiError::new(e, headers))
    }
}

/// A response that tells htmx to load another page.
pub fn hx_redirect(to: &str) -> Response {
    ([("HX-Redirect", to.to_string())], StatusCode::OK).into_response()
}

/// Raw HTML (for pre-rendered pieces such as snapshots).
pub fn raw(s: &str) -> Markup {
    PreEscaped(s.to_string())
}

/// Content type for HTML fragments.
pub fn html_response(m: Markup) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        m.into_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_badges_snapshot() {
        let all: String = MState::ALL
            .iter()
            .map(|s| state_badge(*s, false).into_string())
            .chain(std::iter::once(
                state_badge(MState::Installed, true).into_string(),
            ))
            .collect::<Vec<_>>()
            .join("\n");
        insta::assert_snapshot!(all);
    }

    #[test]
    fn the_layout_has_no_inline_script_and_carries_the_csrf_token() {
        let ctx = Ctx {
            user: "admin".into(),
            csrf: Some("tok123".into()),
            section: "machines",
        };
        let html = layout(&ctx, "Machines", html! { p { "body" } }).into_string();
        assert!(html.contains(r#"<meta name="csrf-token" content="tok123">"#));
        assert!(html.contains(r#"<a href="/machines" aria-current="page">"#));
        // Every script has a src: the CSP allows no inline script.
        assert_eq!(
            html.matches("<script").count(),
            html.matches("<script src=").count()
        );
        assert!(!html.contains(" on"), "no inline event handlers");
    }
}
