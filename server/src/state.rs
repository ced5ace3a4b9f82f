//! The application state, put together once in `lib.rs` and passed explicitly (no globals,
//! so every test builds its own). Handlers never take it whole: each extracts only the parts
//! it uses (`State<Machines>`, `State<Auth>`, ...) through `FromRef`, so a face cannot
//! reach the store or anything else it was not handed.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::artefact::ArtefactCache;
use crate::auth::Auth;
use crate::auth::ratelimit::RegistrationLimiter;
use crate::config::Settings;
use crate::dhcp_status::DhcpStatus;
use crate::machines::Machines;
use crate::machines::catalogue::Catalogue;
use crate::metrics::Metrics;

#[derive(Clone, FromRef)]
pub struct AppState {
    /// The machine domain service (owns its handles to the store, the change hub and clock).
    pub machines: Machines,
    /// The OS catalogue.
    pub catalogue: Catalogue,
    /// Operators, sessions and API tokens.
    pub auth: Auth,
    /// Base URL, timing and boot settings.
    pub settings: Arc<Settings>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// What the boot directory holds, re-read every second or so.
    pub artefact: Arc<ArtefactCache>,
    /// How fast anyone may register machines.
    pub registrations: Arc<RegistrationLimiter>,
    /// What Dragonfly's DHCP service does and last saw.
    pub dhcp: Arc<DhcpStatus>,
}
