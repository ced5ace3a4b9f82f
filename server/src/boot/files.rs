//! Serving the netboot artefact from the boot directory: streamed from disk with Range,
//! ETag and Last-Modified support (tower-http's file service), never read whole into memory.
//! What the boot directory holds is `crate::artefact`'s to say.

use std::path::Path;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::error::{Error, Result};

/// The only files `/boot/{file}` serves from the boot directory.
pub const ARTEFACTS: &[&str] = &["vmlinuz", "initramfs.zst", "ipxe.lkrn", "manifest.json"];
/// The only files `/hookos/{file}` serves from `boot-dir/hookos/`.
pub const HOOKOS_FILES: &[&str] = &[
    "vmlinuz-x86_64",
    "initramfs-x86_64",
    "vmlinuz-aarch64",
    "initramfs-aarch64",
];

/// Streams one file, answering conditional and range requests.
pub async fn serve(path: &Path, req: Request) -> Result<Response> {
    if !tokio::fs::try_exists(path).await.unwrap_or(false) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Err(Error::not_found(format!(
            "{name} (the netboot image is not built: run image/build.sh)"
        )));
    }
    let mut req = req;
    if let Some(validator) = req.headers().get(header::IF_RANGE).cloned() {
        // RFC 9110 13.1.5: the range applies only if the file is still the one the client
        // has (same strong ETag, or same Last-Modified); otherwise the whole file is sent.
        let probe = Request::head(req.uri().clone())
            .body(axum::body::Body::empty())
            .map_err(|e| Error::Internal(e.to_string()))?;
        let current = ServeFile::new(path)
            .oneshot(probe)
            .await
            .map_err(|e| Error::Internal(format!("serving {}: {e}", path.display())))?;
        let h = current.headers();
        let same = (!validator.as_bytes().starts_with(b"W/")
            && h.get(header::ETAG) == Some(&validator))
            || h.get(header::LAST_MODIFIED) == Some(&validator);
        if !same {
            req.headers_mut().remove(header::RANGE);
        }
    }
    let resp = ServeFile::new(path)
        .oneshot(req)
        .await
        .map_err(|e| Error::Internal(format!("serving {}: {e}", path.display())))?;
    let mut resp = resp.into_response();
    if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE
        && !resp.headers().contains_key(header::CONTENT_RANGE)
    {
        // RFC 9110 14.4: a 416 says how long the representation is.
        if let Ok(meta) = tokio::fs::metadata(path).await {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", meta.len())) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
    }
    Ok(resp)
}
