//! Prometheus metrics for both programs: request counters and latency histograms kept while
//! serving, and the text exposition format (version 0.0.4) that `/metrics` answers with.
//!
//! Written here rather than taken from a client library: every scraper (Prometheus, VictoriaMetrics,
//! Telegraf, the Grafana agent) reads this classic format, the programs' state-derived values
//! (hosts by state, jobs by state, certificate expiry) are read at scrape time rather than
//! mirrored into a global registry, and the whole of it is a page of code. The official Rust
//! client writes OpenMetrics only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the latency buckets: 1 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What kind of series a family holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets at restart).
    Counter,
    /// Any value.
    Gauge,
    /// Cumulative buckets, sum and count.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// A page of the text exposition being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Samples of it follow.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Self {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", number(value));
        self
    }

    /// A family of one sample without labels.
    pub fn single(&mut self, name: &str, help: &str, kind: Kind, value: f64) -> &mut Self {
        self.family(name, help, kind).sample(name, &[], value)
    }

    /// The lines of one histogram series (buckets, sum, count).
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) -> &mut Self {
        let mut cumulative = 0_u64;
        for (bound, count) in h.bounds.iter().zip(&h.counts) {
            cumulative += count;
            let _ = write!(self.out, "{name}_bucket");
            write_labels(&mut self.out, labels, Some(&number(*bound)));
            let _ = writeln!(self.out, " {cumulative}");
        }
        let _ = write!(self.out, "{name}_bucket");
        write_labels(&mut self.out, labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", h.count);
        let _ = write!(self.out, "{name}_sum");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", number(h.sum));
        let _ = write!(self.out, "{name}_count");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", h.count);
        self
    }

    /// The page.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A float as the format writes it (`+Inf`, `-Inf`, `NaN`, else Rust's shortest form).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

/// Observations counted into fixed buckets.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending upper bounds).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    /// Counts one observation.
    pub fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Requests served, by method, route pattern and status, with their latency by method and route.
/// Routes are the router's patterns (`/api/v1/hosts/{host_id}`), never raw paths, so a scan of
/// random paths adds one series (`route="unmatched"`), not thousands.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    inner: Mutex<HttpInner>,
}

#[derive(Debug, Default)]
struct HttpInner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<(String, String), Histogram>,
}

impl HttpMetrics {
    /// Counts one answered request. Methods outside the standard set are counted as `other`:
    /// a client may send any token as a method, and every label value is a series kept forever.
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        const KNOWN: [&str; 9] = [
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
        ];
        let method = if KNOWN.contains(&method) {
            method
        } else {
            "other"
        };
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        *inner
            .requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        inner
            .latency
            .entry((method.to_owned(), route.to_owned()))
            .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
            .observe(elapsed.as_secs_f64());
    }

    /// Writes `{prefix}_http_requests_total` and `{prefix}_http_request_duration_seconds`.
    pub fn write(&self, prefix: &str, page: &mut Exposition) {
        let Ok(inner) = self.inner.lock() else {
            return;
        };
        let name = format!("{prefix}_http_requests_total");
        page.family(
            &name,
            "HTTP requests answered, by method, route pattern and status.",
            Kind::Counter,
        );
        for ((method, route, status), n) in &inner.requests {
            let status = status.to_string();
            page.sample(
                &name,
                &[("method", method), ("route", route), ("status", &status)],
                *n as f64,
            );
        }
        let name = format!("{prefix}_http_request_duration_seconds");
        page.family(
            &name,
            "Time from the request's arrival to its answer, by method and route pattern.",
            Kind::Histogram,
        );
        for ((method, route), h) in &inner.latency {
            page.histogram(&name, &[("method", method), ("route", route)], h);
        }
    }
}

/// Counts by one label, for the families read at scrape time (jobs by state, hosts by state).
/// Every name in `all` gets a sample, zero when absent, so a state that empties shows 0 rather
/// than disappearing.
pub fn write_counts(
    page: &mut Exposition,
    name: &str,
    help: &str,
    label: &str,
    all: &[&str],
    counts: &BTreeMap<String, u64>,
) {
    page.family(name, help, Kind::Gauge);
    for state in all {
        page.sample(
            name,
            &[(label, state)],
            counts.get(*state).copied().unwrap_or(0) as f64,
        );
    }
    for (state, n) in counts {
        if !all.contains(&state.as_str()) {
            page.sample(name, &[(label, state)], *n as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn labels_are_escaped_and_histograms_cumulative() {
        let mut page = Exposition::new();
        page.family("x_total", "a \\ help\nline", Kind::Counter);
        page.sample("x_total", &[("route", "a\"b\\c\nd")], 3.0);
        let mut h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(7.0);
        page.family("y_seconds", "latency", Kind::Histogram);
        page.histogram("y_seconds", &[("m", "GET")], &h);
        let text = page.finish();
        assert!(text.contains("# HELP x_total a \\\\ help\\nline\n"));
        assert!(text.contains("x_total{route=\"a\\\"b\\\\c\\nd\"} 3\n"));
        assert!(text.contains("y_seconds_bucket{m=\"GET\",le=\"0.1\"} 1\n"));
        assert!(text.contains("y_seconds_bucket{m=\"GET\",le=\"1\"} 2\n"));
        assert!(text.contains("y_seconds_bucket{m=\"GET\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("y_seconds_count{m=\"GET\"} 3\n"));
        assert!(text.contains("y_seconds_sum{m=\"GET\"} 7.55\n"));
    }

    #[test]
    fn made_up_methods_share_one_series() {
        let m = HttpMetrics::default();
        for method in ["GET", "FOO", "BAR", "x\"y"] {
            m.observe(method, "/r", 200, Duration::from_millis(1));
        }
        let mut page = Exposition::new();
        m.write("t", &mut page);
        let text = page.finish();
        assert!(
            text.contains("t_http_requests_total{method=\"GET\",route=\"/r\",status=\"200\"} 1\n")
        );
        assert!(text
            .contains("t_http_requests_total{method=\"other\",route=\"/r\",status=\"200\"} 3\n"));
        assert!(!text.contains("FOO"));
    }

    #[test]
    fn counts_name_every_known_state() {
        let mut page = Exposition::new();
        let counts = BTreeMap::from([("running".to_string(), 2), ("odd".to_string(), 1)]);
        write_counts(
            &mut page,
            "j",
            "jobs",
            "state",
            &["queued", "running"],
            &counts,
        );
        let text = page.finish();
        assert!(text.contains("j{state=\"queued\"} 0\n"));
        assert!(text.contains("j{state=\"running\"} 2\n"));
        assert!(text.contains("j{state=\"odd\"} 1\n"));
    }
}
