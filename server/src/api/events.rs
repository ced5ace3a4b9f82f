//! The event log and the live stream of changes (server-sent events).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use utoipa::IntoParams;

use super::extract::ApiQuery;
use crate::error::{ErrorBody, Result};
use crate::machines::{EventView, Machines};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// Only changes of this machine.
    pub machine: Option<String>,
}

/// Live stream of machine changes (`text/event-stream`).
///
/// Each message has event type `machine` and data `{"event": EventView|null, "machine":
/// Machine|null}` (`machine` is null after a delete). A `lagged` message means the client
/// fell behind and should reload its view.
#[utoipa::path(
    get, path = "/api/v1/events", tag = "events",
    params(StreamParams),
    responses((status = 200, description = "Server-sent events", content_type = "text/event-stream", body = String))
)]
pub async fn stream(
    State(machines): State<Machines>,
    ApiQuery(params): ApiQuery<StreamParams>,
) -> Sse<impl Stream<Item = std::result::Result<Event, Infallible>>> {
    let filter = params.machine;
    let stream = BroadcastStream::new(machines.subscribe()).filter_map(move |msg| {
        let filter = filter.clone();
        async move {
            match msg {
                Ok(change) => {
                    if filter.as_ref().is_some_and(|f| *f != change.machine_id) {
                        return None;
                    }
                    // The one place a change becomes JSON.
                    let body = serde_json::json!({
                        "event": change.event,
                        "machine": change.machine,
                    });
                    Some(Ok(Event::default().event("machine").data(body.to_string())))
                }
                Err(BroadcastStreamRecvError::Lagged(n)) => {
                    Some(Ok(Event::default().event("lagged").data(n.to_string())))
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// Only events of this machine.
    pub machine: Option<String>,
    /// Only events older than this id (paging backwards).
    pub before: Option<i64>,
    /// At most this many (1–500, default 100).
    pub limit: Option<u32>,
}

/// The event log, newest first.
#[utoipa::path(
    get, path = "/api/v1/events/log", tag = "events",
    params(LogParams),
    responses(
        (status = 200, description = "Events", body = [EventView]),
        (status = 422, description = "Invalid parameter", body = ErrorBody),
    )
)]
pub async fn log(
    State(machines): State<Machines>,
    ApiQuery(p): ApiQuery<LogParams>,
) -> Result<Json<Vec<EventView>>> {
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > 500 {
        return Err(crate::error::Error::invalid("limit", "must be 1–500"));
    }
    Ok(Json(machines.events(p.machine, p.before, limit).await?))
}
