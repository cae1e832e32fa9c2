//! One registry endpoint: auth (anonymous, or basic credentials sent to the registry itself or
//! to its bearer-token service) and blob streams through oci-client, manifests fetched directly
//! so their size is bounded while they are read.

use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::auth::Credentials;
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
    /// Sent with every request when the registry asks for basic auth rather than a token.
    basic: Option<Credentials>,
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
    /// Build the clients and run the auth flow (`GET /v2/`, then the token realm when the
    /// registry names one), with `credentials` when there are some, else anonymously.
    pub async fn connect(
        endpoint: &Endpoint,
        image: &ImageRef,
        credentials: Option<Credentials>,
    ) -> Result<Remote, String> {
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
        let auth = match &credentials {
            // oci-client sends these to the token realm, or keeps them for basic auth.
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let token = client
            .auth(&reference, &auth, RegistryOperation::Pull)
            .await
            .map_err(|e| auth_failure(&e, &endpoint.host, credentials.is_some()))?;
        Ok(Remote {
            endpoint: endpoint.clone(),
            client,
            http,
            repository: image.repository.clone(),
            reference,
            // A token replaces the credentials; without one the registry wants basic auth (or
            // none at all, and then the header does no harm).
            basic: if token.is_some() { None } else { credentials },
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
        } else if let Some(c) = &self.basic {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let mut response = request.send().await.map_err(|e| describe(&e))?;
        let status = response.status();
        if !status.is_success() {
            let body = read_bounded(&mut response, 64 * 1024)
                .await
                .unwrap_or_default();
            return Err(http_failure(
                status,
                &body,
                &self.endpoint.host,
                self.token.is_some() || self.basic.is_some(),
            ));
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
                let message = match &e {
                    E::UnauthorizedError { .. } => access_denied(
                        401,
                        &self.endpoint.host,
                        self.token.is_some() || self.basic.is_some(),
                    ),
                    _ => describe(&e),
                };
                (message, retryable)
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

/// A failed `GET /v2/` or token request.
fn auth_failure(
    e: &oci_client::errors::OciDistributionError,
    host: &str,
    with_credentials: bool,
) -> String {
    use oci_client::errors::OciDistributionError as E;
    match e {
        E::AuthenticationFailure(body) => {
            let said: String = body.trim().chars().take(200).collect();
            let hint = if with_credentials {
                format!("check the credentials configured for {host}")
            } else {
                format!("the registry wants credentials: add them for {host} under registries.auth or registries.dockerConfig")
            };
            format!("the token service refused the request: {said} (hint: {hint})")
        }
        E::UnauthorizedError { .. } => access_denied(401, host, with_credentials),
        _ => describe(e),
    }
}

/// What a 401 or 403 means for the operator, with what to check.
fn access_denied(code: u16, host: &str, with_credentials: bool) -> String {
    if with_credentials {
        format!(
            "access denied (HTTP {code}; hint: the registry refused the credentials configured for {host}, or they do not allow pulling this repository)"
        )
    } else {
        format!(
            "access denied (HTTP {code}; hint: the image may be private — add credentials for {host} under registries.auth or registries.dockerConfig — or the name is wrong)"
        )
    }
}

/// A registry error response as an operator reads it: the registry's own messages
/// (`manifest unknown`), else the status and the start of the body.
fn http_failure(
    status: reqwest::StatusCode,
    body: &[u8],
    host: &str,
    with_credentials: bool,
) -> String {
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
        (code @ (401 | 403), _) => access_denied(code, host, with_credentials),
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
            http_failure(reqwest::StatusCode::NOT_FOUND, body, "r", false),
            "manifest unknown"
        );
        let body = br#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#;
        assert_eq!(
            http_failure(reqwest::StatusCode::NOT_FOUND, body, "r", false),
            "blob unknown"
        );
        assert_eq!(
            http_failure(reqwest::StatusCode::BAD_GATEWAY, b"", "r", false),
            "HTTP 502"
        );
        assert_eq!(
            http_failure(reqwest::StatusCode::BAD_GATEWAY, b" oops ", "r", false),
            "HTTP 502: oops"
        );
        assert_eq!(
            http_failure(reqwest::StatusCode::UNAUTHORIZED, b"{}", "reg.lan", false),
            "access denied (HTTP 401; hint: the image may be private — add credentials for reg.lan under registries.auth or registries.dockerConfig — or the name is wrong)"
        );
        assert_eq!(
            http_failure(reqwest::StatusCode::FORBIDDEN, b"{}", "reg.lan", true),
            "access denied (HTTP 403; hint: the registry refused the credentials configured for reg.lan, or they do not allow pulling this repository)"
        );
    }
}
