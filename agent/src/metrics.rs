//! Prometheus metrics of the agent, served as text at `GET /metrics`.

use berth_engine::images::StoreUsage;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

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
        for c in [
            Box::new(image_pull_duration.clone()) as Box<dyn prometheus::core::Collector>,
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
        }
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

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is utf-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
