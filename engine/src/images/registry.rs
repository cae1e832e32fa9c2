//! Registry settings (mirrors, insecure hosts) and the endpoints a pull tries, in order.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// Registry settings from the agent config (`registries:`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registry host → endpoints tried in order before the registry itself, e.g.
    /// `"docker.io" -> ["http://127.0.0.1:5000"]`.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Hosts (`host:port`) allowed over plain HTTP although they are not loopback.
    #[serde(default)]
    pub insecure: Vec<String>,
}

/// One place to pull from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    /// Plain HTTP instead of HTTPS.
    pub plain_http: bool,
}

/// Why an endpoint cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointProblem {
    /// The endpoint string is not `[http[s]://]host[:port]`.
    Invalid { endpoint: String, reason: String },
    /// Plain HTTP to a host that is neither loopback nor listed as insecure.
    Insecure { endpoint: String, host: String },
}

/// The endpoints to try for `registry`: each mirror in order, then the registry itself
/// (`docker.io` is served by `registry-1.docker.io`).
pub fn endpoints_for(
    config: &RegistryConfig,
    registry: &str,
) -> Result<Vec<Endpoint>, EndpointProblem> {
    let mut out = Vec::new();
    for raw in config.mirrors.get(registry).into_iter().flatten() {
        out.push(parse_endpoint(config, raw)?);
    }
    let host = if registry == "docker.io" {
        "registry-1.docker.io".to_string()
    } else {
        registry.to_string()
    };
    // Docker reaches loopback registries and the configured insecure ones over plain HTTP.
    let plain_http = is_loopback_host(&host) || is_listed_insecure(config, &host);
    out.push(Endpoint { host, plain_http });
    Ok(out)
}

fn parse_endpoint(config: &RegistryConfig, raw: &str) -> Result<Endpoint, EndpointProblem> {
    let invalid = |reason: &str| EndpointProblem::Invalid {
        endpoint: raw.to_string(),
        reason: reason.to_string(),
    };
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, rest)) => (Some(s), rest),
        None => (None, raw),
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    if host.contains('/') || host.contains('@') || host.contains('?') || host.contains('#') {
        return Err(invalid(
            "only [http[s]://]host[:port] is supported, without a path",
        ));
    }
    let plain_http = match scheme {
        Some("https") => false,
        Some("http") => true,
        Some(other) => return Err(invalid(&format!("unsupported scheme {other:?}"))),
        // A bare host is HTTPS unless the operator listed it as insecure.
        None => is_listed_insecure(config, host),
    };
    if plain_http && !is_loopback_host(host) && !is_listed_insecure(config, host) {
        return Err(EndpointProblem::Insecure {
            endpoint: raw.to_string(),
            host: host.to_string(),
        });
    }
    Ok(Endpoint {
        host: host.to_string(),
        plain_http,
    })
}

fn is_listed_insecure(config: &RegistryConfig, host: &str) -> bool {
    let bare = host_without_port(host);
    config
        .insecure
        .iter()
        .any(|h| h == host || (h.as_str() == bare && !h.is_empty()))
}

/// `host:port` → `host`; `[::1]:5000` → `::1`.
fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address.
        Some((h, _)) if !h.contains(':') => h,
        _ => host,
    }
}

/// 127.0.0.0/8, ::1 and `localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host_without_port(host);
    if bare.eq_ignore_ascii_case("localhost") {
        return true;
    }
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(mirrors: &[(&str, &[&str])], insecure: &[&str]) -> RegistryConfig {
        RegistryConfig {
            mirrors: mirrors
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            insecure: insecure.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn ep(host: &str, plain_http: bool) -> Endpoint {
        Endpoint {
            host: host.to_string(),
            plain_http,
        }
    }

    #[test]
    fn mirrors_come_first_then_the_registry() {
        let c = cfg(
            &[(
                "docker.io",
                &["http://127.0.0.1:5000", "https://mirror.example.com/"],
            )],
            &[],
        );
        assert_eq!(
            endpoints_for(&c, "docker.io").unwrap(),
            vec![
                ep("127.0.0.1:5000", true),
                ep("mirror.example.com", false),
                ep("registry-1.docker.io", false)
            ]
        );
        assert_eq!(
            endpoints_for(&c, "ghcr.io").unwrap(),
            vec![ep("ghcr.io", false)]
        );
        assert_eq!(
            endpoints_for(&c, "localhost:5000").unwrap(),
            vec![ep("localhost:5000", true)]
        );
        assert_eq!(
            endpoints_for(&c, "[::1]:5000").unwrap(),
            vec![ep("[::1]:5000", true)]
        );
    }

    #[test]
    fn plain_http_needs_loopback_or_insecure() {
        let c = cfg(&[("docker.io", &["http://10.1.2.3:5000"])], &[]);
        assert_eq!(
            endpoints_for(&c, "docker.io").unwrap_err(),
            EndpointProblem::Insecure {
                endpoint: "http://10.1.2.3:5000".to_string(),
                host: "10.1.2.3:5000".to_string()
            }
        );
        let c = cfg(
            &[("docker.io", &["http://10.1.2.3:5000"])],
            &["10.1.2.3:5000"],
        );
        assert_eq!(
            endpoints_for(&c, "docker.io").unwrap()[0],
            ep("10.1.2.3:5000", true)
        );
        let c = cfg(&[("docker.io", &["reg.lan:5000"])], &["reg.lan"]);
        assert_eq!(
            endpoints_for(&c, "docker.io").unwrap()[0],
            ep("reg.lan:5000", true)
        );
        let c = cfg(&[], &["reg.lan:5000"]);
        assert_eq!(
            endpoints_for(&c, "reg.lan:5000").unwrap(),
            vec![ep("reg.lan:5000", true)]
        );
    }

    #[test]
    fn refuses_malformed_endpoints() {
        for bad in ["ftp://x", "http://", "http://x/path", "http://user@x"] {
            let c = cfg(&[("docker.io", &[bad])], &[]);
            assert!(
                matches!(
                    endpoints_for(&c, "docker.io"),
                    Err(EndpointProblem::Invalid { .. })
                ),
                "{bad} must be refused"
            );
        }
    }

    #[test]
    fn loopback_detection() {
        for yes in [
            "127.0.0.1",
            "127.1.2.3:80",
            "localhost:5000",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback_host(yes), "{yes}");
        }
        for no in [
            "10.0.0.1:5000",
            "example.com",
            "128.0.0.1",
            "[::2]:1",
            "localhost.example",
        ] {
            assert!(!is_loopback_host(no), "{no}");
        }
    }
}
