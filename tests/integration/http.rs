//! A minimal HTTP/1.1 client over std's TcpStream, enough to call `braid serve` from tests
//! without another dependency: one request per connection, JSON bodies.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

/// Sends `method path` to `address` with an optional bearer token; returns status and body.
pub fn request(address: &str, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    request_with_body(address, method, path, token, "")
}

/// [`request`] with a JSON body.
pub fn request_with_body(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut stream =
        TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()));
    (status, body)
}

/// GET `path`.
pub fn get(address: &str, path: &str) -> (u16, Value) {
    request(address, "GET", path, None)
}

/// Whether GET /readyz answers 200 (false while nothing listens yet).
pub fn ready(address: &str) -> bool {
    TcpStream::connect(address).is_ok() && get(address, "/readyz").0 == 200
}

/// A free port on 127.0.0.1 (bound, then released for the server to take).
pub fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// GET `path` like [`get`], but a refused connection, a cut answer or a timeout is an error
/// rather than a panic (for a server that may be restarting).
pub fn try_get(address: &str, path: &str, timeout: Duration) -> Result<(u16, Value), String> {
    let (status, body) = try_get_text(address, path, timeout)?;
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    Ok((status, body))
}

/// [`try_get`] with the body as text (e.g. to read integers beyond 64 bits exactly).
pub fn try_get_text(address: &str, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(
        &address.parse().map_err(|e| format!("{address}: {e}"))?,
        timeout,
    )
    .map_err(|e| format!("connect {address}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("GET {path}: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no HTTP response"))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: no status line"))?;
    Ok((status, body.to_string()))
}
