//! Container health checks: an exec, HTTP or TCP probe and its timing, with Docker's
//! defaults (interval 30s, timeout 30s, retries 3, startPeriod 0s, startInterval 5s).

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::duration::DurationSpec;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "HealthcheckFields", into = "HealthcheckFields")]
pub struct Healthcheck {
    pub probe: Probe,
    pub interval: DurationSpec,
    pub timeout: DurationSpec,
    /// Consecutive failures before the container counts as unhealthy.
    pub retries: u32,
    /// Failures during this time after start do not count (a success ends it early).
    pub start_period: DurationSpec,
    /// Time between probes during the start period.
    pub start_interval: DurationSpec,
    pub on_unhealthy: OnUnhealthy,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Probe {
    /// Run a command in the container; exit status 0 is healthy.
    Exec(Vec<String>),
    /// GET `http://127.0.0.1:port/path` in the container's network; 2xx/3xx is healthy.
    Http(HttpProbe),
    /// A TCP connect to the port succeeds.
    Tcp(TcpProbe),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpProbe {
    #[serde(deserialize_with = "probe_port")]
    #[schemars(range(min = 1))]
    pub port: u16,
    #[serde(default = "root_path")]
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpProbe {
    #[serde(deserialize_with = "probe_port")]
    #[schemars(range(min = 1))]
    pub port: u16,
}

/// What berth does when the container turns unhealthy (podman's `--health-on-failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnUnhealthy {
    /// Only report it (status, metric).
    #[default]
    None,
    /// Stop the container and start it again (with the restart back-off).
    Restart,
    /// Stop the container and leave it stopped until its manifest changes.
    Stop,
}

fn root_path() -> String {
    "/".to_string()
}

fn probe_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    crate::port::port_number(d)
}

const DEFAULT_INTERVAL: DurationSpec = DurationSpec::from_secs(30);
const DEFAULT_TIMEOUT: DurationSpec = DurationSpec::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
const DEFAULT_START_PERIOD: DurationSpec = DurationSpec::from_secs(0);
const DEFAULT_START_INTERVAL: DurationSpec = DurationSpec::from_secs(5);

/// A health check: exactly one of `exec`, `http` or `tcp`, plus its timing.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(
    rename = "Healthcheck",
    extend("oneOf" = [{"required": ["exec"]}, {"required": ["http"]}, {"required": ["tcp"]}])
)]
pub(crate) struct HealthcheckFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    exec: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http: Option<HttpProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tcp: Option<TcpProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interval: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_period: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_interval: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on_unhealthy: Option<OnUnhealthy>,
}

impl TryFrom<HealthcheckFields> for Healthcheck {
    type Error = String;

    fn try_from(f: HealthcheckFields) -> Result<Self, String> {
        let probe = match (f.exec, f.http, f.tcp) {
            (Some(cmd), None, None) => {
                if cmd.is_empty() {
                    return Err("healthcheck exec is empty; hint: name a command, like [wget, -q, -O-, http://127.0.0.1/]".into());
                }
                Probe::Exec(cmd)
            }
            (None, Some(h), None) => Probe::Http(h),
            (None, None, Some(t)) => Probe::Tcp(t),
            _ => return Err("healthcheck needs exactly one of exec, http or tcp; hint: for example tcp: {port: 80}".into()),
        };
        let interval = f.interval.unwrap_or(DEFAULT_INTERVAL);
        let timeout = f.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let start_interval = f.start_interval.unwrap_or(DEFAULT_START_INTERVAL);
        // Docker refuses intervals under 1ms; anything that fast is a typo for seconds.
        for (field, d) in [("interval", interval), ("startInterval", start_interval)] {
            if d.millis() < 100 {
                return Err(format!(
                    "healthcheck {field} {d} is too short; hint: at least 100ms, for example 10s"
                ));
            }
        }
        if timeout.millis() == 0 {
            return Err(
                "healthcheck timeout must be more than 0s; hint: for example timeout: 2s".into(),
            );
        }
        let retries = f.retries.unwrap_or(DEFAULT_RETRIES);
        if retries == 0 {
            return Err("healthcheck retries must be at least 1; hint: 3 is usual".into());
        }
        Ok(Healthcheck {
            probe,
            interval,
            timeout,
            retries,
            start_period: f.start_period.unwrap_or(DEFAULT_START_PERIOD),
            start_interval,
            on_unhealthy: f.on_unhealthy.unwrap_or_default(),
        })
    }
}

impl From<Healthcheck> for HealthcheckFields {
    fn from(h: Healthcheck) -> Self {
        let (mut exec, mut http, mut tcp) = (None, None, None);
        match h.probe {
            Probe::Exec(c) => exec = Some(c),
            Probe::Http(p) => http = Some(p),
            Probe::Tcp(p) => tcp = Some(p),
        }
        HealthcheckFields {
            exec,
            http,
            tcp,
            interval: Some(h.interval),
            timeout: Some(h.timeout),
            retries: Some(h.retries),
            start_period: Some(h.start_period),
            // Left out at its default, so objects written before the field existed keep their
            // spec hash.
            start_interval: (h.start_interval != DEFAULT_START_INTERVAL)
                .then_some(h.start_interval),
            on_unhealthy: Some(h.on_unhealthy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply() {
        let h: Healthcheck = serde_yaml::from_str("{tcp: {port: 80}}").unwrap();
        assert_eq!(h.probe, Probe::Tcp(TcpProbe { port: 80 }));
        assert_eq!(h.interval.millis(), 30_000);
        assert_eq!(h.timeout.millis(), 30_000);
        assert_eq!(h.retries, 3);
        assert_eq!(h.start_period.millis(), 0);
        assert_eq!(h.start_interval.millis(), 5_000);
        assert_eq!(h.on_unhealthy, OnUnhealthy::None);
        let h: Healthcheck = serde_yaml::from_str("{http: {port: 8080}, interval: 5s}").unwrap();
        assert_eq!(
            h.probe,
            Probe::Http(HttpProbe {
                port: 8080,
                path: "/".into()
            })
        );
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"http":{"port":8080,"path":"/"},"interval":"5s","timeout":"30s","retries":3,"startPeriod":"0s","onUnhealthy":"none"}"#
        );
    }

    #[test]
    fn bad_healthchecks() {
        let cases = [
            ("{interval: 5s}", "needs exactly one of exec, http or tcp"),
            ("{exec: [], interval: 5s}", "healthcheck exec is empty"),
            (
                "{tcp: {port: 1}, timeout: 0s}",
                "timeout must be more than 0s",
            ),
            (
                "{tcp: {port: 1}, interval: 10ms}",
                "interval 10ms is too short",
            ),
            (
                "{tcp: {port: 1}, startInterval: 0s}",
                "startInterval 0s is too short",
            ),
            ("{tcp: {port: 1}, retries: 0}", "retries must be at least 1"),
        ];
        for (yaml, want) in cases {
            let err = serde_yaml::from_str::<Healthcheck>(yaml)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }
}
