//! Settings operators change at run time: the SSH keys of native installs, server-wide and
//! per machine.

use axum::Json;
use axum::extract::{Path, State};

use super::extract::ApiJson;
use crate::error::{ErrorBody, Result};
use crate::machines::Machines;
use crate::machines::native::{MachineSshKeys, SshKeys, SshKeysInput};
use crate::machines::netboot::Netboot;

/// The SSH public keys every native install gets for the image's default user.
#[utoipa::path(
    get, path = "/api/v1/settings/ssh-keys", tag = "settings",
    responses((status = 200, description = "The keys", body = SshKeys))
)]
pub async fn get_ssh_keys(State(machines): State<Machines>) -> Result<Json<SshKeys>> {
    Ok(Json(machines.ssh_keys().await?))
}

/// Replace the stored SSH keys (an authorized_keys text; the file given with
/// `--ssh-authorized-keys` is kept as well). Installs planned from now on carry them.
#[utoipa::path(
    put, path = "/api/v1/settings/ssh-keys", tag = "settings",
    request_body = SshKeysInput,
    responses(
        (status = 200, description = "Stored", body = SshKeys),
        (status = 422, description = "A line is not a public key (the line is named)", body = ErrorBody),
    )
)]
pub async fn put_ssh_keys(
    State(machines): State<Machines>,
    ApiJson(body): ApiJson<SshKeysInput>,
) -> Result<Json<SshKeys>> {
    Ok(Json(machines.set_ssh_keys(body).await?))
}

/// A machine's own SSH keys: its native installs get them on top of the server-wide ones.
#[utoipa::path(
    get, path = "/api/v1/machines/{id}/ssh-keys", tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    responses(
        (status = 200, description = "The keys", body = MachineSshKeys),
        (status = 404, description = "No such machine", body = ErrorBody),
    )
)]
pub async fn get_machine_ssh_keys(
    State(machines): State<Machines>,
    Path(id): Path<String>,
) -> Result<Json<MachineSshKeys>> {
    Ok(Json(machines.machine_ssh_keys(&id).await?))
}

/// Replace a machine's own SSH keys (an authorized_keys text; empty removes them).
#[utoipa::path(
    put, path = "/api/v1/machines/{id}/ssh-keys", tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    request_body = SshKeysInput,
    responses(
        (status = 200, description = "Stored", body = MachineSshKeys),
        (status = 404, description = "No such machine", body = ErrorBody),
        (status = 422, description = "A line is not a public key (the line is named)", body = ErrorBody),
    )
)]
pub async fn put_machine_ssh_keys(
    State(machines): State<Machines>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SshKeysInput>,
) -> Result<Json<MachineSshKeys>> {
    Ok(Json(machines.set_machine_ssh_keys(&id, body).await?))
}

/// A machine's network-boot settings for Dragonfly's DHCP: whether it may PXE-boot (and
/// which UEFI binary it gets), and its reserved address in full DHCP mode.
#[utoipa::path(
    get, path = "/api/v1/machines/{id}/netboot", tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    responses(
        (status = 200, description = "The settings", body = Netboot),
        (status = 404, description = "No such machine", body = ErrorBody),
    )
)]
pub async fn get_netboot(
    State(machines): State<Machines>,
    Path(id): Path<String>,
) -> Result<Json<Netboot>> {
    Ok(Json(machines.netboot(&id).await?))
}

/// Replace a machine's network-boot settings. `pxe: off` makes Dragonfly's DHCP ignore its
/// PXE requests; `ipxe_efi` gives it `ipxe.efi` instead of `snponly.efi`.
#[utoipa::path(
    put, path = "/api/v1/machines/{id}/netboot", tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    request_body = Netboot,
    responses(
        (status = 200, description = "Stored", body = Netboot),
        (status = 404, description = "No such machine", body = ErrorBody),
        (status = 409, description = "The address is reserved for another machine", body = ErrorBody),
        (status = 422, description = "Invalid value (the field is named)", body = ErrorBody),
    )
)]
pub async fn put_netboot(
    State(machines): State<Machines>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Netboot>,
) -> Result<Json<Netboot>> {
    Ok(Json(machines.set_netboot(&id, body).await?))
}
