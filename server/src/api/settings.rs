//! Settings operators change at run time: the SSH keys of native installs.

use axum::Json;
use axum::extract::State;

use super::extract::ApiJson;
use crate::error::{ErrorBody, Result};
use crate::machines::Machines;
use crate::machines::native::{SshKeys, SshKeysInput};

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
