//! Who may read what. The TCP listener (loopback by default) serves status, `/metrics` and the
//! health endpoints to anyone who reaches it; with `apiTokenFile`, every request but
//! `/healthz` and `/readyz` needs `Authorization: Bearer <token>`, and then container logs are
//! served too. Without a token, container logs (which carry secrets as often as env does) are
//! served only on the unix socket `<runDir>/berth.sock` (mode 0660: root and the `berth`
//! group), as Docker serves its API only on its socket.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::error;

/// The rules of the TCP listener.
#[derive(Debug, Clone)]
pub struct TcpAccess {
    /// The bearer token every request but the health endpoints needs, when configured.
    pub token: Option<String>,
    /// The unix socket, for the hint of a refused request.
    pub socket: std::path::PathBuf,
}

/// Reads the token of `apiTokenFile`: at least 16 characters, surrounding whitespace dropped.
pub fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context;
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("read apiTokenFile {}", path.display()))?
        .trim()
        .to_string();
    if token.len() < 16 {
        anyhow::bail!(
            "apiTokenFile {}: the token must have at least 16 characters (hint: head -c 32 /dev/urandom | base64)",
            path.display()
        );
    }
    Ok(token)
}

/// Paths anyone who reaches the listener may read.
fn is_health(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

fn is_logs(path: &str) -> bool {
    path.starts_with("/v1/containers/") && path.ends_with("/logs")
}

/// Compares without stopping at the first different byte, so the time taken does not tell
/// how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The TCP listener's middleware.
pub async fn tcp_gate(State(access): State<Arc<TcpAccess>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if is_health(&path) {
        return next.run(req).await;
    }
    match &access.token {
        Some(token) => {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if given.is_some_and(|g| same(g.trim().as_bytes(), token.as_bytes())) {
                next.run(req).await
            } else {
                let mut resp = error(
                    StatusCode::UNAUTHORIZED,
                    "this endpoint needs Authorization: Bearer <the agent's apiTokenFile token>",
                );
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                resp
            }
        }
        None if is_logs(&path) => error(
            StatusCode::FORBIDDEN,
            &format!(
                "container logs are served on the unix socket {} (root and the berth group), or on this listener with the API token (apiTokenFile)",
                access.socket.display()
            ),
        ),
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
