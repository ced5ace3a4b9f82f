//! The OS catalogue endpoints.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::extract::ApiJson;
use crate::error::{ErrorBody, Result};
use crate::machines::OsImage;
use crate::machines::catalogue::{self, OsInput};
use crate::state::AppState;

/// The OS catalogue.
#[utoipa::path(
    get, path = "/api/v1/os", tag = "os",
    responses((status = 200, description = "All entries", body = [OsImage]))
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<OsImage>>> {
    Ok(Json(catalogue::list(&state.db).await?))
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
pub async fn get(State(state): State<AppState>, Path(slug): Path<String>) -> Result<Json<OsImage>> {
    Ok(Json(catalogue::get(&state.db, &slug).await?))
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
    State(state): State<AppState>,
    ApiJson(body): ApiJson<OsInput>,
) -> Result<(StatusCode, Json<OsImage>)> {
    let os = catalogue::create(&state.db, body, state.clock.now_ms()).await?;
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
    State(state): State<AppState>,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<OsInput>,
) -> Result<Json<OsImage>> {
    Ok(Json(
        catalogue::update(&state.db, &slug, body, state.clock.now_ms()).await?,
    ))
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
pub async fn delete(State(state): State<AppState>, Path(slug): Path<String>) -> Result<StatusCode> {
    catalogue::delete(&state.db, &slug).await?;
    Ok(StatusCode::NO_CONTENT)
}
