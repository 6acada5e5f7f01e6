//! Prometheus metrics, kept in memory and written in the text exposition format at `/metrics`.
//!
//! Every label value is bounded: services and actions come from our own tables (an unknown
//! action is counted as `unknown`), outcomes are `ok` or an AWS error code we produce.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, String, String), u64>,
    bucket_counts: [u64; BUCKETS.len()],
    latency_sum: f64,
    latency_count: u64,
    auth_failures: BTreeMap<String, u64>,
    throttled: u64,
}

/// The server's metrics registry.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves counters that are still valid numbers.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Count one finished request and its latency.
    pub fn record_request(&self, service: &str, action: &str, outcome: &str, latency: Duration) {
        let secs = latency.as_secs_f64();
        let mut inner = self.lock();
        *inner
            .requests
            .entry((service.to_owned(), action.to_owned(), outcome.to_owned()))
            .or_default() += 1;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                inner.bucket_counts[i] += 1;
            }
        }
        inner.latency_sum += secs;
        inner.latency_count += 1;
    }

    /// Count one failed authentication, by error code.
    pub fn record_auth_failure(&self, code: &str) {
        *self
            .lock()
            .auth_failures
            .entry(code.to_owned())
            .or_default() += 1;
    }

    /// Count one request refused because its source is throttled.
    pub fn record_throttled(&self) {
        self.lock().throttled += 1;
    }

    /// The number of requests counted with these labels.
    pub fn requests(&self, service: &str, action: &str, outcome: &str) -> u64 {
        self.lock()
            .requests
            .get(&(service.to_owned(), action.to_owned(), outcome.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// The text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::with_capacity(2048);
        out.push_str(
            "# HELP hive_api_requests_total API requests by service, action and outcome.\n",
        );
        out.push_str("# TYPE hive_api_requests_total counter\n");
        for ((service, action, outcome), n) in &inner.requests {
            let _ = writeln!(
                out,
                "hive_api_requests_total{{service=\"{}\",action=\"{}\",outcome=\"{}\"}} {n}",
                label(service),
                label(action),
                label(outcome)
            );
        }
        out.push_str("# HELP hive_api_request_duration_seconds Request latency.\n");
        out.push_str("# TYPE hive_api_request_duration_seconds histogram\n");
        for (bound, n) in BUCKETS.iter().zip(inner.bucket_counts.iter()) {
            let _ = writeln!(
                out,
                "hive_api_request_duration_seconds_bucket{{le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "hive_api_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            inner.latency_count
        );
        let _ = writeln!(
            out,
            "hive_api_request_duration_seconds_sum {}",
            inner.latency_sum
        );
        let _ = writeln!(
            out,
            "hive_api_request_duration_seconds_count {}",
            inner.latency_count
        );
        out.push_str("# HELP hive_api_auth_failures_total Failed authentications by error code.\n");
        out.push_str("# TYPE hive_api_auth_failures_total counter\n");
        for (code, n) in &inner.auth_failures {
            let _ = writeln!(
                out,
                "hive_api_auth_failures_total{{code=\"{}\"}} {n}",
                label(code)
            );
        }
        out.push_str(
            "# HELP hive_api_auth_throttled_total Requests refused because their source failed \
             authentication too often.\n",
        );
        out.push_str("# TYPE hive_api_auth_throttled_total counter\n");
        let _ = writeln!(out, "hive_api_auth_throttled_total {}", inner.throttled);
        out
    }
}

/// A label value escaped for the exposition format.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_auth_failures() {
        let m = Metrics::new();
        m.record_request("iam", "GetUser", "ok", Duration::from_millis(3));
        m.record_request("iam", "GetUser", "ok", Duration::from_millis(30));
        m.record_request("sts", "unknown", "InvalidAction", Duration::from_secs(20));
        m.record_auth_failure("MissingAuthenticationToken");
        m.record_throttled();
        let text = m.render();
        assert!(text.contains(
            "hive_api_requests_total{service=\"iam\",action=\"GetUser\",outcome=\"ok\"} 2"
        ));
        assert!(text.contains("hive_api_request_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("hive_api_request_duration_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("hive_api_request_duration_seconds_bucket{le=\"10\"} 2"));
        assert!(text.contains("hive_api_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("hive_api_request_duration_seconds_count 3"));
        assert!(
            text.contains("hive_api_auth_failures_total{code=\"MissingAuthenticationToken\"} 1")
        );
        assert!(text.contains("hive_api_auth_throttled_total 1"));
        assert_eq!(m.requests("iam", "GetUser", "ok"), 2);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
