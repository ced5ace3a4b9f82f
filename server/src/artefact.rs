//! What the boot directory holds: whether a usable netboot artefact is there, and its
//! version. Boot scripts, /healthz and the dashboard all ask; none of them serves it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

/// Whether the boot directory holds a usable netboot artefact, and its version.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Artefact {
    /// vmlinuz and initramfs.zst are both present.
    pub present: bool,
    /// `version` from manifest.json.
    pub version: Option<String>,
    /// ipxe.lkrn is present (needed for kexec chainloading on BIOS).
    pub ipxe_lkrn: bool,
    /// `debian` or `alpine` (manifest.json's `flavour`).
    pub flavour: Option<String>,
    /// `any`, or the hardware the image's kernel is limited to (manifest.json's
    /// `hardware`): an Alpine image built from the offline source runs on virtual machines
    /// only.
    pub hardware: Option<String>,
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
    let manifest = std::fs::read(dir.join("manifest.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    // Bounded: a manifest is ours, but a boot directory is only a directory.
    let field = |name: &str| {
        manifest
            .as_ref()
            .and_then(|v| v.get(name)?.as_str())
            .map(|s| s.chars().take(200).collect::<String>())
    };
    Artefact {
        present: exists("vmlinuz") && exists("initramfs.zst"),
        version: field("version"),
        ipxe_lkrn: exists("ipxe.lkrn"),
        flavour: field("flavour"),
        hardware: field("hardware"),
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

/// Whether `name` may name a file in the image directory (`BOOT_DIR/images/`): 1–128
/// characters of letters, digits, '.', '_' and '-', not starting with '.', so no path can
/// leave the directory.
pub fn valid_image_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
