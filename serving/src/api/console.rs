//! The web console (the `console` crate's embedded files) at `/` and `/console/…`, and the
//! security headers every response carries.

use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::error::ApiError;

/// The console loads only its own scripts, styles and API; nothing from another host, no
/// inline script, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

fn serve(asset: &'static console::Asset, headers: &HeaderMap) -> Response {
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == asset.etag));
    let common = [
        (header::ETAG, asset.etag),
        // Revalidate every time: a new binary may serve new files under the same names.
        (header::CACHE_CONTROL, "no-cache"),
    ];
    if unchanged {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, asset.content_type)],
        asset.bytes,
    )
        .into_response()
}

/// GET /: the console's page.
pub async fn index(headers: HeaderMap) -> Response {
    match console::asset(console::INDEX) {
        Some(asset) => serve(asset, &headers),
        None => Html(format!(
            "<!doctype html><title>Braid</title><p>The web console is not in this build ({}). \
             The API is described at <a href=\"/openapi.json\">/openapi.json</a>.</p>",
            console::left_out().unwrap_or("no assets")
        ))
        .into_response(),
    }
}

/// GET /console/{file}: one of the console's files.
pub async fn file(Path(path): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    console::asset(&path)
        .map(|asset| serve(asset, &headers))
        .ok_or_else(|| ApiError::NotFound(format!("the console has no file `{path}`")))
}

/// Adds the security headers to every response (the API's JSON included: harmless there, and
/// one place to keep them).
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
