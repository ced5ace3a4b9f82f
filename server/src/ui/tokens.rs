//! API tokens for automation: list, create (the secret is shown once), revoke.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use maud::html;
use serde::Deserialize;

use super::{Ctx, UiResult, UiResultExt, hx_redirect, layout, paths, when};
use crate::auth::{Auth, Principal, Scope};
use crate::error::Error;

fn admin_only(p: &Principal) -> crate::error::Result<()> {
    match p {
        Principal::Token {
            scope: Scope::Read, ..
        } => Err(Error::Forbidden(
            "a read-only token cannot manage tokens".into(),
        )),
        _ => Ok(()),
    }
}

pub async fn page(
    State(auth): State<Auth>,
    axum::Extension(p): axum::Extension<Principal>,
    headers: HeaderMap,
) -> UiResult {
    admin_only(&p).ui(&headers)?;
    let ctx = Ctx::new(&p, "tokens");
    let list = auth.tokens().await.ui(&headers)?;
    let body = html! {
        h1 { "API tokens" }
        p.muted { "For scripts and monitoring: send " code { "Authorization: Bearer <token>" } ". "
            em { "read" } " tokens can only read; " em { "admin" } " tokens can do everything an operator can." }
        form.panel.toolbar hx-post=(paths::TOKENS) hx-target="#new-token" {
            label for="token-name" { "Name" }
            input #token-name name="name" required placeholder="grafana";
            label for="token-scope" { "Scope" }
            select #token-scope name="scope" { option value="read" { "read" } option value="admin" { "admin" } }
            button type="submit" { "Create token" }
        }
        div #new-token {}
        @if list.is_empty() {
            div.panel.empty { strong { "No tokens yet" } "Create one above for your automation." }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Name" } th { "Scope" } th.hide-narrow { "Created" } th.hide-narrow { "Last used" } th { "" } } }
                tbody { @for t in &list { tr {
                    td { (t.name) " " span.mono.muted { (t.id) } }
                    td { @match t.scope { Scope::Read => "read", Scope::Admin => "admin" } }
                    td.mono.hide-narrow { (when(&t.created_at)) " by " (t.created_by) }
                    td.mono.hide-narrow { (t.last_used_at.as_deref().map(when).unwrap_or_else(|| "never".into())) }
                    td { @if t.revoked_at.is_some() { span.muted { "revoked" } } @else {
                        button.secondary hx-delete=(paths::token(&t.id)) hx-confirm={ "Revoke " (t.name) "? Anything using it stops working." } { "Revoke" }
                    } }
                } } }
            } }
        }
    };
    Ok(layout(&ctx, "API tokens", body).into_response())
}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    name: String,
    scope: String,
}

pub async fn create(
    State(auth): State<Auth>,
    axum::Extension(p): axum::Extension<Principal>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<TokenForm>,
) -> UiResult {
    admin_only(&p).ui(&headers)?;
    let scope = if f.scope == "admin" {
        Scope::Admin
    } else {
        Scope::Read
    };
    let (token, secret) = auth
        .create_token(&f.name, scope, &p.name())
        .await
        .ui(&headers)?;
    Ok(super::html_response(html! {
        div.panel role="status" {
            p { "Token " strong { (token.name) } " created. Copy it now: it is shown only once." }
            p.secret #token-secret { (secret) }
            p { a href=(paths::TOKENS) { "Done" } }
        }
    }))
}

pub async fn revoke(
    State(auth): State<Auth>,
    axum::Extension(p): axum::Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> UiResult {
    admin_only(&p).ui(&headers)?;
    auth.revoke_token(&id).await.ui(&headers)?;
    Ok(hx_redirect(paths::TOKENS))
}
