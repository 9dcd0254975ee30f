//! `baton bench`: start the real server on loopback against the chosen backend, drive a
//! scenario with N concurrent clients, and print throughput and latency beside ceilings
//! measured in the same run: the same server's `/healthz`, and raw single-row
//! transactional inserts into the same store.

use crate::app;
use crate::demo;
use anyhow::Context;
use baton_domain::clock::SystemClock;
use baton_store::{Store, q};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// sqlite or postgres.
    #[arg(long, default_value = "sqlite")]
    pub backend: String,
    /// PostgreSQL server URL for a throw-away database (postgres backend).
    #[arg(long, env = "BATON_BENCH_PG_URL", default_value = "postgres://postgres:postgres@127.0.0.1:5432/postgres", hide_env_values = true)]
    pub pg_url: String,
    /// Scenario: `platform` (authenticated reads and audited writes) or `checkin` (checkpoint
    /// check-ins: classification, whitelist and risk matching, code signing, audit; then one
    /// deadline-watcher sweep over every open trip) or `mass-screening` (person-samples registered
    /// at sampling desks, a 100,000-row lab file imported, a positive pool flagged and alerted)
    /// or `imports` (files of 100,000 rows as they come from outside, through each import).
    #[arg(long, default_value = "platform")]
    pub scenario: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Scenario `codes`: persons seeded.
    #[arg(long, default_value_t = 1_000_000)]
    pub persons: u64,
    /// Scenario `codes`: scans seeded for the exposure search.
    #[arg(long, default_value_t = 10_000_000)]
    pub scans: u64,
}

#[derive(Debug, Default)]
pub struct Figures {
    pub name: String,
    pub ops: u64,
    pub errors: u64,
    pub secs: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Figures {
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 { self.ops as f64 / self.secs } else { 0.0 }
    }

    pub(crate) fn from_latencies(name: &str, mut lat: Vec<u64>, errors: u64, secs: f64) -> Figures {
        lat.sort_unstable();
        let pick = |q: f64| lat.get(((lat.len() as f64 - 1.0) * q).round() as usize).map(|v| *v as f64 / 1000.0).unwrap_or(0.0);
        Figures {
            name: name.into(),
            ops: lat.len() as u64,
            errors,
            secs,
            p50_ms: pick(0.5),
            p99_ms: pick(0.99),
            max_ms: lat.last().map(|v| *v as f64 / 1000.0).unwrap_or(0.0),
        }
    }
}

/// Run `op` from `clients` tasks for `dur`; latencies in microseconds.
pub(crate) async fn drive<F, Fut>(name: &str, clients: usize, dur: Duration, op: F) -> Figures
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let op = op.clone();
        let counter = counter.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            while start.elapsed() < dur {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                if op(n).await {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            all.extend(l);
        }
    }
    Figures::from_latencies(name, all, errors.load(Ordering::Relaxed), start.elapsed().as_secs_f64())
}

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.scenario == "codes" {
        return crate::bench_codes::run(&args).await;
    }
    if !["platform", "checkin", "mass-screening", "imports"].contains(&args.scenario.as_str()) {
        anyhow::bail!("unknown scenario {}; known: platform, checkin, mass-screening, imports, codes", args.scenario);
    }
    let scratch = crate::scratch::Scratch::create("baton_bench", &args.backend, &args.pg_url, 16).await?;
    let cfg = &scratch.cfg;
    let store = app::open_store(cfg, Arc::new(SystemClock)).await?;
    demo::build(&store, &demo::DemoOptions { villages: false }).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let running = app::start(store.clone(), cfg, listener).await?;
    let base = format!("http://{}", running.addr);
    let dur = Duration::from_secs(args.seconds);
    println!(
        "baton bench · scenario {} · backend {} · {} clients · {} s each · {} cores",
        args.scenario,
        args.backend,
        args.clients,
        args.seconds,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );

    let client = reqwest::Client::builder().pool_max_idle_per_host(args.clients).build()?;

    // Ceiling 1: the same server's /healthz.
    let c = client.clone();
    let url = format!("{base}/healthz");
    let health = drive("ceiling: GET /healthz", args.clients, dur, move |_| {
        let c = c.clone();
        let url = url.clone();
        async move { c.get(&url).send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    // Ceiling 2: raw single-row transactional inserts into the same store.
    let s2 = store.clone();
    s2.db.execute_raw("CREATE TABLE bench_raw (id TEXT PRIMARY KEY, body TEXT NOT NULL)").await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let raw = drive("ceiling: raw INSERT (one-row transactions)", args.clients, dur, move |n| {
        let s = s2.clone();
        async move { raw_insert(&s, n).await }
    })
    .await;
    if args.scenario == "checkin" {
        check_ins(&args, &store, &client, &base, dur, &health, &raw).await?;
    } else if args.scenario == "mass-screening" {
        crate::bench_testing::run(&args, &store, &client, &base, dur, &raw).await?;
    } else if args.scenario == "imports" {
        crate::bench_imports::run(&store, &client, &base).await?;
    } else {
        platform(&args, &client, &base, dur, &health, &raw).await?;
    }
    if let Some(m) = peak_rss_mib() {
        println!("peak memory (server and load generator, one process): {m:.0} MiB");
    }
    let report = baton_store::audit::verify(&store.db, &store.vault).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("audit chain after the run: {} entries, {}", report.entries, if report.ok() { "intact" } else { "BROKEN" });
    running.shutdown().await;
    scratch.remove().await
}

pub(crate) fn header() {
    println!();
    println!("{:<46} {:>10} {:>8} {:>9} {:>9} {:>9} {:>8}", "measure", "ops/s", "errors", "p50 ms", "p99 ms", "max ms", "ratio");
}

pub(crate) fn line(f: &Figures, ceiling: Option<&Figures>) {
    let ratio = ceiling.map(|c| format!("{:.2}", f.rate() / c.rate().max(1e-9))).unwrap_or_else(|| "—".into());
    println!("{:<46} {:>10.0} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>8}", f.name, f.rate(), f.errors, f.p50_ms, f.p99_ms, f.max_ms, ratio);
}

/// Authenticated reads against `/healthz`, audited writes against raw inserts.
async fn platform(args: &BenchArgs, client: &reqwest::Client, base: &str, dur: Duration, health: &Figures, raw: &Figures) -> anyhow::Result<()> {
    let token = bench_token(client, base, None, &["units.read", "units.write"]).await?;
    let unit_id = first_unit(client, base, &token).await?;
    let (c, t) = (client.clone(), token.clone());
    let url = format!("{base}/api/v1/units/{unit_id}");
    let reads = drive("authenticated read GET /api/v1/units/{id}", args.clients, dur, move |_| {
        let (c, t, url) = (c.clone(), t.clone(), url.clone());
        async move { c.get(&url).bearer_auth(&t).send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    // Audited writes (create a unit: validation, insert, audit chain, commit).
    let (c, t) = (client.clone(), token.clone());
    let url = format!("{base}/api/v1/units");
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let writes = drive("audited write POST /api/v1/units", args.clients, dur, move |n| {
        let (c, t, url) = (c.clone(), t.clone(), url.clone());
        let body = serde_json::json!({"name": format!("压测单位 {run_id} {n}"), "kind": "cargo_owner", "division_code": "140427401"});
        async move { c.post(&url).bearer_auth(&t).json(&body).send().await.is_ok_and(|r| r.status() == reqwest::StatusCode::CREATED) }
    })
    .await;
    header();
    line(health, None);
    line(&reads, Some(health));
    line(raw, None);
    line(&writes, Some(raw));
    println!();
    println!(
        "reads at {:.0}% of the /healthz ceiling (aim ≥ 50%); audited writes {:.0}/s (aim ≥ 3000/s on SQLite), {:.0}% of raw inserts",
        100.0 * reads.rate() / health.rate().max(1e-9),
        writes.rate(),
        100.0 * writes.rate() / raw.rate().max(1e-9)
    );
    Ok(())
}

/// A plate for the n-th truck of the run: 晋 + one of ten letters + five digits.
fn plate_for(n: u64) -> String {
    let letters = ['A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'J', 'K'];
    format!("晋{}{:05}", letters[((n / 100_000) % 10) as usize], n % 100_000)
}

/// Walk-in check-ins at the demo checkpoint (each: validation, whitelist and risk-area match,
/// classification, trip and crew rows with sealed personal data, audit entry, signed codes in
/// the answer), then the deadline watcher over every open trip.
async fn check_ins(
    args: &BenchArgs,
    store: &Store,
    client: &reqwest::Client,
    base: &str,
    dur: Duration,
    health: &Figures,
    raw: &Figures,
) -> anyhow::Result<()> {
    let sys = baton_store::Principal::system("bench");
    let find = |kind: &'static str, name: &'static str| {
        let store = store.clone();
        let sys = sys.clone();
        async move {
            baton_store::units::list(&store, &sys, &baton_store::units::UnitFilter { kind: Some(kind.into()), q: Some(name.into()) })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .into_iter()
                .next()
                .map(|u| u.id)
                .context("demo unit missing")
        }
    };
    let checkpoint = find("checkpoint", "龙泉高速出口卡口").await?;
    let dest = find("cargo_owner", "太行钢材").await?;
    let token = bench_token(client, base, Some(checkpoint), &["trips.check_in", "trips.read"]).await?;
    let (c, t) = (client.clone(), token.clone());
    let url = format!("{base}/api/v1/trips/check-in");
    let eta = chrono::Utc::now() + chrono::Duration::hours(3);
    let checkins = drive("check-in POST /api/v1/trips/check-in", args.clients, dur, move |n| {
        let (c, t, url) = (c.clone(), t.clone(), url.clone());
        let code = ["green", "green", "green", "yellow"][(n % 4) as usize];
        let body = serde_json::json!({
            "plate": plate_for(n), "destination_id": dest, "eta": eta.to_rfc3339(), "landing_tube": format!("LT{n:08}"),
            "crew": [{"name": "司机", "id_number": "11010519491231002X", "phone": "13912345678", "health_code": code}],
            "itinerary": [{"place": "太原市小店区", "from": "2022-11-01", "to": "2022-11-02"}],
        });
        async move { c.post(&url).bearer_auth(&t).json(&body).send().await.is_ok_and(|r| r.status() == reqwest::StatusCode::CREATED) }
    })
    .await;
    header();
    line(health, None);
    line(raw, None);
    line(&checkins, Some(raw));
    // The watcher is measured over 100,000 open trips: the rest are written straight to the table,
    // due a day after the trips checked in above.
    let t = Instant::now();
    let seeded =
        baton_store::trips::seed_open(store, checkpoint, dest, 100_000, eta + chrono::Duration::days(1)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("seeded {seeded} more open trips in {:.1} s", t.elapsed().as_secs_f64());
    let open: i64 = store
        .db
        .fetch_one(q!("SELECT COUNT(*) AS n FROM trips WHERE closed_at IS NULL"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .get("n")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Three sweeps of the deadline watcher: a day later the trips checked in above are overdue
    // (an alert each); the same moment again finds nothing new (the steady state between
    // deadlines: each trip's `sweep_at` has moved to its next deadline); two days later every
    // seeded trip is overdue at once (the catch-up after a long outage, an alert each).
    let sweep = |at: chrono::DateTime<chrono::Utc>| async move {
        let t = Instant::now();
        let r = baton_store::alerts::sweep(store, at).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::Ok((r, t.elapsed().as_secs_f64()))
    };
    let day = chrono::Utc::now() + chrono::Duration::days(1);
    let (due, due_s) = sweep(day).await?;
    let (idle, idle_s) = sweep(day).await?;
    let (all, all_s) = sweep(day + chrono::Duration::days(1)).await?;
    println!();
    println!("check-ins {:.0}/s, p99 {:.1} ms (aim ≥ 2000/s with p99 < 100 ms at 64 clients on SQLite)", checkins.rate(), checkins.p99_ms);
    println!("deadline watcher over {open} open trips (aim < 1 s per sweep over 100,000):");
    for (what, r, secs) in
        [("the checked-in trips overdue", due, due_s), ("nothing new due", idle, idle_s), ("every trip overdue at once", all, all_s)]
    {
        println!(
            "  {what:<30} {:>7} trips looked at, {:>7} alerts raised in {secs:.3} s ({:.0} alerts/s)",
            r.trips_checked,
            r.raised,
            r.raised as f64 / secs.max(1e-9)
        );
    }
    Ok(())
}

async fn raw_insert(s: &Store, n: u64) -> bool {
    let id = format!("{n}-{}", uuid::Uuid::now_v7());
    s.db.execute(q!("INSERT INTO bench_raw (id, body) VALUES ($1, $2)", id, "x".repeat(200))).await.is_ok()
}

/// An API token made by the demo administrator: for its own unit with county scope, or for
/// `unit` with that unit's scope.
pub(crate) async fn bench_token(client: &reqwest::Client, base: &str, unit: Option<uuid::Uuid>, permissions: &[&str]) -> anyhow::Result<String> {
    let login = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "admin", "password": demo::DEMO_PASSWORD}))
        .send()
        .await?;
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
        .context("no session cookie")?;
    let body: serde_json::Value = login.json().await?;
    let csrf = body["csrf"].as_str().context("no csrf")?.to_string();
    let me: serde_json::Value = client.get(format!("{base}/api/v1/me")).header("cookie", &cookie).send().await?.json().await?;
    let own = me["unit_id"].as_str().context("no unit")?.to_string();
    let body = match unit {
        Some(u) => serde_json::json!({"name": "bench", "unit_id": u, "permissions": permissions, "scope_kind": "unit"}),
        None => serde_json::json!({"name": "bench", "unit_id": own, "permissions": permissions, "scope_kind": "division", "scope_code": "140427"}),
    };
    let r: serde_json::Value =
        client.post(format!("{base}/api/v1/tokens")).header("cookie", &cookie).header("x-csrf-token", csrf).json(&body).send().await?.json().await?;
    r["secret"].as_str().map(str::to_string).with_context(|| format!("no token: {r}"))
}

async fn first_unit(client: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<String> {
    let r: serde_json::Value = client.get(format!("{base}/api/v1/units")).bearer_auth(token).send().await?.json().await?;
    r["units"][0]["id"].as_str().map(str::to_string).context("no units")
}
