//! The raw parts of a request, decoded strictly: query strings, path segments, bodies and the
//! URI's length. Whatever a client sends that the API cannot take is a 4xx naming the part
//! (parameter, path segment or body), in the documented JSON error: never axum's plain-text
//! rejections, and never a value PostgreSQL would refuse with an error the client sees as 500.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode;

use super::error::ApiError;
use super::routes::MAX_URI_BYTES;

/// One `name=value` pair of a query string, both percent-decoded and UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryPair {
    /// The parameter's name.
    pub name: String,
    /// Its value (empty when the pair has no `=`).
    pub value: String,
}

fn decode_component(raw: &str) -> Result<String, Vec<u8>> {
    let plus_as_space = raw.replace('+', " ");
    let bytes: Vec<u8> = percent_decode(plus_as_space.as_bytes()).collect();
    String::from_utf8(bytes).map_err(|e| e.into_bytes())
}

/// Decodes a query string as `application/x-www-form-urlencoded`, refusing what no value can
/// hold: bytes that are not UTF-8 after percent-decoding, and NUL (PostgreSQL text cannot hold
/// it). The error names the parameter.
pub fn query_pairs(raw: Option<&str>) -> Result<Vec<QueryPair>, ApiError> {
    let mut pairs = Vec::new();
    for piece in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = piece.split_once('=').unwrap_or((piece, ""));
        let name = decode_component(raw_name).map_err(|bytes| {
            let shown = String::from_utf8_lossy(&bytes).into_owned();
            ApiError::bad(
                &shown,
                format!("the parameter name `{shown}` is not UTF-8 after percent-decoding"),
            )
        })?;
        if name.contains('\0') {
            return Err(ApiError::bad(
                &name,
                "a parameter name holds a NUL character (%00)",
            ));
        }
        let value = decode_component(raw_value).map_err(|_| {
            ApiError::bad(
                &name,
                format!(
                    "`{name}` is not UTF-8 after percent-decoding; send UTF-8, percent-encoded"
                ),
            )
        })?;
        if value.contains('\0') {
            return Err(ApiError::bad(
                &name,
                format!("`{name}` holds a NUL character (%00), which no value can contain"),
            ));
        }
        pairs.push(QueryPair { name, value });
    }
    Ok(pairs)
}

/// A whole-number query parameter with its bounds and default: its handler parses it with
/// them and /openapi.json documents them, so the two cannot drift.
#[derive(Debug, Clone, Copy)]
pub struct CountParam {
    /// Its name.
    pub name: &'static str,
    /// The smallest value taken.
    pub min: i64,
    /// The value when absent.
    pub default: i64,
    /// The largest value taken.
    pub max: i64,
    /// What it does (the document adds the default).
    pub description: &'static str,
}

impl CountParam {
    /// `value` if it is a whole number within the bounds, else a 400 naming the parameter.
    pub fn parse(&self, value: &str) -> Result<i64, ApiError> {
        value
            .parse()
            .ok()
            .filter(|n| (self.min..=self.max).contains(n))
            .ok_or_else(|| {
                ApiError::bad(
                    self.name,
                    format!(
                        "`{value}` is not a whole number from {} to {}",
                        self.min, self.max
                    ),
                )
            })
    }
}

/// A text path segment (`{view}`, `{job}`, `{id}`), or a 400 naming it when it is not UTF-8
/// after percent-decoding or holds a NUL.
pub fn path_text(
    extracted: Result<Path<String>, PathRejection>,
    segment: &str,
) -> Result<String, ApiError> {
    let Path(text) = extracted.map_err(|e| {
        ApiError::bad(
            segment,
            format!(
                "the path segment `{{{segment}}}` cannot be read: {}",
                e.body_text()
            ),
        )
    })?;
    if text.contains('\0') {
        return Err(ApiError::bad(
            segment,
            format!("the path segment `{{{segment}}}` holds a NUL character (%00)"),
        ));
    }
    Ok(text)
}

/// A request body within the limit, or 413 when it is larger.
pub fn body_bytes(extracted: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    extracted.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::bad(
                "body",
                format!("the body could not be read: {}", e.body_text()),
            )
        }
    })
}

/// Answers 414 to a request target longer than [`MAX_URI_BYTES`], before any handler runs.
pub async fn refuse_long_uris(request: Request, next: Next) -> Response {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if length > MAX_URI_BYTES {
        return ApiError::UriTooLong { length }.into_response();
    }
    next.run(request).await
}

/// The answer to a known path called with a method it does not serve.
pub async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameter(error: ApiError) -> String {
        match error {
            ApiError::BadParameter { parameter, .. } => parameter,
            other => panic!("not a bad parameter: {other:?}"),
        }
    }

    #[test]
    fn decodes_percent_and_plus_like_a_form() {
        let pairs = query_pairs(Some("a=b+c&filter.x=%C3%A9t%C3%A9&flag&&z=")).unwrap();
        let flat: Vec<(&str, &str)> = pairs
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(
            flat,
            [("a", "b c"), ("filter.x", "été"), ("flag", ""), ("z", "")]
        );
    }

    #[test]
    fn refuses_values_no_text_can_hold_naming_the_parameter() {
        for (query, name) in [
            ("limit=%FF", "limit"),
            ("filter.page=ab%C3", "filter.page"),
            ("order=%00", "order"),
            ("a=1&to=x%00y", "to"),
            ("bad%00name=1", "bad\0name"),
        ] {
            assert_eq!(
                parameter(query_pairs(Some(query)).unwrap_err()),
                name,
                "{query}"
            );
        }
        // A malformed escape is kept as written, like every form decoder does.
        assert_eq!(query_pairs(Some("x=%zz")).unwrap()[0].value, "%zz");
    }
}
