//! One table from errors to HTTP statuses, and one error body for every route:
//! `{"error": {"type": "...", "message": "...", "context": {...}}}` (Bauplan's shape), so that
//! clients map `type` to a typed exception.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use lakeplan_core::Error;
use serde_json::json;

/// An error answered to a client.
#[derive(Debug)]
pub enum ApiError {
    /// No key, an unknown key or a revoked one: 401, never saying which.
    Unauthorized,
    /// A valid key that may not do this (a read-only key writing, a write outside the zone).
    Forbidden(String),
    /// Anything from the service layer, mapped by [`status_of`].
    Service(Error),
    /// A request the server cannot take as sent (bad JSON, an unsupported header).
    BadRequest(String),
    NotFound(String),
    /// The data plane cannot take the task now (no worker connected, or the worker running it
    /// was lost): 503, and the request may be retried.
    Unavailable(String),
    /// An error a data-plane worker answered for a task, passed on as the worker mapped it.
    Relayed(WireError),
}

/// An error as it crosses from a worker to the control plane: the parts of the API's error body.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WireError {
    pub status: u16,
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub context: serde_json::Value,
}

/// The error body of every route: `{"error": {"type", "message", "context"}}`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub context: serde_json::Value,
}

impl ErrorBody {
    fn new(kind: String, message: String, context: serde_json::Value) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                kind,
                message,
                context,
            },
        }
    }

    /// The error as a worker passes it on, with the status it came with.
    pub fn into_wire(self, status: u16) -> WireError {
        WireError {
            status,
            kind: self.error.kind,
            message: self.error.message,
            context: self.error.context,
        }
    }

    fn into_response(self, status: StatusCode) -> Response {
        // Through a JSON value, as every other body: the same key order.
        let body = serde_json::to_value(self).unwrap_or_else(|e| json!({"error": e.to_string()}));
        (status, axum::Json(body)).into_response()
    }
}

impl From<ApiError> for WireError {
    fn from(e: ApiError) -> Self {
        let (status, kind, message, context) = e.parts();
        WireError {
            status: status.as_u16(),
            kind,
            message,
            context,
        }
    }
}

/// A worker's error as the service layer's: its kind, status, message and context kept.
impl From<WireError> for Error {
    fn from(w: WireError) -> Self {
        Error::Remote {
            kind: w.kind,
            status: w.status,
            message: w.message,
            context: w.context,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Service(e)
    }
}

/// The status of a service-layer error: its row of the one table (`lakeplan_core::ERROR_KINDS`).
pub fn status_of(e: &Error) -> StatusCode {
    StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_GATEWAY)
}

impl ApiError {
    pub fn parts(&self) -> (StatusCode, String, String, serde_json::Value) {
        let (status, kind, message, context) = self.static_parts();
        (status, kind.to_string(), message, context)
    }

    fn static_parts(&self) -> (StatusCode, &str, String, serde_json::Value) {
        match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "a valid API key is required: send 'Authorization: Bearer <key>'".into(),
                json!({}),
            ),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "Forbidden", m.clone(), json!({})),
            ApiError::BadRequest(m) => {
                (StatusCode::BAD_REQUEST, "BadRequest", m.clone(), json!({}))
            }
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "NotFound", m.clone(), json!({})),
            ApiError::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                m.clone(),
                json!({}),
            ),
            ApiError::Relayed(w) => (
                StatusCode::from_u16(w.status).unwrap_or(StatusCode::BAD_GATEWAY),
                w.kind.as_str(),
                w.message.clone(),
                w.context.clone(),
            ),
            // Another process's answer (a worker's): passed on as it was made there, where
            // its internal details were kept out already.
            ApiError::Service(Error::Remote {
                kind,
                status,
                message,
                context,
            }) => (
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
                kind.as_str(),
                message.clone(),
                context.clone(),
            ),
            ApiError::Service(e) => {
                // Internal details (paths on the server, database messages) stay in the log.
                let status = status_of(e);
                let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
                    eprintln!("error: {e}");
                    format!("internal error ({})", e.kind())
                } else {
                    e.to_string()
                };
                (status, e.kind(), message, e.context())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, message, context) = self.parts();
        let mut resp = ErrorBody::new(kind, message, context).into_response(status);
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// Rejections of axum's own extractors (malformed JSON, a missing field, a body over the
/// limit) in the same body shape.
pub fn rejection(status: StatusCode, message: String) -> Response {
    let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "PayloadTooLarge"
    } else {
        "BadRequest"
    };
    ErrorBody::new(kind.into(), message, json!({})).into_response(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_one_table() {
        let cases = [
            (Error::RefNotFound("x".into()), 404),
            (
                Error::TableNotFound {
                    table: "t".into(),
                    at: "main".into(),
                },
                404,
            ),
            (
                Error::RefExists {
                    kind: "branch",
                    name: "b".into(),
                },
                409,
            ),
            (
                Error::Conflict {
                    branch: "main".into(),
                    tables: vec!["t".into()],
                },
                409,
            ),
            (Error::NotAWriteBranch("v1".into()), 400),
            (Error::Sql("bad".into()), 400),
            (Error::Metastore("db down".into()), 500),
        ];
        for (e, want) in cases {
            let (status, kind, message, _) = ApiError::from(e).parts();
            assert_eq!(status.as_u16(), want, "{kind}");
            assert!(
                !message.contains("db down"),
                "internal details stay in the log"
            );
        }
    }

    #[test]
    fn an_error_body_reads_back_with_its_status() {
        let (status, kind, message, context) = ApiError::Unavailable("busy".into()).parts();
        let body = ErrorBody::new(kind, message, context);
        let v = serde_json::to_value(&body).expect("json");
        assert_eq!(
            v,
            json!({"error": {"type": "ServiceUnavailable", "message": "busy", "context": {}}})
        );
        let back: ErrorBody = serde_json::from_value(v).expect("read");
        let wire = back.into_wire(status.as_u16());
        assert_eq!((wire.status, wire.message.as_str()), (503, "busy"));
    }
}
