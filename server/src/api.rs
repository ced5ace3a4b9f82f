//! The JSON API under `/api/v1`, and its OpenAPI document (generated from these handlers).

pub mod agent;
pub mod events;
pub mod extract;
pub mod machines;
pub mod os;
pub mod system;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// Largest accepted agent registration (a hardware report with thousands of PCI functions
/// stays well under this).
pub const REGISTER_BODY_LIMIT: usize = 1024 * 1024;
/// Largest accepted body anywhere else.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Dragonfly API",
        description = "Bare-metal provisioning: machines register from the netboot image, \
                       operators assign an OS, Dragonfly drives the install.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "agent", description = "Used by the agent in the netboot image"),
        (name = "machines", description = "Operator view and actions"),
        (name = "os", description = "The OS catalogue"),
        (name = "events", description = "The event log and live stream"),
        (name = "system", description = "Health and metrics"),
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

/// Declares the bearer schemes the handlers refer to.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "agent_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Per-machine token returned by registration"))
                    .build(),
            ),
        );
    }
}

/// The API routes and the OpenAPI document describing them.
pub fn router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let register = OpenApiRouter::new()
        .routes(routes!(agent::register))
        .layer(DefaultBodyLimit::max(REGISTER_BODY_LIMIT));
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(agent::heartbeat))
        .routes(routes!(machines::list))
        .routes(routes!(machines::get, machines::update, machines::delete))
        .routes(routes!(machines::assign))
        .routes(routes!(machines::reimage))
        .routes(routes!(machines::cancel))
        .routes(routes!(machines::instruct))
        .routes(routes!(os::list, os::create))
        .routes(routes!(os::get, os::update, os::delete))
        .routes(routes!(events::stream))
        .routes(routes!(events::log))
        .routes(routes!(system::healthz))
        .routes(routes!(system::metrics))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .merge(register)
        .split_for_parts();
    (router, doc)
}

/// The OpenAPI document as pretty JSON (what `/api/openapi.json` serves and what is
/// checked in as `openapi.json`).
pub fn openapi_json() -> String {
    let (_, doc) = router();
    doc.to_pretty_json().unwrap_or_default()
}
