//! Serving the netboot artefact from the boot directory: streamed from disk with Range,
//! ETag and Last-Modified support (tower-http's file service), never read whole into memory.

use std::path::Path;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;
use utoipa::ToSchema;

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

/// Whether the boot directory holds a usable netboot artefact, and its version.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Artefact {
    /// vmlinuz and initramfs.zst are both present.
    pub present: bool,
    /// `version` from manifest.json.
    pub version: Option<String>,
    /// ipxe.lkrn is present (needed for kexec chainloading on BIOS).
    pub ipxe_lkrn: bool,
}

pub async fn artefact(dir: &Path) -> Artefact {
    let exists = |name: &str| {
        let p = dir.join(name);
        async move { tokio::fs::try_exists(p).await.unwrap_or(false) }
    };
    let present = exists("vmlinuz").await && exists("initramfs.zst").await;
    let version = match tokio::fs::read(dir.join("manifest.json")).await {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("version")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            }),
        Err(_) => None,
    };
    Artefact {
        present,
        version,
        ipxe_lkrn: exists("ipxe.lkrn").await,
    }
}
