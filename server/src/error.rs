//! The one error type of the server's domain and its one HTTP boundary.
//!
//! Domain and store code return [`Error`], which knows nothing of HTTP. The single
//! [`IntoResponse`] impl below maps it to a status and the stable JSON body
//! `{"error": code, "message": text, "field": name?}`. Internal details are logged with a
//! request-independent id and never sent to the client.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is well-formed JSON but a value is not acceptable.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The request body could not be read as the expected JSON.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    #[error("{0} not found")]
    NotFound(String),
    /// A well-formed value names something that does not exist now (an OS not in the
    /// catalogue, a disk the machine did not report): no schema can say that, so it is a
    /// conflict with the current state, not an invalid value.
    #[error("{field}: {message}")]
    Unresolved { field: String, message: String },
    /// The request conflicts with the current state (illegal transition, duplicate, in use).
    #[error("{0}")]
    Conflict(String),
    /// A registration claimed a known machine without proof: held for an operator.
    #[error("{0}")]
    Held(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("request body too large")]
    PayloadTooLarge,
    /// The request body did not arrive in time.
    #[error("{0}")]
    TimedOut(String),
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// A server Dragonfly asked on the operator's behalf (a mirror) failed to answer well.
    #[error("{0}")]
    Upstream(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn unresolved(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Unresolved {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Error {
        Error::NotFound(what.into())
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"),
            Error::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::Unresolved { .. } => (StatusCode::CONFLICT, "unknown_reference"),
            Error::Held(_) => (StatusCode::CONFLICT, "pending_approval"),
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Error::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Error::TimedOut(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Error::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Error::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream"),
            Error::Store(_) | Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code: `invalid_value`, `invalid_json`, `not_found`,
    /// `conflict`, `unknown_reference`, `pending_approval`, `unauthorized`, `forbidden`, `payload_too_large`,
    /// `request_timeout`,
    /// `unsupported_media_type`, `method_not_allowed`, `rate_limited`, `upstream`, `internal`.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
    /// The request field at fault, as a path such as `report.nics[0].mac`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Builds an error response from its parts; used by the boundary and by middleware that
/// rewrites framework-produced errors (404/405/413) into this shape.
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: String,
    field: Option<String>,
) -> Response {
    let body = ErrorBody {
        error: code.to_string(),
        message,
        field,
    };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"error\":\"internal\"}".to_vec());
    (status, [(header::CONTENT_TYPE, "application/json")], json).into_response()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let retry_after = match &self {
            Error::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        let (message, field) = match self {
            Error::Invalid { field, message } | Error::Unresolved { field, message } => {
                (message, Some(field).filter(|f| !f.is_empty()))
            }
            Error::BadRequest { message, field, .. } => (message, field),
            Error::Store(ref e) => {
                tracing::error!(error = %e, "storage error");
                ("internal error; see the server log".to_string(), None)
            }
            Error::Internal(ref e) => {
                tracing::error!(error = %e, "internal error");
                ("internal error; see the server log".to_string(), None)
            }
            other => (other.to_string(), None),
        };
        let mut resp = error_response(status, code, message, field);
        if let Some(secs) = retry_after {
            if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
