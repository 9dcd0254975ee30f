//! `baton bench --scenario mass-screening`: a county-wide screening day.
//!
//! 1. Sampling desks register person-samples through the API as they do at a site: each desk
//!    scans one person at a time (ID card: document and name, registered on first sight) into
//!    its open 10-in-1 tube, and opens the next tube when one fills and seals itself. Rate and
//!    latency per person-sample, beside the raw-insert ceiling of the same run.
//!    Then desks that upload a whole tube at once (a desk app that queues scans offline and sends
//!    each full tube: one request with its ten persons), counted in person-samples too.
//! 2. A lab imports a 100,000-row LIS file (CSV) through the API: 100,000 single tubes shipped
//!    to it (seeded straight into the tables, one registered person each), all or nothing.
//! 3. A positive pool: from posting the result to its ten members on pending re-check with
//!    re-test orders and the emergency alerts raised (the answer comes after the commit; the
//!    state is read back to make sure).

use crate::bench::{BenchArgs, Figures, bench_token, drive, header, line};
use anyhow::Context;
use baton_domain::ident::IdNumber;
use baton_domain::person::{Document, DocumentKind};
use baton_store::{Store, q};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Rows of the lab file.
const FILE_ROWS: u64 = 100_000;
/// Persons per tube at the desks.
const POOL: u64 = 10;

fn e(x: baton_domain::Error) -> anyhow::Error {
    anyhow::anyhow!("{x}")
}

/// The n-th valid resident ID number of a run: a birth date per thousand, a sequence within it.
pub(crate) fn id_number(n: u64) -> String {
    let born =
        chrono::NaiveDate::from_ymd_opt(1950, 1, 1).unwrap_or_default() + chrono::Duration::days(i64::try_from(n / 1000).unwrap_or(0) % 20_000);
    let first17 = format!("140427{}{:03}", born.format("%Y%m%d"), n % 1000);
    format!("{first17}{}", IdNumber::check_char(first17.as_bytes()) as char)
}

async fn unit(store: &Store, kind: &str, name: &str) -> anyhow::Result<Uuid> {
    let sys = baton_store::Principal::system("bench");
    baton_store::units::list(store, &sys, &baton_store::units::UnitFilter { kind: Some(kind.into()), q: Some(name.into()) })
        .await
        .map_err(e)?
        .into_iter()
        .next()
        .map(|u| u.id)
        .with_context(|| format!("demo unit {name} missing"))
}

pub async fn run(args: &BenchArgs, store: &Store, client: &reqwest::Client, base: &str, dur: Duration, raw: &Figures) -> anyhow::Result<()> {
    let team = unit(store, "sampling_team", "龙泉镇核酸采样队").await?;
    let lab = unit(store, "lab", "壶关县人民医院核酸检测实验室").await?;
    let sampler = bench_token(client, base, Some(team), &["testing.sample", "testing.read"]).await?;
    let lab_token = bench_token(client, base, Some(lab), &["testing.result", "testing.read"]).await?;
    // Barcodes of this run (each run has its own database; the tag only keeps them apart in reports).
    let run_id = Uuid::now_v7().simple().to_string()[..8].to_ascii_uppercase();
    let desks = register(args.clients, dur, client, base, &sampler, &run_id).await;
    header();
    line(raw, None);
    line(&desks, Some(raw));
    println!();
    println!(
        "person-samples registered through the API: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms (aim ≥ 3000/s, p99 < 100 ms on SQLite); {:.0}% of raw inserts",
        desks.rate(),
        desks.p50_ms,
        desks.p99_ms,
        100.0 * desks.rate() / raw.rate().max(1e-9)
    );
    let tubes = register_tubes(args.clients, dur, client, base, &sampler, &run_id).await;
    line(&tubes, Some(raw));
    println!(
        "person-samples registered a tube ({POOL}) per request: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms per tube (aim ≥ 3000/s, p99 < 100 ms on SQLite)",
        tubes.rate() * POOL as f64,
        tubes.p50_ms,
        tubes.p99_ms
    );

    // The lab file.
    let t = Instant::now();
    let body = seed_shipped(store, team, lab, &run_id, desks.ops + desks.errors + 1).await?;
    println!("seeded {FILE_ROWS} shipped single tubes with their persons in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let r = client
        .post(format!("{base}/api/v1/testing/results/import"))
        .bearer_auth(&lab_token)
        .header("content-type", "text/csv")
        .body(body)
        .timeout(Duration::from_secs(600))
        .send()
        .await?;
    let status = r.status();
    let report: serde_json::Value = r.json().await?;
    let import = t.elapsed();
    anyhow::ensure!(status.is_success(), "import failed: {status} {}", report.to_string().chars().take(500).collect::<String>());
    println!(
        "LIS file of {FILE_ROWS} rows imported through the API in {:.2} s: {} applied, {} positive (aim < 10 s)",
        import.as_secs_f64(),
        report["applied"],
        report["positive"].as_array().map(Vec::len).unwrap_or(0)
    );

    // Positive pools: result posted → members on pending re-check, orders and alerts raised.
    let mut times = Vec::new();
    for i in 0..5u64 {
        times.push(positive_pool(store, client, base, &sampler, &lab_token, lab, &format!("{run_id}-{i}"), 9_000_000 + i * POOL).await?);
    }
    times.sort();
    println!(
        "positive pool of {POOL}: result posted to members flagged and alerted in {:.0} ms median, {:.0} ms worst of {} (aim < 1 s)",
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times.last().map(Duration::as_secs_f64).unwrap_or(0.0) * 1000.0,
        times.len()
    );
    Ok(())
}

/// Desks scanning persons one by one into their own open pools.
async fn register(clients: usize, dur: Duration, client: &reqwest::Client, base: &str, token: &str, run_id: &str) -> Figures {
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for desk in 0..clients {
        let (client, counter, errors) = (client.clone(), counter.clone(), errors.clone());
        let (base, token, run_id) = (base.to_string(), token.to_string(), run_id.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let mut tube: Option<(String, u64)> = None;
            let mut opened = 0u64;
            while start.elapsed() < dur {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let person = serde_json::json!({"name": format!("居民{n}"), "document_number": id_number(n)});
                let t = Instant::now();
                let ok = match &tube {
                    None => {
                        opened += 1;
                        let body = serde_json::json!({"barcode": format!("MS{run_id}-{desk}-{opened}"), "pool_size": POOL, "members": [person]});
                        match client.post(format!("{base}/api/v1/testing/tubes")).bearer_auth(&token).json(&body).send().await {
                            Ok(r) if r.status() == reqwest::StatusCode::CREATED => {
                                let v: serde_json::Value = r.json().await.unwrap_or_default();
                                tube = v["id"].as_str().map(|id| (id.to_string(), 1));
                                tube.is_some()
                            }
                            _ => false,
                        }
                    }
                    Some((id, members)) => {
                        let url = format!("{base}/api/v1/testing/tubes/{id}/members");
                        let ok = client
                            .post(url)
                            .bearer_auth(&token)
                            .json(&serde_json::json!({"members": [person]}))
                            .send()
                            .await
                            .is_ok_and(|r| r.status().is_success());
                        let m = members + 1;
                        tube = if !ok || m >= POOL { None } else { Some((id.clone(), m)) };
                        ok
                    }
                };
                if ok {
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
    Figures::from_latencies("person-sample POST /testing/tubes[/{id}/members]", all, errors.load(Ordering::Relaxed), start.elapsed().as_secs_f64())
}

/// Desks sending each tube with its ten persons in one request (the tube fills and seals).
async fn register_tubes(clients: usize, dur: Duration, client: &reqwest::Client, base: &str, token: &str, run_id: &str) -> Figures {
    let (client, url, token, run_id) = (client.clone(), format!("{base}/api/v1/testing/tubes"), token.to_string(), run_id.to_string());
    drive("full tube POST /testing/tubes (10 persons)", clients, dur, move |n| {
        // Persons of this phase are numbered after any the one-by-one phase could have reached.
        let first = 50_000_000 + n * POOL;
        let members: Vec<_> =
            (first..first + POOL).map(|k| serde_json::json!({"name": format!("居民{k}"), "document_number": id_number(k)})).collect();
        let body = serde_json::json!({"barcode": format!("MT{run_id}-{n}"), "pool_size": POOL, "members": members});
        let req = client.post(&url).bearer_auth(&token).json(&body);
        async move { req.send().await.is_ok_and(|r| r.status() == reqwest::StatusCode::CREATED) }
    })
    .await
}

/// 100,000 persons, each in a single tube shipped to `lab`; returns the LIS file (CSV) for them,
/// one in a thousand positive.
pub(crate) async fn seed_shipped(store: &Store, team: Uuid, lab: Uuid, run_id: &str, offset: u64) -> anyhow::Result<Vec<u8>> {
    let now = store.now();
    let policy = baton_store::policy::current(store, now).await.map_err(e)?;
    let jurisdiction = "140427100";
    let first = 5_000_000 + offset;
    let mut csv = String::from("条码,结果,Ct值\n");
    let mut done = 0;
    while done < FILE_ROWS {
        let mut tx = store.db.begin().await.map_err(e)?;
        for i in done..(done + 2000).min(FILE_ROWS) {
            let n = first + i;
            let doc = Document { kind: DocumentKind::IdCard, number: id_number(n) };
            let person = Uuid::now_v7();
            tx.execute(q!(
                "INSERT INTO persons (id, name, document_kind, document_enc, document_bidx, document_masked, jurisdiction, created_by, created_at, updated_at)
                 VALUES ($1, $2, 'id_card', $3, $4, $5, $6, 'bench', $7, $7)",
                person,
                format!("居民{n}"),
                store.vault.seal("persons.document", &doc.number).map_err(e)?,
                store.vault.blind_index("person_document", &doc.index_key()),
                doc.mask(),
                jurisdiction,
                now
            ))
            .await
            .map_err(e)?;
            let tube = Uuid::now_v7();
            let barcode = format!("LIS{run_id}{i:07}");
            tx.execute(q!(
                "INSERT INTO tubes (id, barcode, pool_size, members, priority, purpose, state, team_id, lab_id, sampled_at, sealed_at, shipped_at, due_at,
                                    watch_at, jurisdiction, policy_version, created_by, updated_at)
                 VALUES ($1, $2, 1, 1, 'routine', 'screening', 'shipped', $3, $4, $5, $5, $5, $6, $6, $7, $8, 'bench', $5)",
                tube,
                barcode.clone(),
                team,
                lab,
                now,
                now + chrono::Duration::hours(6),
                jurisdiction,
                policy.version
            ))
            .await
            .map_err(e)?;
            tx.execute(q!("INSERT INTO tube_members (tube_id, person_id, seq, added_at) VALUES ($1, $2, 0, $3)", tube, person, now))
                .await
                .map_err(e)?;
            tx.execute(q!(
                "INSERT INTO person_results (person_id, status, sampled_at, tube_id, updated_at, jurisdiction) VALUES ($1, 'pending', $2, $3, $2, $4)",
                person,
                now,
                tube,
                jurisdiction
            ))
            .await
            .map_err(e)?;
            let (result, ct) = if i % 1000 == 999 { ("阳性", "28.5") } else { ("阴性", "") };
            csv.push_str(&format!("{barcode},{result},{ct}\n"));
        }
        tx.commit().await.map_err(e)?;
        done = (done + 2000).min(FILE_ROWS);
    }
    Ok(csv.into_bytes())
}

/// One positive pool: opened, sealed, shipped and received, then the timed result.
#[allow(clippy::too_many_arguments)]
async fn positive_pool(
    store: &Store,
    client: &reqwest::Client,
    base: &str,
    sampler: &str,
    lab_token: &str,
    lab: Uuid,
    tag: &str,
    first: u64,
) -> anyhow::Result<Duration> {
    let members: Vec<serde_json::Value> =
        (first..first + POOL).map(|n| serde_json::json!({"name": format!("居民{n}"), "document_number": id_number(n + 7_000_000)})).collect();
    let barcode = format!("PP{tag}");
    let post = |url: String, token: &str, body: serde_json::Value| client.post(url).bearer_auth(token).json(&body).send();
    let r =
        post(format!("{base}/api/v1/testing/tubes"), sampler, serde_json::json!({"barcode": barcode, "pool_size": POOL, "members": members})).await?;
    anyhow::ensure!(r.status().is_success(), "open pool: {}", r.text().await?);
    let tube: serde_json::Value = r.json().await?;
    let r = post(format!("{base}/api/v1/testing/batches"), sampler, serde_json::json!({"lab_id": lab, "barcodes": [barcode]})).await?;
    anyhow::ensure!(r.status().is_success(), "ship: {}", r.text().await?);
    let batch: serde_json::Value = r.json().await?;
    let url = format!("{base}/api/v1/testing/batches/{}/receive", batch["id"].as_str().unwrap_or_default());
    let r = post(url, lab_token, serde_json::json!({"barcodes": [barcode]})).await?;
    anyhow::ensure!(r.status().is_success(), "receive: {}", r.text().await?);
    let t = Instant::now();
    let r = post(format!("{base}/api/v1/testing/results"), lab_token, serde_json::json!({"results": [{"barcode": barcode, "result": "positive"}]}))
        .await?;
    anyhow::ensure!(r.status().is_success(), "result: {}", r.text().await?);
    let took = t.elapsed();
    let id = Uuid::parse_str(tube["id"].as_str().unwrap_or_default())?;
    let flagged: i64 = store
        .db
        .fetch_one(q!("SELECT COUNT(*) AS n FROM person_results WHERE tube_id = $1 AND status = 'pending_recheck'", id))
        .await
        .map_err(e)?
        .get("n")
        .map_err(e)?;
    let alerted: i64 = store
        .db
        .fetch_one(q!("SELECT COUNT(*) AS n FROM alerts WHERE subject_id = $1 AND emergency = TRUE", id))
        .await
        .map_err(e)?
        .get("n")
        .map_err(e)?;
    anyhow::ensure!(flagged == i64::try_from(POOL)? && alerted >= 1, "pool {barcode}: {flagged} flagged, {alerted} alerts");
    Ok(took)
}
