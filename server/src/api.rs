//! The JSON API under `/api/v1`, and its OpenAPI document (generated from these handlers).

pub mod agent;
pub mod auth;
pub mod constraints;
pub mod events;
pub mod extract;
pub mod machines;
pub mod os;
pub mod registrations;
pub mod rules;
pub mod settings;
pub mod system;
pub mod tokens;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// Largest accepted agent registration (a hardware report with thousands of PCI functions
/// stays well under this).
pub const REGISTER_BODY_LIMIT: usize = 1024 * 1024;
/// Largest accepted body on the public routes (heartbeats, logins).
pub const BODY_LIMIT: usize = 64 * 1024;
/// Largest accepted operator request: the longest texts (64 Ki characters of `user_data`,
/// 60,000 of SSH keys) still fit when every character is sent as a six-byte JSON escape,
/// so a request the document calls valid is never refused for its size.
pub const OPERATOR_BODY_LIMIT: usize = 512 * 1024;

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
        (name = "rules", description = "Assignment rules: the server assigns an OS to new machines"),
        (name = "settings", description = "Settings operators change at run time"),
        (name = "events", description = "The event log and live stream"),
        (name = "system", description = "Health and metrics"),
        (name = "auth", description = "Operator sessions and API tokens"),
    ),
    security(("api_token" = []), ("session" = [])),
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
        components.add_security_scheme(
            "api_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("API token (dfo_…) created under /api/v1/tokens"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Cookie(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "dragonfly_session",
                    "Operator session from /api/v1/auth/login; state-changing requests also \
                     need the X-CSRF-Token header",
                ),
            )),
        );
    }
}

/// The API, split by who may call it, and the OpenAPI document describing all of it.
pub struct ApiRoutes {
    /// Open by design: agent registration (PXE has no credentials), agent heartbeats (which
    /// carry their own per-machine token), login, and health.
    pub public: Router<AppState>,
    /// Everything else: needs an operator session or an API token.
    pub protected: Router<AppState>,
    pub doc: utoipa::openapi::OpenApi,
}

/// Paths of the public routes, as the OpenAPI document names them.
pub const PUBLIC_PATHS: &[&str] = &[
    "/api/v1/agent/register",
    "/api/v1/agent/heartbeat",
    "/api/v1/auth/login",
    "/api/v1/phone-home/{token}",
    "/healthz",
];

pub fn router() -> ApiRoutes {
    let register = OpenApiRouter::new()
        .routes(routes!(agent::register))
        .layer(DefaultBodyLimit::max(REGISTER_BODY_LIMIT));
    let phone_home = OpenApiRouter::new()
        .routes(routes!(agent::phone_home))
        .layer(DefaultBodyLimit::max(agent::PHONE_HOME_BODY_LIMIT));
    let (public, public_doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(phone_home)
        .routes(routes!(agent::heartbeat))
        .routes(routes!(auth::login))
        .routes(routes!(system::healthz))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .merge(register)
        .split_for_parts();
    let (protected, protected_doc) = OpenApiRouter::new()
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .routes(routes!(machines::list))
        .routes(routes!(machines::get, machines::update, machines::delete))
        .routes(routes!(machines::assign))
        .routes(routes!(machines::reimage))
        .routes(routes!(machines::cancel))
        .routes(routes!(machines::instruct))
        .routes(routes!(registrations::list))
        .routes(routes!(registrations::approve))
        .routes(routes!(registrations::reject))
        .routes(routes!(os::list, os::create))
        .routes(routes!(os::get, os::update, os::delete))
        .routes(routes!(os::refresh))
        .routes(routes!(rules::list, rules::create))
        .routes(routes!(rules::delete))
        .routes(routes!(settings::get_ssh_keys, settings::put_ssh_keys))
        .routes(routes!(
            settings::get_machine_ssh_keys,
            settings::put_machine_ssh_keys
        ))
        .routes(routes!(settings::get_netboot, settings::put_netboot))
        .routes(routes!(events::stream))
        .routes(routes!(events::log))
        .routes(routes!(system::metrics))
        .layer(DefaultBodyLimit::max(OPERATOR_BODY_LIMIT))
        .split_for_parts();
    let mut doc = public_doc;
    doc.merge(protected_doc);
    document_shared_errors(&mut doc);
    ApiRoutes {
        public,
        protected,
        doc,
    }
}

/// Adds the answers every operation can give whatever its handler does: a JSON body can be
/// malformed (400), slow (408), too large (413), not JSON (415) or of the wrong shape (422), all answered
/// by `ApiJson` before the handler runs; a protected route refuses missing credentials (401)
/// and credentials that do not allow the request (403). Done once here so that no handler's
/// annotation can forget them.
fn document_shared_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let public = PUBLIC_PATHS.contains(&path.as_str());
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            let mut add = Vec::new();
            if op.request_body.is_some() {
                add.extend([
                    ("400", "Malformed JSON"),
                    ("408", "The body did not arrive in time"),
                    ("413", "Body too large"),
                    ("415", "Not JSON"),
                    ("422", "Invalid value"),
                ]);
            }
            if !public {
                add.extend([
                    ("401", "No credentials, or unknown ones"),
                    ("403", "Credentials that do not allow this request"),
                ]);
            }
            for (code, description) in add {
                op.responses
                    .responses
                    .entry(code.to_string())
                    .or_insert_with(|| error(description));
            }
        }
    }
}

/// The OpenAPI document as pretty JSON (what `/api/openapi.json` serves and what is
/// checked in as `openapi.json`).
pub fn openapi_json() -> String {
    document(&router().doc)
}

/// The finished document: what utoipa generated plus the constraints the validators
/// enforce ([`constraints`]).
pub fn document(doc: &utoipa::openapi::OpenApi) -> String {
    let mut value = serde_json::to_value(doc).unwrap_or_default();
    constraints::apply(&mut value);
    serde_json::to_string_pretty(&value).unwrap_or_default()
}
