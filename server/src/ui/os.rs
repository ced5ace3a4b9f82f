//! The OS catalogue: what operators can assign, with a form to add entries.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use maud::html;
use serde::Deserialize;

use super::{Ctx, UiResult, UiResultExt, hx_redirect, layout, paths};
use crate::auth::Principal;
use crate::machines::catalogue::{Catalogue, OsInput};

pub async fn page(
    State(catalogue): State<Catalogue>,
    axum::Extension(p): axum::Extension<Principal>,
    headers: HeaderMap,
) -> UiResult {
    let ctx = Ctx::new(&p, "os");
    let list = catalogue.list().await.ui(&headers)?;
    let body = html! {
        h1 { "OS images" }
        p.muted { "Operators assign these to machines. Built-in entries can be pointed at a local mirror through the API "
            code { "PUT /api/v1/os/{slug}" } " but not deleted." }
        div.table-wrap { table {
            thead { tr { th { "Slug" } th { "Name" } th.hide-narrow { "Image" } th { "" } } }
            tbody { @for o in &list { tr {
                td.mono { (o.slug) }
                td { (o.name) @if o.builtin { " " span.tag { "built in" } } }
                td.mono.hide-narrow { (o.image_url) " (" (o.format.as_str()) ")" @if o.sha256.is_none() { " · no checksum" } }
                td { @if !o.builtin {
                    button.secondary hx-delete=(paths::os_entry(&o.slug)) hx-confirm={ "Delete " (o.name) "?" } { "Delete" }
                } }
            } } }
        } }
        h2 { "Add an OS" }
        form.panel hx-post=(paths::OS) {
            div.grid {
                p { label for="slug" { "Slug" } br; input #slug name="slug" required placeholder="rocky-9"; }
                p { label for="name" { "Name" } br; input #name name="name" required placeholder="Rocky Linux 9"; }
                p { label for="family" { "Family" } br; input #family name="family" required placeholder="rocky"; }
                p { label for="version" { "Version" } br; input #version name="version" required placeholder="9"; }
                p { label for="arch" { "Architecture" } br; select #arch name="arch" { option { "x86_64" } option { "aarch64" } } }
                p { label for="image_url" { "Image URL" } br; input #image_url name="image_url" required placeholder="http://mirror.lab/rocky-9.raw.zst or /images/rocky-9.raw.zst"; }
                p { label for="format" { "Format" } br; select #format name="format" { option { "raw" } option { "raw.gz" } option { "raw.xz" } option selected { "raw.zst" } option { "qcow2" } } }
                p { label for="sha256" { "SHA-256 of the file" } br; input #sha256 name="sha256" pattern="[0-9a-fA-F]{64}" placeholder="required for native installs"; }
            }
            button type="submit" { "Add" }
        }
    };
    Ok(layout(&ctx, "OS images", body).into_response())
}

#[derive(Debug, Deserialize)]
pub struct OsForm {
    slug: String,
    name: String,
    family: String,
    version: String,
    arch: String,
    image_url: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
}

pub async fn create(
    State(catalogue): State<Catalogue>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<OsForm>,
) -> UiResult {
    let input = OsInput {
        slug: Some(f.slug.trim().to_string()),
        name: f.name,
        family: f.family,
        version: f.version,
        arch: f.arch,
        image_url: f.image_url,
        format: f.format.unwrap_or_else(|| "raw".into()),
        sha256: f
            .sha256
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
        size_bytes: None,
        user_data: None,
    };
    catalogue.create(input).await.ui(&headers)?;
    Ok(hx_redirect(paths::OS))
}

pub async fn delete(
    State(catalogue): State<Catalogue>,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> UiResult {
    catalogue.delete(&slug).await.ui(&headers)?;
    Ok(hx_redirect(paths::OS))
}
