//! Prometheus metrics of the agent, served as text at `GET /metrics`.

use std::path::Path;

use berth_engine::images::StoreUsage;
use berth_engine::network::InterfaceCounters;
use prometheus::{
    CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::usage::ContainerUsage;

/// The git source's metrics.
pub struct SourceMetrics {
    /// Syncs by result: ok (fetched and verified; applied or unchanged), fetch_failed,
    /// unverified (not signed by an allowed signer), invalid (does not load).
    pub sync_total: IntCounterVec,
    /// 1 for the revision applied now.
    pub revision_info: IntGaugeVec,
    /// Unix seconds of the last sync that succeeded.
    pub last_sync: prometheus::Gauge,
}

impl SourceMetrics {
    pub const RESULTS: [&'static str; 4] = ["ok", "fetch_failed", "unverified", "invalid"];

    fn new() -> SourceMetrics {
        SourceMetrics {
            sync_total: IntCounterVec::new(
                Opts::new(
                    "berth_source_sync_total",
                    "Syncs of the git source, by result.",
                ),
                &["result"],
            )
            .expect("valid metric"),
            revision_info: IntGaugeVec::new(
                Opts::new(
                    "berth_source_revision_info",
                    "1 for the git revision the agent applies.",
                ),
                &["revision"],
            )
            .expect("valid metric"),
            last_sync: prometheus::Gauge::new(
                "berth_source_last_sync_timestamp_seconds",
                "Unix time of the last sync of the git source that succeeded.",
            )
            .expect("valid metric"),
        }
    }

    /// The applied revision becomes `revision`.
    pub fn set_revision(&self, revision: &str) {
        self.revision_info.reset();
        self.revision_info.with_label_values(&[revision]).set(1);
    }
}

pub struct Metrics {
    registry: Registry,
    /// Reconcile passes by result (ok | error).
    pub reconcile_total: IntCounterVec,
    pub reconcile_duration: Histogram,
    /// Actions executed, by action and result.
    pub actions_total: IntCounterVec,
    /// Containers by state, set after every pass.
    pub containers: IntGaugeVec,
    /// 1 for each manifest file that does not load.
    pub manifest_errors: IntGaugeVec,
    /// Image pulls (resolve, download, verify, unpack), by result (ok | error).
    pub image_pull_duration: HistogramVec,
    /// Bytes received from registries by pulls.
    pub image_pull_bytes: IntCounter,
    /// Disk the image store occupies, by kind (content: blobs; layers: unpacked trees).
    pub image_store_bytes: IntGaugeVec,
    /// Passes that held back removals because the manifest directory was empty.
    pub prune_blocked_total: IntCounter,
    /// 1 for the health status of each container with a healthcheck.
    pub container_health: IntGaugeVec,
    /// Restarts of each container over its life.
    pub container_restarts: IntGaugeVec,
    /// Updates put back on their previous revision, by container.
    pub rollbacks_total: IntCounterVec,
    /// Actions running or queued now.
    pub actions_in_flight: prometheus::IntGauge,
    /// Size of the filesystem that holds the state dir (images, volumes, container dirs).
    pub state_filesystem_size: prometheus::IntGauge,
    /// Free bytes of that filesystem (available to unprivileged users, as `df` shows them).
    pub state_filesystem_avail: prometheus::IntGauge,
    /// The git source's syncs (registered only with one: [`Metrics::register_source`]).
    pub source: SourceMetrics,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reconcile_total = IntCounterVec::new(
            Opts::new("berth_reconcile_total", "Reconcile passes, by result."),
            &["result"],
        )
        .expect("valid metric");
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "berth_reconcile_duration_seconds",
                "Time a reconcile pass took to plan and dispatch.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )
        .expect("valid metric");
        let actions_total = IntCounterVec::new(
            Opts::new(
                "berth_actions_total",
                "Actions on containers, by action and result.",
            ),
            &["action", "result"],
        )
        .expect("valid metric");
        let containers = IntGaugeVec::new(
            Opts::new("berth_containers", "Containers, by state."),
            &["state"],
        )
        .expect("valid metric");
        let manifest_errors = IntGaugeVec::new(
            Opts::new(
                "berth_manifest_errors",
                "1 for each manifest file that does not load.",
            ),
            &["file"],
        )
        .expect("valid metric");
        let image_pull_duration = HistogramVec::new(
            HistogramOpts::new(
                "berth_image_pull_duration_seconds",
                "Time an image pull took, by result.",
            )
            .buckets(vec![
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
            ]),
            &["result"],
        )
        .expect("valid metric");
        let image_pull_bytes = IntCounter::new(
            "berth_image_pull_bytes_total",
            "Bytes received from registries by image pulls.",
        )
        .expect("valid metric");
        let image_store_bytes = IntGaugeVec::new(
            Opts::new(
                "berth_image_store_bytes",
                "Disk the image store occupies, by kind (content, layers).",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let prune_blocked_total = IntCounter::new(
            "berth_prune_blocked_total",
            "Reconcile passes that removed nothing because the manifest directory held no object (allowEmpty is off).",
        )
        .expect("valid metric");
        let container_health = IntGaugeVec::new(
            Opts::new(
                "berth_container_health",
                "1 for the current health (starting, healthy, unhealthy) of each running container with a healthcheck.",
            ),
            &["container", "status"],
        )
        .expect("valid metric");
        let container_restarts = IntGaugeVec::new(
            Opts::new(
                "berth_container_restarts",
                "Restarts of each container since it was created.",
            ),
            &["container"],
        )
        .expect("valid metric");
        let rollbacks_total = IntCounterVec::new(
            Opts::new(
                "berth_rollbacks_total",
                "Updates that did not become ready and were put back on the previous revision.",
            ),
            &["container"],
        )
        .expect("valid metric");
        let actions_in_flight =
            prometheus::IntGauge::new("berth_actions_in_flight", "Actions running or queued now.")
                .expect("valid metric");
        let state_filesystem_size = prometheus::IntGauge::new(
            "berth_state_filesystem_size_bytes",
            "Size of the filesystem that holds the state dir (images, volumes, container dirs).",
        )
        .expect("valid metric");
        let state_filesystem_avail = prometheus::IntGauge::new(
            "berth_state_filesystem_avail_bytes",
            "Free bytes of the filesystem that holds the state dir (available to unprivileged users, as df shows).",
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "berth_build_info",
                "1, labelled with the version of the running berth.",
            ),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for c in [
            Box::new(build_info) as Box<dyn prometheus::core::Collector>,
            Box::new(prune_blocked_total.clone()),
            Box::new(container_health.clone()),
            Box::new(container_restarts.clone()),
            Box::new(rollbacks_total.clone()),
            Box::new(actions_in_flight.clone()),
            Box::new(image_pull_duration.clone()),
            Box::new(image_pull_bytes.clone()),
            Box::new(image_store_bytes.clone()),
            Box::new(reconcile_total.clone()),
            Box::new(reconcile_duration.clone()),
            Box::new(actions_total.clone()),
            Box::new(containers.clone()),
            Box::new(manifest_errors.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        for g in [&state_filesystem_size, &state_filesystem_avail] {
            registry
                .register(Box::new(g.clone()))
                .expect("metric registered once");
        }
        // Both results exist from the start, so rate() works before the first error.
        reconcile_total.with_label_values(&["ok"]);
        reconcile_total.with_label_values(&["error"]);
        image_pull_duration.with_label_values(&["ok"]);
        image_pull_duration.with_label_values(&["error"]);
        Metrics {
            registry,
            reconcile_total,
            reconcile_duration,
            actions_total,
            containers,
            manifest_errors,
            image_pull_duration,
            image_pull_bytes,
            image_store_bytes,
            prune_blocked_total,
            container_health,
            container_restarts,
            rollbacks_total,
            actions_in_flight,
            state_filesystem_size,
            state_filesystem_avail,
            source: SourceMetrics::new(),
        }
    }

    /// Exports the git source's metrics (only agents with one have them: a directory has no
    /// sync to watch).
    pub fn register_source(&self) {
        for c in [
            Box::new(self.source.sync_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(self.source.revision_info.clone()),
            Box::new(self.source.last_sync.clone()),
        ] {
            self.registry
                .register(c)
                .expect("source metrics registered once");
        }
        for result in SourceMetrics::RESULTS {
            self.source.sync_total.with_label_values(&[result]);
        }
    }

    /// Measures the filesystem that holds `dir` (statvfs) and sets the state filesystem gauges.
    pub fn set_state_filesystem(&self, dir: &Path) -> nix::Result<()> {
        let fs = nix::sys::statvfs::statvfs(dir)?;
        let bytes = |blocks: u64| blocks.saturating_mul(fs.fragment_size() as u64);
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.state_filesystem_size
            .set(gauge(bytes(fs.blocks() as u64)));
        self.state_filesystem_avail
            .set(gauge(bytes(fs.blocks_available() as u64)));
        Ok(())
    }

    /// One finished pull: how long it took, whether it worked, and the bytes it received.
    pub fn observe_pull(&self, seconds: f64, ok: bool, downloaded_bytes: u64) {
        self.image_pull_duration
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .observe(seconds);
        self.image_pull_bytes.inc_by(downloaded_bytes);
    }

    pub fn set_store_usage(&self, usage: StoreUsage) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.image_store_bytes
            .with_label_values(&["content"])
            .set(gauge(usage.content_bytes));
        self.image_store_bytes
            .with_label_values(&["layers"])
            .set(gauge(usage.layers_bytes));
    }

    /// The agent's own metrics, then the usage of each running container.
    pub fn render_with(&self, usage: &[ContainerUsage]) -> String {
        let mut families = self.registry.gather();
        families.extend(usage_registry(usage).gather());
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is utf-8")
    }
}

/// The traffic counters exported per container and interface: (name, help, value).
type NetCounter = (&'static str, &'static str, fn(&InterfaceCounters) -> u64);
const NETWORK_COUNTERS: [NetCounter; 8] = [
    ("receive_bytes", "Bytes received", |c| c.rx_bytes),
    ("transmit_bytes", "Bytes sent", |c| c.tx_bytes),
    ("receive_packets", "Packets received", |c| c.rx_packets),
    ("transmit_packets", "Packets sent", |c| c.tx_packets),
    ("receive_errors", "Receive errors", |c| c.rx_errors),
    ("transmit_errors", "Transmit errors", |c| c.tx_errors),
    (
        "receive_packets_dropped",
        "Packets dropped on receive",
        |c| c.rx_dropped,
    ),
    ("transmit_packets_dropped", "Packets dropped on send", |c| {
        c.tx_dropped
    }),
];

/// A registry built for one scrape from the containers' usage: series come and go with the
/// containers, and every value is the kernel's own counter, not a sample kept by berth.
fn usage_registry(usage: &[ContainerUsage]) -> Registry {
    let registry = Registry::new();
    // cAdvisor's names, units and labels, so dashboards and alert sets made for it work.
    const LABELS: [&str; 3] = ["id", "name", "image"];
    let cpu = CounterVec::new(
        Opts::new(
            "container_cpu_usage_seconds_total",
            "Cumulative cpu time consumed in seconds.",
        ),
        &LABELS,
    )
    .expect("valid metric");
    let gauges = [
        (
            "container_memory_usage_bytes",
            "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        ),
        (
            "container_memory_working_set_bytes",
            "Current working set in bytes.",
        ),
        ("container_threads", "Number of threads running inside the container."),
        (
            "container_spec_memory_limit_bytes",
            "Memory limit for the container (0: none).",
        ),
        ("container_spec_cpu_quota", "CPU quota of the container (microseconds per period; absent: none)."),
        ("container_spec_cpu_period", "CPU period of the container (microseconds)."),
        ("container_start_time_seconds", "Start time of the container since unix epoch in seconds."),
        ("container_last_seen", "Last time a container was seen by the exporter."),
    ]
    .map(|(name, help)| IntGaugeVec::new(Opts::new(name, help), &LABELS).expect("valid metric"));
    let oom = IntCounterVec::new(
        Opts::new(
            "container_oom_events_total",
            "Count of out of memory events observed for the container.",
        ),
        &LABELS,
    )
    .expect("valid metric");
    let network = NETWORK_COUNTERS.map(|(name, help, _)| {
        IntCounterVec::new(
            Opts::new(
                format!("container_network_{name}_total"),
                format!("{help} on the container's interface."),
            ),
            &["id", "name", "image", "interface"],
        )
        .expect("valid metric")
    });
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let now = berth_engine::runtime::exit::now_ms() / 1000;
    for u in usage {
        let labels = [u.id.as_str(), u.name.as_str(), u.image.as_str()];
        let c = &u.cgroup;
        if let Some(usec) = c.cpu_usage_usec {
            cpu.with_label_values(&labels).inc_by(usec as f64 / 1e6);
        }
        let values = [
            c.memory_usage_bytes,
            c.memory_working_set_bytes,
            c.pids,
            Some(u.limits.memory_bytes.unwrap_or(0)),
            u.limits.cpu_quota_us(),
            Some(berth_engine::cgroups::CPU_PERIOD_US),
            u.started_at,
            Some(now),
        ];
        for (g, v) in gauges.iter().zip(values) {
            if let Some(v) = v {
                g.with_label_values(&labels).set(gauge(v));
            }
        }
        if let Some(n) = c.oom_kills {
            oom.with_label_values(&labels).inc_by(n);
        }
        for iface in u.network.iter().flatten() {
            let labels = [
                u.id.as_str(),
                u.name.as_str(),
                u.image.as_str(),
                iface.interface.as_str(),
            ];
            for (metric, (_, _, value)) in network.iter().zip(NETWORK_COUNTERS) {
                metric.with_label_values(&labels).inc_by(value(iface));
            }
        }
    }
    let collectors: Vec<Box<dyn prometheus::core::Collector>> = [
        Box::new(cpu) as Box<dyn prometheus::core::Collector>,
        Box::new(oom),
    ]
    .into_iter()
    .chain(gauges.into_iter().map(|g| Box::new(g) as Box<_>))
    .chain(network.into_iter().map(|m| Box::new(m) as Box<_>))
    .collect();
    for c in collectors {
        registry.register(c).expect("metric registered once");
    }
    registry
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `df -B1 --output=size,avail DIR`: the same statvfs numbers, read by another program.
    fn df(dir: &Path) -> (i64, i64) {
        let out = std::process::Command::new("df")
            .args(["-B1", "--output=size,avail"])
            .arg(dir)
            .output()
            .expect("run df");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let line = text
            .lines()
            .nth(1)
            .expect("df prints a header and one line");
        let mut n = line.split_whitespace().map(|v| v.parse::<i64>().unwrap());
        (n.next().unwrap(), n.next().unwrap())
    }

    #[test]
    fn state_filesystem_gauges_measure_the_filesystem_of_the_dir() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        metrics.set_state_filesystem(dir.path()).unwrap();
        let (size, avail) = df(dir.path());
        assert!(size > 0, "{size}");
        assert_eq!(metrics.state_filesystem_size.get(), size);
        // Other writers on the same filesystem move the free space between the two reads.
        let measured = metrics.state_filesystem_avail.get();
        assert!(
            (measured - avail).abs() < 256 << 20 && measured <= size,
            "avail {measured}, df says {avail} of {size}"
        );
        let text = metrics.render_with(&[]);
        assert!(
            text.contains(&format!("\nberth_state_filesystem_size_bytes {size}\n")),
            "{text}"
        );
        assert!(
            text.contains("\nberth_state_filesystem_avail_bytes "),
            "{text}"
        );
        // A dir that cannot be measured is an error, and the last values stay.
        assert!(metrics
            .set_state_filesystem(&dir.path().join("missing"))
            .is_err());
        assert_eq!(metrics.state_filesystem_size.get(), size);
    }
}
