//! The OS catalogue: what operators can assign, with a form to add entries.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use maud::html;
use serde::Deserialize;

use super::{Ctx, UiResult, UiResultExt, hx_redirect, layout, paths};
use crate::auth::Principal;
use crate::machines::Machines;
use crate::machines::catalogue::{Catalogue, OsInput};
use crate::machines::native::SshKeysInput;

pub async fn page(
    State(catalogue): State<Catalogue>,
    State(machines): State<Machines>,
    axum::Extension(p): axum::Extension<Principal>,
    headers: HeaderMap,
) -> UiResult {
    let ctx = Ctx::new(&p, "os");
    let list = catalogue.list().await.ui(&headers)?;
    let keys = machines.ssh_keys().await.ui(&headers)?;
    let body = html! {
        h1 { "OS images" }
        p.muted { "Operators assign these to machines. Built-in entries can be pointed at a local mirror through the API "
            code { "PUT /api/v1/os/{slug}" } " but not deleted." }
        div.table-wrap { table {
            thead { tr { th { "Slug" } th { "Name" } th.hide-narrow { "Image" } th { "" } } }
            tbody { @for o in &list { tr {
                td.mono { (o.slug) }
                td { (o.name) @if o.builtin { " " span.tag { "built in" } } }
                td.mono.hide-narrow {
                    (o.image_url) " (" (o.format.as_str()) ")"
                    @if o.sha512.is_some() { " · SHA-512" } @else if o.sha256.is_some() { " · SHA-256" } @else { " · no checksum" }
                    @if let Some(at) = &o.checksum_checked_at { " · checked " (at) }
                }
                td { @if !o.builtin {
                    button.secondary hx-delete=(paths::os_entry(&o.slug)) hx-confirm={ "Delete " (o.name) "?" } { "Delete" }
                } }
            } } }
        } }
        @if list.iter().any(|o| o.checksum_url.is_some()) {
            p {
                button.secondary hx-post=(paths::OS_REFRESH) hx-target="#refresh-result" hx-disabled-elt="this" { "Refresh checksums" }
                " "
                span.muted { "Reads each entry's published SHA256SUMS or SHA512SUMS again: \"current\" images are republished." }
            }
            div #refresh-result {}
        }
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
                p { label for="sha256" { "SHA-256 of the file" } br; input #sha256 name="sha256" pattern="[0-9a-fA-F]{64}" placeholder="this or SHA-512: required for native installs"; }
                p { label for="sha512" { "SHA-512 of the file" } br; input #sha512 name="sha512" pattern="[0-9a-fA-F]{128}"; }
                p { label for="checksum_url" { "Checksum list URL" } br; input #checksum_url name="checksum_url" placeholder="http://mirror.lab/SHA256SUMS"; }
            }
            button type="submit" { "Add" }
        }
        h2 { "SSH keys of native installs" }
        form.panel #ssh-keys-form hx-post=(paths::SSH_KEYS) {
            p.muted { "Every natively installed machine gets these public keys for its image's default user (authorized_keys format, one per line)."
                @if !keys.from_file.is_empty() { " Also " (keys.from_file.len()) " key(s) from the server's " code { "--ssh-authorized-keys" } " file." } }
            textarea #ssh-keys name="authorized_keys" rows="4" placeholder="ssh-ed25519 AAAA… ops@example" { (keys.stored.join("\n")) }
            p { button type="submit" { "Save keys" } }
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
    #[serde(default)]
    sha512: Option<String>,
    #[serde(default)]
    checksum_url: Option<String>,
}

fn filled(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
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
        sha256: filled(f.sha256),
        sha512: filled(f.sha512),
        checksum_url: filled(f.checksum_url),
        size_bytes: None,
        user_data: None,
    };
    catalogue.create(input).await.ui(&headers)?;
    Ok(hx_redirect(paths::OS))
}

#[derive(Debug, Deserialize)]
pub struct KeysForm {
    authorized_keys: String,
}

pub async fn save_ssh_keys(
    State(machines): State<Machines>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<KeysForm>,
) -> UiResult {
    let input = SshKeysInput {
        authorized_keys: f.authorized_keys,
    };
    machines.set_ssh_keys(input).await.ui(&headers)?;
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

/// Refreshes every entry's checksum from its list; answers the outcome, one line each.
pub async fn refresh(State(catalogue): State<Catalogue>, headers: HeaderMap) -> UiResult {
    let results = catalogue.refresh_all().await.ui(&headers)?;
    Ok(html! {
        ul.panel #refresh-lines { @for (slug, r) in &results { li {
            span.mono { (slug) } ": "
            @match r {
                Ok(r) if r.changed => { "new " (r.algorithm) " " span.mono { (r.os.sha512.as_deref().or(r.os.sha256.as_deref()).unwrap_or_default()) } }
                Ok(r) => { (r.algorithm) " unchanged" }
                Err(e) => { span.error { (e) } }
            }
        } } }
    }
    .into_response())
}
