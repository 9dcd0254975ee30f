//! `baton bench --scenario codes`: person codes at county scale, each figure beside a ceiling
//! measured in the same run on the same rows.
//!
//! * recompute after a risk-area change (one township: about a tenth of the persons; then the
//!   whole county: all of them), and a full recompute (a policy version) — beside a plain
//!   `SELECT` of every stored code, each with the CPU time the process spent on it;
//! * token verification on one core with public keys only — beside the bare Ed25519 check;
//! * scan ingest in batches of 1,000 through `venues::ingest` (checks, token verification,
//!   audit) — beside plain multi-row INSERTs of the same rows into a bare table;
//! * exposure search over the seeded scans — beside one indexed probe of a venue's window.
//!
//! Persons, stays and scans are seeded with plain multi-row INSERTs (bench data: the sealed
//! document fields hold random bytes, not a sealed number).

use crate::app;
use crate::bench::BenchArgs;
use anyhow::anyhow;
use baton_domain::clock::SystemClock;
use baton_domain::code::Colour;
use baton_domain::division::Divisions;
use baton_store::db::{Q, Val};
use baton_store::{Principal, Store, exposure, person_codes, recompute, venues};
use chrono::{DateTime, Duration, Utc};
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// Rows per seeding INSERT (few: parameter binding on SQLite grows with the square of their number).
const ROWS: usize = 10;

fn e(x: baton_domain::Error) -> anyhow::Error {
    anyhow!("{x}")
}

/// `INSERT INTO {table} ({cols}) VALUES (…), … ×ROWS`, built once per table.
fn multi_insert(table: &str, cols: &[&str]) -> &'static str {
    let n = cols.len();
    let rows: Vec<String> = (0..ROWS).map(|r| format!("({})", (1..=n).map(|c| format!("${}", r * n + c)).collect::<Vec<_>>().join(", "))).collect();
    Box::leak(format!("INSERT INTO {table} ({}) VALUES {}", cols.join(", "), rows.join(", ")).into_boxed_str())
}

/// Insert rows `ROWS` at a time (the remainder is dropped: callers seed multiples of `ROWS`).
async fn seed(store: &Store, sql: &'static str, rows: impl Iterator<Item = Vec<Val>>) -> anyhow::Result<u64> {
    let mut tx = store.db.begin().await.map_err(e)?;
    let (mut buf, mut in_tx, mut n) = (Vec::new(), 0usize, 0u64);
    for r in rows {
        buf.extend(r);
        in_tx += 1;
        if in_tx % ROWS == 0 {
            tx.execute(Q { sql, args: std::mem::take(&mut buf) }).await.map_err(e)?;
            n += ROWS as u64;
        }
        if in_tx == 50_000 {
            tx.commit().await.map_err(e)?;
            tx = store.db.begin().await.map_err(e)?;
            in_tx = 0;
        }
    }
    tx.commit().await.map_err(e)?;
    Ok(n)
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// CPU time of the whole process so far, every thread, user and system, in seconds (Linux's
/// `/proc`, in ticks of 1/100 s). Beside the wall time it says how much of the machine a step
/// used, and it moves less than the wall time when others share the machine.
fn cpu_seconds() -> f64 {
    let read = || -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The fields after the command name (in parentheses, which may hold spaces): utime and
        // stime are the 14th and 15th of the line.
        let f: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split_whitespace().collect();
        Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
    };
    read().unwrap_or(f64::NAN)
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let scratch = crate::scratch::Scratch::create("baton_bench", &args.backend, &args.pg_url, 16).await?;
    let cfg = &scratch.cfg;
    let store = app::open_store(cfg, Arc::new(SystemClock)).await?;
    crate::demo::build(&store, &crate::demo::DemoOptions { villages: false }).await.map_err(e)?;
    let n_persons = usize::try_from(args.persons).map_err(|x| anyhow!("{x}"))? / ROWS * ROWS;
    let n_scans = usize::try_from(args.scans).map_err(|x| anyhow!("{x}"))? / ROWS * ROWS;
    println!(
        "baton bench · scenario codes · backend {} · {} persons · {} scans · {} cores",
        args.backend,
        n_persons,
        n_scans,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let now = store.now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_221_110);

    // ---------- seed persons with one stay each, spread over the county's villages ----------
    let d = Divisions::get_all();
    let villages: Vec<String> = d.children("140427").flat_map(|t| d.children(t.code).map(|v| v.code.to_string()).collect::<Vec<_>>()).collect();
    anyhow::ensure!(!villages.is_empty(), "no villages under 140427");
    let t = Instant::now();
    let ids: Vec<Uuid> =
        (0..n_persons).map(|i| Uuid::from_u64_pair(0x0190_0000_0000_7000 | (i as u64 >> 32), 0x8000_0000_0000_0000 | i as u64)).collect();
    let persons_sql = multi_insert(
        "persons",
        &[
            "id",
            "name",
            "document_kind",
            "document_enc",
            "document_bidx",
            "document_masked",
            "jurisdiction",
            "created_by",
            "created_at",
            "updated_at",
        ],
    );
    let home: Vec<usize> = (0..n_persons).map(|_| rng.gen_range(0..villages.len())).collect();
    seed(
        &store,
        persons_sql,
        ids.iter().zip(&home).map(|(id, h)| {
            vec![
                (*id).into(),
                "居民".into(),
                "id_card".into(),
                id.as_bytes().to_vec().into(),
                id.as_bytes().to_vec().into(),
                "140427********0000".into(),
                villages[*h].clone().into(),
                "bench".into(),
                now.into(),
                now.into(),
            ]
        }),
    )
    .await?;
    let stays_sql = multi_insert("person_stays", &["id", "person_id", "division_code", "stay_from", "stay_to", "source", "created_at"]);
    seed(
        &store,
        stays_sql,
        ids.iter().zip(&home).map(|(id, h)| {
            vec![
                Uuid::now_v7().into(),
                (*id).into(),
                villages[*h].clone().into(),
                (now - Duration::days(2)).into(),
                (now - Duration::days(1)).into(),
                "bench".into(),
                now.into(),
            ]
        }),
    )
    .await?;
    println!("seeded {n_persons} persons with a stay each in {:.1} s", t.elapsed().as_secs_f64());

    // ---------- recompute ----------
    println!();
    println!("{:<58} {:>10} {:>10} {:>10} {:>8} {:>8}", "recompute", "persons", "changed", "ms", "ratio", "CPU s");
    // Every person's first code (the policy version's run).
    let (t, cpu) = (Instant::now(), cpu_seconds());
    let r = recompute::sweep(&store, usize::MAX).await.map_err(e)?;
    let (first, first_cpu) = (t.elapsed(), cpu_seconds() - cpu);
    // Ceiling: a plain scan of the same rows.
    let t = Instant::now();
    let rows = store
        .db
        .fetch_all(baton_store::q!("SELECT person_id, colour, reasons_id, valid_until, policy_version, rev FROM person_codes"))
        .await
        .map_err(e)?;
    let scan = t.elapsed();
    let ceiling = ms(scan);
    println!("{:<58} {:>10} {:>10} {:>10.0} {:>8}", "ceiling: SELECT every stored code", rows.len(), "—", ceiling, "1.00");
    drop(rows);
    println!(
        "{:<58} {:>10} {:>10} {:>10.0} {:>8.2} {:>8.1}",
        "first codes for everyone (policy run)",
        r.processed,
        r.changed,
        ms(first),
        ms(first) / ceiling,
        first_cpu
    );
    let sys = Principal::system("bench");
    let township = d.children("140427").next().map(|t| t.code.to_string()).ok_or_else(|| anyhow!("no township"))?;
    for (label, division, level) in
        [("risk-area change: one township high", township.as_str(), "high"), ("risk-area change: the whole county low", "140427", "low")]
    {
        let input = baton_store::risk_areas::AreaInput {
            division: division.into(),
            level: level.into(),
            from: (now - Duration::days(3)).to_rfc3339(),
            ..Default::default()
        };
        baton_store::risk_areas::create(&store, &sys, &input).await.map_err(e)?;
        let (t, cpu) = (Instant::now(), cpu_seconds());
        let r = recompute::sweep(&store, usize::MAX).await.map_err(e)?;
        let (took, cpu) = (t.elapsed(), cpu_seconds() - cpu);
        println!("{:<58} {:>10} {:>10} {:>10.0} {:>8.2} {:>8.1}", label, r.processed, r.changed, ms(took), ms(took) / ceiling, cpu);
    }

    // ---------- token verification, one core ----------
    println!();
    let keys = person_codes::VerifyKeys::new(&store.vault.signing_public_keys());
    let tokens: Vec<String> = ids
        .iter()
        .take(1000)
        .map(|id| person_codes::sign_token(&store.vault, *id, Colour::Green, now + Duration::minutes(10)))
        .collect::<Result<_, _>>()
        .map_err(e)?;
    let secs = 2.0;
    let rate = |f: &dyn Fn(usize) -> bool| {
        let t = Instant::now();
        let mut n = 0usize;
        let mut bad = 0usize;
        while t.elapsed().as_secs_f64() < secs {
            for _ in 0..256 {
                if !f(n) {
                    bad += 1;
                }
                n += 1;
            }
        }
        (n as f64 / t.elapsed().as_secs_f64(), bad)
    };
    let (full, bad) = rate(&|i| person_codes::verify_offline(&keys, &tokens[i % tokens.len()], now).is_ok());
    let (bare, _) = rate(&|i| person_codes::signature_only(&keys, &tokens[i % tokens.len()]));
    println!("{:<58} {:>12} {:>8} {:>8}", "verification (one core)", "per s", "errors", "ratio");
    println!("{:<58} {:>12.0} {:>8} {:>8}", "ceiling: bare Ed25519 verify of the payload", bare, 0, "1.00");
    println!("{:<58} {:>12.0} {:>8} {:>8.2}", "verify_offline (decode, key id, signature, expiry)", full, bad, full / bare);
    // The ingest's way: a thousand tokens at a time, their signatures in batches.
    let set: Vec<(&str, DateTime<Utc>)> = tokens.iter().map(|t| (t.as_str(), now)).collect();
    let t = Instant::now();
    let (mut n, mut bad) = (0usize, 0usize);
    while t.elapsed().as_secs_f64() < secs {
        bad += person_codes::verify_many(&keys, &set).iter().filter(|v| v.is_err()).count();
        n += set.len();
    }
    let many = n as f64 / t.elapsed().as_secs_f64();
    println!("{:<58} {:>12.0} {:>8} {:>8.2}", "verify_many (the same, signatures in batches of 64)", many, bad, many / bare);

    // ---------- scan ingest ----------
    println!();
    let venue_ids: Vec<Uuid> = (0..2000u64).map(|i| Uuid::from_u64_pair(0x0190_0000_0000_7000, 0x9000_0000_0000_0000 | i)).collect();
    let venue_sql = multi_insert("venues", &["id", "name", "kind", "address", "jurisdiction", "active", "created_by", "created_at"]);
    seed(
        &store,
        venue_sql,
        venue_ids.iter().enumerate().map(|(i, id)| {
            vec![
                (*id).into(),
                format!("场所{i}").into(),
                "market".into(),
                "".into(),
                villages[i % villages.len()].clone().into(),
                true.into(),
                "bench".into(),
                now.into(),
            ]
        }),
    )
    .await?;
    let batch = 1000usize;
    let ingest_secs = 3.0;
    // Batches signed beforehand: the scanners' phones signed nothing, the server verifies.
    let prepared: Vec<Vec<venues::BatchScan>> = (0..40)
        .map(|_| {
            (0..batch)
                .map(|_| {
                    let p = ids[rng.gen_range(0..ids.len())];
                    let at = now - Duration::seconds(rng.gen_range(0..60));
                    venues::BatchScan {
                        venue_id: venue_ids[rng.gen_range(0..venue_ids.len())],
                        token: person_codes::sign_token(&store.vault, p, Colour::Green, at + Duration::minutes(10)).unwrap_or_default(),
                        at,
                    }
                })
                .collect()
        })
        .collect();
    let t = Instant::now();
    let (mut accepted, mut rejected, mut batches) = (0usize, 0usize, 0usize);
    for scans in prepared {
        if t.elapsed().as_secs_f64() >= ingest_secs {
            break;
        }
        let rep = venues::ingest(&store, &sys, &venues::BatchInput { scans }).await.map_err(e)?;
        accepted += rep.accepted;
        rejected += rep.rejected.len();
        batches += 1;
    }
    let ingest_rate = accepted as f64 / t.elapsed().as_secs_f64();
    let ddl = match store.db.backend() {
        baton_store::Backend::Sqlite => {
            "CREATE TABLE bench_scans (id BLOB, venue_id BLOB, person_id BLOB, at TEXT, colour TEXT, admission TEXT, tag BLOB, jurisdiction TEXT, created_at TEXT)"
        }
        baton_store::Backend::Postgres => {
            "CREATE TABLE bench_scans (id UUID, venue_id UUID, person_id UUID, at TIMESTAMPTZ, colour TEXT, admission TEXT, tag BYTEA, jurisdiction TEXT, created_at TIMESTAMPTZ)"
        }
    };
    store.db.execute_raw(ddl).await.map_err(e)?;
    let raw_sql = multi_insert("bench_scans", &["id", "venue_id", "person_id", "at", "colour", "admission", "tag", "jurisdiction", "created_at"]);
    let t = Instant::now();
    let mut raw_n = 0u64;
    while t.elapsed().as_secs_f64() < ingest_secs {
        raw_n += seed(&store, raw_sql, (0..batch).map(|_| scan_row(&mut rng, &ids, &venue_ids, now))).await?;
    }
    let raw_rate = raw_n as f64 / t.elapsed().as_secs_f64();
    println!("{:<58} {:>12} {:>8} {:>8}", "scan ingest (batches of 1,000, one client)", "scans/s", "rejected", "ratio");
    println!("{:<58} {:>12.0} {:>8} {:>8}", "ceiling: plain multi-row INSERT, bare table", raw_rate, 0, "1.00");
    println!("{:<58} {:>12.0} {:>8} {:>8.2}", format!("venues::ingest ({batches} batches)"), ingest_rate, rejected, ingest_rate / raw_rate);

    // ---------- exposure search ----------
    println!();
    let t = Instant::now();
    let have = store.db.fetch_one(baton_store::q!("SELECT COUNT(*) AS n FROM scans")).await.map_err(e)?.get::<i64>("n").map_err(e)?;
    let need = n_scans.saturating_sub(usize::try_from(have).unwrap_or(0)) / ROWS * ROWS;
    seed_scans(&store, need, n_persons, venue_ids.len(), now).await?;
    let total = store.db.fetch_one(baton_store::q!("SELECT COUNT(*) AS n FROM scans")).await.map_err(e)?.get::<i64>("n").map_err(e)?;
    println!("seeded scans to {total} in {:.1} s (2,000 venues, 14 days)", t.elapsed().as_secs_f64());
    // Cases are persons who scanned somewhere (a random scan's person): a case without visits
    // measures nothing but the look-up of the case.
    // Scan ids are drawn between the lowest and the highest: ingested scans have time-ordered
    // ids, all in a narrow band of the id space.
    // (PostgreSQL has no MIN of a uuid: the ends of the index instead.)
    let lo = store.db.fetch_one(baton_store::q!("SELECT id FROM scans ORDER BY id LIMIT 1")).await.map_err(e)?;
    let hi = store.db.fetch_one(baton_store::q!("SELECT id FROM scans ORDER BY id DESC LIMIT 1")).await.map_err(e)?;
    let (lo, hi) = (lo.get::<Uuid>("id").map_err(e)?.as_u128(), hi.get::<Uuid>("id").map_err(e)?.as_u128());
    let mut cases: Vec<Uuid> = Vec::with_capacity(50);
    // A bounded number of draws: a small bench may have fewer than 50 persons who scanned.
    for _ in 0..5000 {
        if cases.len() == 50 {
            break;
        }
        let from = Uuid::from_u128(lo + rng.r#gen::<u128>() % (hi - lo).max(1));
        let r = store.db.fetch_optional(baton_store::q!("SELECT person_id FROM scans WHERE id >= $1 ORDER BY id LIMIT 1", from)).await.map_err(e)?;
        if let Some(r) = r {
            let p: Uuid = r.get("person_id").map_err(e)?;
            if !cases.contains(&p) {
                cases.push(p);
            }
        }
    }
    // The seeded documents are placeholders; the search opens a case's document (to find the
    // trucks the case was crew of), so the cases get real sealed ones.
    for (i, c) in cases.iter().enumerate() {
        let number = crate::bench_testing::id_number(i as u64);
        let sealed = store.vault.seal("persons.document", &number).map_err(e)?;
        store.db.execute(baton_store::q!("UPDATE persons SET document_enc = $2 WHERE id = $1", *c, sealed)).await.map_err(e)?;
    }
    let mut lat = Vec::new();
    let mut found = 0usize;
    let mut visits = 0usize;
    for c in &cases {
        let t = Instant::now();
        let x = exposure::search(&store, &sys, *c, &exposure::SearchInput::default()).await.map_err(e)?;
        lat.push(ms(t.elapsed()));
        found += x.contacts.len();
        visits += x.case_visits;
    }
    let mut probe = Vec::new();
    for i in 0..50 {
        let v = venue_ids[i * 37 % venue_ids.len()];
        let at = now - Duration::minutes(rng.gen_range(0..14 * 24 * 60));
        let t = Instant::now();
        store
            .db
            .fetch_all(baton_store::q!(
                "SELECT person_id, at FROM scans WHERE venue_id = $1 AND at > $2 AND at < $3",
                v,
                at - Duration::minutes(30),
                at + Duration::minutes(30)
            ))
            .await
            .map_err(e)?;
        probe.push(ms(t.elapsed()));
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v.get(((v.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0)
    };
    println!("{:<58} {:>9} {:>9} {:>9}", format!("exposure search over {total} scans (50 cases)"), "p50 ms", "p99 ms", "ratio");
    let (pp50, pp99) = (pct(&mut probe, 0.5), pct(&mut probe, 0.99));
    let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    println!("{:<58} {:>9.2} {:>9.2} {:>9}", "ceiling: one indexed probe of a venue's ±30 min", pp50, pp99, "1.00");
    println!(
        "{:<58} {:>9.2} {:>9.2} {:>9.1}",
        format!("exposure::search ({:.1} visits, {:.0} contacts per case)", visits as f64 / cases.len() as f64, found as f64 / cases.len() as f64),
        p50,
        p99,
        p50 / pp50.max(1e-9)
    );

    store.db.close().await;
    scratch.remove().await
}

/// Seed `n` scans in the last 14 days at random venues by random persons, generated inside the
/// database (binding ten million rows through the driver would take longer than the run).
/// Person and venue ids follow the bench's own pattern (`Uuid::from_u64_pair` above).
async fn seed_scans(store: &Store, n: usize, persons: usize, venues: usize, now: DateTime<Utc>) -> anyhow::Result<()> {
    let step = 1_000_000usize;
    let mut done = 0usize;
    while done < n {
        let k = step.min(n - done);
        let sql = match store.db.backend() {
            baton_store::Backend::Sqlite => format!(
                "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < {k}),
                 r(p, v, t) AS (SELECT abs(random()) % {persons}, abs(random()) % {venues}, {epoch} - abs(random()) % 1209600 FROM g)
                 INSERT INTO scans (id, venue_id, person_id, at, colour, admission, tag, jurisdiction, created_at)
                 SELECT randomblob(16), unhex('01900000000070009000' || printf('%012x', v)), unhex('01900000000070008000' || printf('%012x', p)),
                        strftime('%Y-%m-%dT%H:%M:%S+00:00', t, 'unixepoch'), 'green', 'pass', randomblob(16), '140427',
                        strftime('%Y-%m-%dT%H:%M:%S+00:00', t, 'unixepoch') FROM r",
                epoch = now.timestamp()
            ),
            baton_store::Backend::Postgres => format!(
                "INSERT INTO scans (id, venue_id, person_id, at, colour, admission, tag, jurisdiction, created_at)
                 SELECT gen_random_uuid(), ('01900000-0000-7000-9000-' || lpad(to_hex(v), 12, '0'))::uuid,
                        ('01900000-0000-7000-8000-' || lpad(to_hex(p), 12, '0'))::uuid, t, 'green', 'pass', decode(md5(random()::text), 'hex'), '140427', t
                   FROM (SELECT floor(random() * {persons})::bigint AS p, floor(random() * {venues})::bigint AS v,
                                to_timestamp({epoch}) - floor(random() * 1209600) * interval '1 second' AS t
                           FROM generate_series(1, {k})) r",
                epoch = now.timestamp()
            ),
        };
        store.db.execute_raw(&sql).await.map_err(e)?;
        done += k;
    }
    Ok(())
}

/// A scan in the last 14 days at a random venue by a random person.
fn scan_row(rng: &mut rand::rngs::StdRng, ids: &[Uuid], venues: &[Uuid], now: DateTime<Utc>) -> Vec<Val> {
    let at = now - Duration::seconds(rng.gen_range(0..14 * 24 * 3600));
    let mut tag = [0u8; 16];
    rng.fill(&mut tag);
    vec![
        Uuid::now_v7().into(),
        venues[rng.gen_range(0..venues.len())].into(),
        ids[rng.gen_range(0..ids.len())].into(),
        at.into(),
        "green".into(),
        "pass".into(),
        tag.to_vec().into(),
        "140427".into(),
        at.into(),
    ]
}
