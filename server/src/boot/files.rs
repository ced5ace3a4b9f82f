//! Serving the netboot artefact from the boot directory: streamed from disk with Range,
//! ETag and Last-Modified support (tower-http's file service), never read whole into memory.
//! What the boot directory holds is `crate::artefact`'s to say.

use std::path::Path;

use axum::extract::Request;
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
    let resp = ServeFile::new(path)
        .oneshot(req)
        .await
        .map_err(|e| Error::Internal(format!("serving {}: {e}", path.display())))?;
    Ok(resp.into_response())
}
