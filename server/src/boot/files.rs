//! Serving the netboot artefact from the boot directory: streamed from disk with Range,
//! ETag and Last-Modified support (tower-http's file service), never read whole into memory.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Looks at the boot directory (three `stat`s and the manifest) on the blocking pool.
pub async fn artefact(dir: &Path) -> Artefact {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || probe(&dir))
        .await
        .unwrap_or_default()
}

fn probe(dir: &Path) -> Artefact {
    let exists = |name: &str| dir.join(name).is_file();
    let version = std::fs::read(dir.join("manifest.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|v| v.get("version")?.as_str().map(str::to_string));
    Artefact {
        present: exists("vmlinuz") && exists("initramfs.zst"),
        version,
        ipxe_lkrn: exists("ipxe.lkrn"),
    }
}

/// [`artefact`] remembered for a second: every PXE script, `/healthz` and the
/// dashboard ask, and a rebuilt image is still noticed almost at once.
pub struct ArtefactCache {
    dir: PathBuf,
    last: Mutex<Option<(Instant, Artefact)>>,
}

const ARTEFACT_TTL: Duration = Duration::from_secs(1);

impl ArtefactCache {
    pub fn new(dir: PathBuf) -> ArtefactCache {
        ArtefactCache {
            dir,
            last: Mutex::new(None),
        }
    }

    pub async fn get(&self) -> Artefact {
        if let Some((at, a)) = &*self.lock() {
            if at.elapsed() < ARTEFACT_TTL {
                return a.clone();
            }
        }
        let fresh = artefact(&self.dir).await;
        *self.lock() = Some((Instant::now(), fresh.clone()));
        fresh
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Artefact)>> {
        // Only ever holds a finished value, so a poisoned lock's content is still sound.
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}
