//! The Tinkerbell backend against `fake`, a local HTTP server speaking enough of the
//! Kubernetes API for the three Tinkerbell resources, with every object checked against the
//! CRD schemas copied (unmodified) into `tinkerbell/crds/`. The same flows run against a real
//! kube-apiserver in `tests/kube.rs` (CI). The fake stays for what a real server does not
//! offer a test: counting the lists and watches a client makes (to tell a resumed watch from a
//! new list), ending a watch on demand, and writes racing between a read and a patch at a
//! chosen moment; and so that `scripts/check` covers the backend without the 4.5-minute build
//! of the real server.

// The CRDs' openAPIV3Schema as JSON Schema, and metadata checks.
mod schema;
// The fake API server.
mod fake;
// What Dragonfly writes: valid against both CRD versions; the examples parse; RBAC file.
mod objects;
// Workflow statuses in both shapes Tinkerbell writes (shared with tests/kube.rs).
mod status;
// Writer and follower against the fake: create/409/patch, watch, 410 Gone, outages, check.
mod client;
// provision.rs end to end: machine events in, cluster objects and machine states out.
mod glue;

use std::sync::Arc;
use std::time::Duration;

use dragonfly::tinkerbell::{TemplateSettings, Tinkerbell, plain_client};

pub const NS: &str = "tink-system";

/// A backend pointed at the fake.
pub fn tink(fake: &fake::FakeApi) -> Tinkerbell {
    Tinkerbell::new(
        plain_client(&fake.url, NS).unwrap(),
        NS,
        TemplateSettings::default(),
    )
}

/// Fast retries, so outages in tests last milliseconds.
pub fn fast() -> dragonfly::tinkerbell::FollowOptions {
    dragonfly::tinkerbell::FollowOptions {
        final_action_timeout: Duration::from_secs(600),
        tick: Duration::from_millis(50),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        reconcile_every: Duration::from_secs(300),
    }
}

pub fn clock() -> Arc<dyn dragonfly::clock::Clock> {
    Arc::new(dragonfly::clock::SystemClock)
}
