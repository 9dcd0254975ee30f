//! Prometheus text metrics: requests and latencies by route and status, in-flight
//! requests, database pool, and the job queue. Plus `/healthz` and `/readyz`.

use crate::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

#[derive(Default)]
pub struct Metrics {
    by_route: Mutex<BTreeMap<(String, u16), Series>>,
    pub in_flight: AtomicI64,
    /// Jobs waiting to run (set by the job runner).
    pub jobs_pending: AtomicI64,
    pub jobs_run: AtomicI64,
    pub jobs_failed: AtomicI64,
}

impl Metrics {
    pub fn observe(&self, route: &str, status: u16, d: Duration) {
        let secs = d.as_secs_f64();
        let mut m = self.by_route.lock().unwrap_or_else(|e| e.into_inner());
        let s = m.entry((route.to_string(), status)).or_default();
        s.count += 1;
        s.sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
    }

    pub fn render(&self, pool: (u32, usize)) -> String {
        let mut out = String::new();
        let m = self.by_route.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str("# HELP baton_http_requests_total HTTP requests by route and status.\n# TYPE baton_http_requests_total counter\n");
        for ((route, status), s) in m.iter() {
            let _ = writeln!(out, "baton_http_requests_total{{route=\"{}\",status=\"{status}\"}} {}", esc(route), s.count);
        }
        out.push_str("# HELP baton_http_request_duration_seconds Request latency.\n# TYPE baton_http_request_duration_seconds histogram\n");
        for ((route, status), s) in m.iter() {
            let r = esc(route);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(out, "baton_http_request_duration_seconds_bucket{{route=\"{r}\",status=\"{status}\",le=\"{b}\"}} {}", s.buckets[i]);
            }
            let _ = writeln!(out, "baton_http_request_duration_seconds_bucket{{route=\"{r}\",status=\"{status}\",le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "baton_http_request_duration_seconds_sum{{route=\"{r}\",status=\"{status}\"}} {}", s.sum);
            let _ = writeln!(out, "baton_http_request_duration_seconds_count{{route=\"{r}\",status=\"{status}\"}} {}", s.count);
        }
        drop(m);
        let gauges = [
            ("baton_http_in_flight", "Requests being served.", self.in_flight.load(Ordering::Relaxed)),
            ("baton_db_pool_connections", "Open database connections.", i64::from(pool.0)),
            ("baton_db_pool_idle", "Idle database connections.", pool.1 as i64),
            ("baton_jobs_pending", "Background jobs waiting.", self.jobs_pending.load(Ordering::Relaxed)),
            ("baton_jobs_run_total", "Background job runs.", self.jobs_run.load(Ordering::Relaxed)),
            ("baton_jobs_failed_total", "Background job runs that failed.", self.jobs_failed.load(Ordering::Relaxed)),
        ];
        for (name, help, v) in gauges {
            let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        out
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.store.db.ping().await { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "database unreachable") }
}

async fn metrics(State(s): State<AppState>, headers: axum::http::HeaderMap) -> axum::response::Response {
    if let Some(token) = &s.config.metrics_token {
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        // Compare digests, so the time taken says nothing about how much of the token matched.
        if baton_store::vault::token_hash(given) != baton_store::vault::token_hash(token) {
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "metrics need the configured bearer token").into_response();
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render(s.store.db.pool_stats())).into_response()
}
