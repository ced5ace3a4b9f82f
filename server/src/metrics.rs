//! Prometheus metrics: request latency, registrations and heartbeats, machines by state.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route template (`/api/v1/machines/{id}`), never the raw path, to bound cardinality.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

pub struct Metrics {
    registry: Registry,
    pub registrations: Counter,
    pub heartbeats: Counter,
    pub machines: Family<StateLabels, Gauge>,
    pub offline: Gauge,
    http: Family<HttpLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("dragonfly");
        let registrations = Counter::default();
        let heartbeats = Counter::default();
        let machines = Family::<StateLabels, Gauge>::default();
        let offline = Gauge::default();
        let http = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            // 0.1 ms .. ~1.6 s
            Histogram::new(exponential_buckets(0.0001, 2.0, 15))
        });
        registry.register(
            "agent_registrations",
            "Agent registrations accepted",
            registrations.clone(),
        );
        registry.register(
            "agent_heartbeats",
            "Agent heartbeats accepted",
            heartbeats.clone(),
        );
        registry.register("machines", "Machines by lifecycle state", machines.clone());
        registry.register(
            "machines_offline",
            "Machines without a recent heartbeat",
            offline.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            http.clone(),
        );
        Metrics {
            registry,
            registrations,
            heartbeats,
            machines,
            offline,
            http,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Middleware recording each request's latency under its route template.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    // A label from a fixed set: the method is client text, taken before authentication.
    let method = match *req.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
    .to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    metrics
        .http
        .get_or_create(&HttpLabels {
            method,
            route,
            status: resp.status().as_u16(),
        })
        .observe(start.elapsed().as_secs_f64());
    resp
}
