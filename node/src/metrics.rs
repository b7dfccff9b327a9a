//! Latency histograms the node records and `/metrics` exposes, in seconds as Prometheus' conventions ask.
//!
//! The counters live beside the code that counts them (`service::Metrics`); histograms are kept here so every
//! recorder and the exporter share one set of bucket bounds.

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Bucket bounds in seconds: 1 ms doubling to about 33 s, which covers a loopback read and a many-GiB write.
fn buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 16)
}

/// The node's latency histograms. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Latencies {
    /// Certified puts, from the request to the certificate.
    pub put: Histogram,
    /// Successful gets (whole blobs or ranges read into memory).
    pub get: Histogram,
    /// Gateway requests, from the request line to the answer's headers, whatever the route and outcome.
    pub http_request: Histogram,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            put: Histogram::new(buckets()),
            get: Histogram::new(buckets()),
            http_request: Histogram::new(buckets()),
        }
    }
}

impl Latencies {
    /// Registers every histogram (the registry adds the `_seconds` unit to each name).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let unit = prometheus_client::registry::Unit::Seconds;
        for (name, help, histogram) in [
            ("floe_put_duration", "time to certify a put", &self.put),
            (
                "floe_get_duration",
                "time to read a blob or range",
                &self.get,
            ),
            (
                "floe_http_request_duration",
                "time from a gateway request to its answer's headers",
                &self.http_request,
            ),
        ] {
            registry.register_with_unit(name, help, unit.clone(), histogram.clone());
        }
    }
}
