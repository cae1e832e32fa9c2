//! One registry endpoint: anonymous bearer-token auth and blob streams through oci-client,
//! manifests fetched directly so their size is bounded while they are read.

use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::manifest::{ACCEPTED_MANIFEST_TYPES, MAX_MANIFEST_BYTES};
use super::reference::ImageRef;
use super::registry::Endpoint;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const USER_AGENT: &str = concat!("berth/", env!("CARGO_PKG_VERSION"));

/// A connected (authenticated) endpoint for one image.
pub struct Remote {
    pub endpoint: Endpoint,
    client: Client,
    http: reqwest::Client,
    reference: Reference,
    repository: String,
    token: Option<String>,
}

/// A manifest body and the `Content-Type` it came with.
pub struct RawManifest {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
}

/// A blob body from `offset` on, or from 0 when the registry ignored the range.
pub struct BlobBody {
    pub stream: oci_client::client::SizedStream,
    /// The bytes start at the requested offset (HTTP 206) rather than at 0.
    pub partial: bool,
}

impl Remote {
    /// Build the clients and run the anonymous token flow (`GET /v2/`, then the realm).
    pub async fn connect(endpoint: &Endpoint, image: &ImageRef) -> Result<Remote, String> {
        let protocol = if endpoint.plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            // Platform selection is ours (variant-aware); oci-client must never pick.
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: USER_AGENT,
            ..Default::default()
        };
        let client = Client::try_from(config).map_err(|e| describe(&e))?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| describe(&e))?;
        let reference = image.at_host(&endpoint.host);
        let token = client
            .auth(
                &reference,
                &RegistryAuth::Anonymous,
                RegistryOperation::Pull,
            )
            .await
            .map_err(|e| describe(&e))?;
        Ok(Remote {
            endpoint: endpoint.clone(),
            client,
            http,
            repository: image.repository.clone(),
            reference,
            token,
        })
    }

    fn scheme(&self) -> &'static str {
        if self.endpoint.plain_http {
            "http"
        } else {
            "https"
        }
    }

    /// `GET /v2/<repo>/manifests/<tag|digest>`, refusing bodies over [`MAX_MANIFEST_BYTES`]
    /// before reading them into memory.
    pub async fn manifest(&self, tag_or_digest: &str) -> Result<RawManifest, String> {
        let url = format!(
            "{}://{}/v2/{}/manifests/{}",
            self.scheme(),
            self.endpoint.host,
            self.repository,
            tag_or_digest
        );
        let mut request = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, ACCEPTED_MANIFEST_TYPES.join(", "));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let mut response = request.send().await.map_err(|e| describe(&e))?;
        let status = response.status();
        if !status.is_success() {
            let body = read_bounded(&mut response, 64 * 1024)
                .await
                .unwrap_or_default();
            return Err(http_failure(status, &body));
        }
        if response
            .content_length()
            .is_some_and(|l| l > MAX_MANIFEST_BYTES)
        {
            return Err(format!(
                "manifest {tag_or_digest} is {} bytes, more than the {MAX_MANIFEST_BYTES} allowed",
                response.content_length().unwrap_or_default()
            ));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_bounded(&mut response, MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| format!("manifest {tag_or_digest} {e}"))?;
        Ok(RawManifest {
            bytes,
            content_type,
        })
    }

    /// Stream a blob from `offset` on (HTTP range; `offset` 0 asks for all of it). The error
    /// says whether trying again may help (connection trouble, 5xx) or not (404, 401).
    pub async fn blob(
        &self,
        desc: &OciDescriptor,
        offset: u64,
    ) -> Result<BlobBody, (String, bool)> {
        // Foreign-layer `urls` from the manifest are never followed: they would send
        // requests wherever an untrusted manifest points.
        let desc = OciDescriptor {
            urls: None,
            ..desc.clone()
        };
        let response = self
            .client
            .pull_blob_stream_partial(&self.reference, &desc, offset, None)
            .await
            .map_err(|e| {
                use oci_client::errors::OciDistributionError as E;
                let retryable = match &e {
                    E::ServerError { code, .. } => *code >= 500 || *code == 408 || *code == 429,
                    E::RegistryError { .. } | E::UnauthorizedError { .. } => false,
                    _ => true,
                };
                (describe(&e), retryable)
            })?;
        Ok(match response {
            oci_client::client::BlobResponse::Full(stream) => BlobBody {
                stream,
                partial: false,
            },
            oci_client::client::BlobResponse::Partial(stream) => BlobBody {
                stream,
                partial: true,
            },
        })
    }
}

/// Read a response body, failing once it passes `limit` bytes.
async fn read_bounded(response: &mut reqwest::Response, limit: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(format!("is more than the {limit} bytes allowed"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A registry error response as an operator reads it: the registry's own messages
/// (`manifest unknown`), else the status and the start of the body.
fn http_failure(status: reqwest::StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let registry_said = serde_json::from_slice::<Envelope>(body).ok().map(|env| {
        env.errors
            .iter()
            .map(|e| {
                if e.message.is_empty() {
                    e.code.to_lowercase().replace('_', " ")
                } else {
                    e.message.clone()
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    });
    match (status.as_u16(), registry_said) {
        (401, _) | (403, _) => format!(
            "access denied (HTTP {}; hint: the image may be private, or the name is wrong)",
            status.as_u16()
        ),
        (_, Some(said)) if !said.is_empty() => said,
        (code, _) => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.trim().chars().take(200).collect();
            if text.is_empty() {
                format!("HTTP {code}")
            } else {
                format!("HTTP {code}: {text}")
            }
        }
    }
}

/// An error with its whole source chain, since reqwest's top message ("error sending
/// request") hides the cause an operator needs (DNS, refused, TLS).
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_read_well() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#;
        assert_eq!(
            http_failure(reqwest::StatusCode::NOT_FOUND, body),
            "manifest unknown"
        );
        let body = br#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#;
        assert_eq!(
            http_failure(reqwest::StatusCode::NOT_FOUND, body),
            "blob unknown"
        );
        assert_eq!(
            http_failure(reqwest::StatusCode::BAD_GATEWAY, b""),
            "HTTP 502"
        );
        assert_eq!(
            http_failure(reqwest::StatusCode::BAD_GATEWAY, b" oops "),
            "HTTP 502: oops"
        );
        assert!(http_failure(reqwest::StatusCode::UNAUTHORIZED, b"{}")
            .starts_with("access denied (HTTP 401"));
    }
}
