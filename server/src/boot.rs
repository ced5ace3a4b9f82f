//! The boot face: iPXE scripts by machine state, the netboot artefact and HookOS files over
//! HTTP, and the TFTP server for the iPXE first stage.

pub mod dhcp;
pub mod files;
pub mod scripts;
pub mod tftp;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dragonfly_proto::normalize_mac;

use crate::error::{Error, Result};
use std::sync::Arc;

use crate::artefact::ArtefactCache;
use crate::config::{Installer, Settings};
use crate::machines::{Machines, State as MState};
use crate::state::AppState;
use scripts::{Script, ScriptVars};

/// Routes under `/boot` and `/hookos`. All public: PXE has no credentials.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/boot/{file}", get(boot_file))
        .route("/boot/{mac}/hookos.ipxe", get(hookos_script))
        .route("/boot/efi/{file}", get(efi_file))
        .route("/hookos/{file}", get(hookos_file))
        .route("/images/{file}", get(image_file))
}

fn ipxe(text: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

fn parse_mac(raw: &str) -> Result<String> {
    normalize_mac(raw).map_err(|e| Error::invalid("mac", e.to_string()))
}

async fn boot_file(
    State(settings): State<Arc<Settings>>,
    State(machines): State<Machines>,
    State(artefact): State<Arc<ArtefactCache>>,
    Path(file): Path<String>,
    req: Request,
) -> Result<Response> {
    if file == "boot.ipxe" {
        let vars = ScriptVars::server(&settings);
        return Ok(ipxe(scripts::render(Script::Boot, &vars)));
    }
    if let Some(stem) = file.strip_suffix(".ipxe") {
        let mac = parse_mac(stem)?;
        return machine_script(&machines, &artefact, &settings, &mac)
            .await
            .map(ipxe);
    }
    if files::ARTEFACTS.contains(&file.as_str()) {
        return files::serve(&settings.boot_dir.join(&file), req).await;
    }
    Err(Error::not_found(format!("boot file {file}")))
}

/// The per-machine script, chosen by the machine's state.
async fn machine_script(
    machines: &Machines,
    artefact: &ArtefactCache,
    settings: &Settings,
    mac: &str,
) -> Result<String> {
    let machine = machines.by_mac(mac).await?;
    let artefact = artefact.get().await;
    let mut vars = ScriptVars::server(settings).machine(mac);
    vars.artifact_version = artefact
        .version
        .clone()
        .unwrap_or_else(|| "unversioned".into());
    let native = settings.installer == Installer::Native;
    let script = match machine.as_ref().map(|m| (m.state, m.written_at.is_some())) {
        Some((MState::Installed, _)) => Script::Local,
        // Natively: the image is on the disk, the installed system boots from it.
        Some((MState::Installing, true)) if native => Script::Local,
        // Natively: the agent in the Dragonfly image writes the disk.
        Some((MState::Assigned | MState::Installing, _)) if native && artefact.present => {
            Script::Netboot
        }
        Some((MState::Assigned | MState::Installing, _)) if native => Script::Missing,
        Some((MState::Assigned | MState::Installing, _)) => Script::ChainHookos,
        None | Some((MState::Discovered | MState::Failed, _)) if artefact.present => {
            Script::Netboot
        }
        None | Some((MState::Discovered | MState::Failed, _)) => Script::Missing,
    };
    if let (Some(m), Script::Netboot) = (&machine, script) {
        // Only this machine's script carries its secret: its agent proves with it that a
        // re-registration comes from the machine that booted here.
        if let Some(secret) = machines.boot_secret(&m.id).await? {
            vars = vars.machine_secret(&secret);
        }
    }
    tracing::info!(%mac, script = script.name(), "boot script");
    if let Some(m) = &machine {
        // Every PXE boot of a known machine is on its timeline: it shows when a machine
        // came back to the network, and which way it was sent.
        machines.pxe_boot(&m.id, script.name()).await;
    }
    Ok(scripts::render(script, &vars))
}

/// HookOS for an assigned machine. Serving it means the machine is entering the installer,
/// so an Assigned machine becomes Installing here.
async fn hookos_script(
    State(machines): State<Machines>,
    State(settings): State<Arc<Settings>>,
    Path(mac): Path<String>,
) -> Result<Response> {
    let mac = parse_mac(&mac)?;
    let machine = machines
        .by_mac(&mac)
        .await?
        .ok_or_else(|| Error::not_found(format!("machine with boot MAC {mac}")))?;
    // Fetching this script proves nothing (anyone may ask for any MAC's): the install starts
    // when the installer says so (the Tinkerbell workflow runs), not here.
    match machine.state {
        MState::Assigned | MState::Installing => {
            machines.pxe_boot(&machine.id, Script::Hookos.name()).await;
        }
        other => {
            return Err(Error::Conflict(format!(
                "machine {mac} is {other}; HookOS is only served to assigned machines"
            )));
        }
    }
    let vars = ScriptVars::server(&settings).machine(&mac);
    tracing::info!(%mac, "HookOS script served");
    Ok(ipxe(scripts::render(Script::Hookos, &vars)))
}

/// An OS image from `BOOT_DIR/images/`, for catalogue entries whose URL is `/images/NAME`
/// (air-gapped sites need no other web server). Range requests resume interrupted downloads.
async fn image_file(
    State(settings): State<Arc<Settings>>,
    Path(file): Path<String>,
    req: Request,
) -> Result<Response> {
    if !crate::artefact::valid_image_name(&file) {
        return Err(Error::not_found(format!("image {file}")));
    }
    files::serve(&settings.boot_dir.join("images").join(&file), req).await
}

async fn hookos_file(
    State(settings): State<Arc<Settings>>,
    Path(file): Path<String>,
    req: Request,
) -> Result<Response> {
    if !files::HOOKOS_FILES.contains(&file.as_str()) {
        return Err(Error::not_found(format!("HookOS file {file}")));
    }
    files::serve(&settings.boot_dir.join("hookos").join(&file), req).await
}

/// The UEFI iPXE binaries over HTTP, for UEFI HTTP boot (the DHCP answer names this URL).
/// Typed `application/efi`, which HTTP-boot firmware checks.
async fn efi_file(
    State(settings): State<Arc<Settings>>,
    Path(file): Path<String>,
    req: Request,
) -> Result<Response> {
    if !["snponly.efi", "ipxe.efi"].contains(&file.as_str()) {
        return Err(Error::not_found(format!("EFI binary {file}")));
    }
    let mut resp = files::serve(&settings.boot_dir.join("tftp").join(&file), req).await?;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/efi"),
    );
    Ok(resp)
}
