//! The OS catalogue endpoints.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::extract::ApiJson;
use crate::error::{ErrorBody, Result};
use crate::machines::OsImage;
use crate::machines::catalogue::{Catalogue, OsInput, Refreshed};

/// The OS catalogue.
#[utoipa::path(
    get, path = "/api/v1/os", tag = "os",
    responses((status = 200, description = "All entries", body = [OsImage]))
)]
pub async fn list(State(catalogue): State<Catalogue>) -> Result<Json<Vec<OsImage>>> {
    Ok(Json(catalogue.list().await?))
}

/// One catalogue entry.
#[utoipa::path(
    get, path = "/api/v1/os/{slug}", tag = "os",
    params(("slug" = String, Path, description = "OS slug")),
    responses(
        (status = 200, description = "The entry", body = OsImage),
        (status = 404, description = "No such entry", body = ErrorBody),
    )
)]
pub async fn get(
    State(catalogue): State<Catalogue>,
    Path(slug): Path<String>,
) -> Result<Json<OsImage>> {
    Ok(Json(catalogue.get(&slug).await?))
}

/// Add an entry.
#[utoipa::path(
    post, path = "/api/v1/os", tag = "os",
    request_body = OsInput,
    responses(
        (status = 201, description = "Created", body = OsImage),
        (status = 409, description = "Slug taken", body = ErrorBody),
        (status = 422, description = "Invalid value", body = ErrorBody),
    )
)]
pub async fn create(
    State(catalogue): State<Catalogue>,
    ApiJson(body): ApiJson<OsInput>,
) -> Result<(StatusCode, Json<OsImage>)> {
    let os = catalogue.create(body).await?;
    Ok((StatusCode::CREATED, Json(os)))
}

/// Replace an entry's fields (built-in entries too, e.g. to point at a local mirror).
#[utoipa::path(
    put, path = "/api/v1/os/{slug}", tag = "os",
    params(("slug" = String, Path, description = "OS slug")),
    request_body = OsInput,
    responses(
        (status = 200, description = "Updated", body = OsImage),
        (status = 404, description = "No such entry", body = ErrorBody),
        (status = 422, description = "Invalid value", body = ErrorBody),
    )
)]
pub async fn update(
    State(catalogue): State<Catalogue>,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<OsInput>,
) -> Result<Json<OsImage>> {
    Ok(Json(catalogue.update(&slug, body).await?))
}

/// Delete an entry that is neither built in nor assigned.
#[utoipa::path(
    delete, path = "/api/v1/os/{slug}", tag = "os",
    params(("slug" = String, Path, description = "OS slug")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such entry", body = ErrorBody),
        (status = 409, description = "Built in or in use", body = ErrorBody),
    )
)]
pub async fn delete(
    State(catalogue): State<Catalogue>,
    Path(slug): Path<String>,
) -> Result<StatusCode> {
    catalogue.delete(&slug).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Read the entry's published checksum list (`checksum_url`) again and store the checksum it
/// gives for the entry's image file.
#[utoipa::path(
    post, path = "/api/v1/os/{slug}/refresh", tag = "os",
    params(("slug" = String, Path, description = "OS slug")),
    responses(
        (status = 200, description = "Refreshed", body = Refreshed),
        (status = 404, description = "No such entry", body = ErrorBody),
        (status = 409, description = "The entry has no checksum_url (`unknown_reference`)", body = ErrorBody),
        (status = 502, description = "The list could not be read, or does not list the file", body = ErrorBody),
    )
)]
pub async fn refresh(
    State(catalogue): State<Catalogue>,
    Path(slug): Path<String>,
) -> Result<Json<Refreshed>> {
    Ok(Json(catalogue.refresh(&slug).await?))
}
