//! The state every handler receives. Passed explicitly; no globals, so every test builds
//! its own.

use std::sync::Arc;

use crate::auth::Auth;
use crate::boot::files::ArtefactCache;
use crate::clock::Clock;
use crate::config::Settings;
use crate::events::EventHub;
use crate::machines::Machines;
use crate::metrics::Metrics;
use crate::store::Db;

#[derive(Clone)]
pub struct AppState {
    /// The machine domain service (owns its handles to the store, hub and clock).
    pub machines: Machines,
    /// Operators, sessions and API tokens.
    pub auth: Auth,
    /// The store, for the OS catalogue and health checks.
    pub db: Db,
    /// Broadcast of every change, feeding SSE.
    pub hub: EventHub,
    /// Time source (tests use a manual clock).
    pub clock: Arc<dyn Clock>,
    /// Base URL and timing settings.
    pub settings: Arc<Settings>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// What the boot directory holds, re-read every couple of seconds.
    pub artefact: Arc<ArtefactCache>,
}
