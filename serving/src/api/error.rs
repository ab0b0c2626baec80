//! The API's errors: each maps to a status code and a JSON body that says what went wrong,
//! whose fault it is and whether retrying can help. Database details are logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use merged_read::{ReadError, SelectionError, Span};
use serde_json::json;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query parameter is missing, malformed or out of range (the caller's fault).
    #[error("{message}")]
    BadParameter {
        /// The parameter's name, as the caller wrote it.
        parameter: String,
        /// What is wrong and what would be accepted.
        message: String,
    },
    /// No view has this name.
    #[error("no view is named `{0}`; GET /v1/views lists them")]
    UnknownView(String),
    /// Something else that does not exist (a job id, a path).
    #[error("{0}")]
    NotFound(String),
    /// The admin endpoint was called without the right bearer token.
    #[error(
        "this endpoint needs the header `Authorization: Bearer <token>` with the server's admin token"
    )]
    Unauthorized,
    /// Admin endpoints are off because the server has no admin token.
    #[error("admin endpoints are off: start the server with BRAID_ADMIN_TOKEN set to enable them")]
    AdminDisabled,
    /// The admin action was refused by the component that runs it.
    #[error("{0}")]
    Conflict(String),
    /// The request body is larger than the server takes.
    #[error(
        "the request body is larger than the server takes ({} bytes)",
        super::routes::MAX_BODY_BYTES
    )]
    PayloadTooLarge,
    /// The request target (path and query) is longer than the server takes.
    #[error(
        "the request's path and query are {length} bytes, more than the server takes ({} bytes)",
        super::routes::MAX_URI_BYTES
    )]
    UriTooLong {
        /// The target's length in bytes.
        length: usize,
    },
    /// The path exists, but not for this method.
    #[error("{path} does not take {method}; GET /openapi.json lists the routes and their methods")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path called.
        path: String,
    },
    /// The database cannot be reached right now (our side; retry).
    #[error("the database is unavailable; retry shortly")]
    Unavailable,
    /// The query ran longer than the server allows (retry with a narrower query).
    #[error("the query took longer than the server allows; narrow the time range or add filters")]
    TooSlow,
    /// A bug or an unexpected database error (our side). The detail is logged, not sent.
    #[error("internal error; the server log has the details")]
    Internal(String),
}

impl ApiError {
    /// A bad parameter named `parameter`.
    pub fn bad(parameter: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadParameter {
            parameter: parameter.into(),
            message: message.into(),
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadParameter { .. } => StatusCode::BAD_REQUEST,
            Self::UnknownView(_) | Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::AdminDisabled => StatusCode::FORBIDDEN,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable | Self::TooSlow => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadParameter { .. } => "bad_parameter",
            Self::UnknownView(_) => "unknown_view",
            Self::NotFound(_) => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::AdminDisabled => "admin_disabled",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UriTooLong { .. } => "uri_too_long",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Unavailable => "database_unavailable",
            Self::TooSlow => "query_timeout",
            Self::Internal(_) => "internal",
        }
    }

    /// Whether the same request may succeed later.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Unavailable | Self::TooSlow)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ReadError::from(error).into()
    }
}

impl From<SelectionError> for ApiError {
    /// A selection the handlers let through but the merged read refuses, named by its part.
    fn from(error: SelectionError) -> Self {
        let parameter = match error.span() {
            Span::GroupBy => "group_by",
            Span::Filter => "filter",
            Span::Range => "from",
            Span::Granularity => "granularity",
            Span::Window => "window",
            Span::Limit => "limit",
            Span::Order => "order",
            Span::Quantiles => "q",
        };
        Self::bad(parameter, error.to_string())
    }
}

impl From<ReadError> for ApiError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Selection(selection) => selection.into(),
            ReadError::Unavailable(error) => {
                tracing::warn!(%error, "database unavailable; requests answer 503 with Retry-After until it is back: check postgres.url and the server");
                Self::Unavailable
            }
            ReadError::TimedOut(_) => Self::TooSlow,
            ReadError::Database(error) => Self::Internal(error.to_string()),
            internal @ (ReadError::NoHeadRow
            | ReadError::Provenance { .. }
            | ReadError::Column { .. }
            | ReadError::NotAnIntegerSum { .. }) => Self::Internal(internal.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(detail) = &self {
            tracing::error!(
                detail,
                "request failed with 500: this is a bug in Braid; please report it with this line"
            );
        }
        let status = self.status();
        let parameter = match &self {
            Self::BadParameter { parameter, .. } => Some(parameter.clone()),
            _ => None,
        };
        let body = json!({
            "error": {
                "status": status.as_u16(),
                "code": self.code(),
                "message": self.to_string(),
                "parameter": parameter,
                "retryable": self.retryable(),
            }
        });
        let mut response = (status, Json(body)).into_response();
        if self.retryable() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(self, Self::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
