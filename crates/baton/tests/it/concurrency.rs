//! Many writers at once (group commit on SQLite, row locks on PostgreSQL): every
//! acknowledged write is there exactly once, every refused one left nothing, and the
//! audit chain has one entry per acknowledged write, unbroken.
use baton_testkit::{Backend, both, spawn_app};
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;

async fn concurrent_writes(b: Backend) {
    let app = spawn_app(b).await;
    let c = Arc::new(app.login("commander").await);
    let before = baton_store::audit::verify(&app.store.db, &app.store.vault).await.unwrap().entries;
    let mut tasks = Vec::new();
    for i in 0..48 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            // Every third request reuses a name, so a third of them fail inside their transaction.
            let name = if i % 3 == 0 { "并发同名单位".to_string() } else { format!("并发单位{i}") };
            c.post("/api/v1/units", json!({"name": name, "kind": "lab", "division_code": "140427"})).await.0
        }));
    }
    let mut created = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::UNPROCESSABLE_ENTITY => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 32 + 1, "32 unique names and one of the 16 same-named requests");
    assert_eq!(refused, 15);
    let (_, v) = c.get("/api/v1/units?q=并发").await;
    assert_eq!(v["units"].as_array().unwrap().len(), 33);
    let r = baton_store::audit::verify(&app.store.db, &app.store.vault).await.unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.entries - before, 33, "one audit entry per acknowledged write, none for refused ones");
    app.stop().await;
}
both!(concurrent_writes_keep_every_acknowledged_write_and_the_chain, concurrent_writes);

/// Bulk writes in transactions of their own (`Db::begin_alone`) among group-committed requests:
/// a bulk job that fails leaves nothing and takes nobody else's write with it; every other
/// write, bulk or not, is kept.
async fn bulk_jobs_among_requests(b: Backend) {
    let app = spawn_app(b).await;
    let c = Arc::new(app.login("commander").await);
    let mut requests = Vec::new();
    for i in 0..24 {
        let c = c.clone();
        requests.push(tokio::spawn(async move {
            c.post("/api/v1/units", json!({"name": format!("批量间单位{i}"), "kind": "lab", "division_code": "140427"})).await.0
        }));
    }
    let mut bulk = Vec::new();
    for i in 0..12u32 {
        let store = app.store.clone();
        bulk.push(tokio::spawn(async move {
            let mut tx = store.db.begin_alone(baton_store::Durability::Durable).await?;
            let id = uuid::Uuid::now_v7();
            let insert = || {
                baton_store::q!(
                    "INSERT INTO code_recomputes (id, cause, cause_ref, state, created_at) VALUES ($1, 'alone_test', $2, 'done', $3)",
                    id,
                    i.to_string(),
                    store.now()
                )
            };
            tx.execute(insert()).await?;
            if i % 2 == 1 {
                // The same id again: the job fails after its first row.
                tx.execute(insert()).await?;
            }
            tx.commit().await
        }));
    }
    for r in requests {
        assert_eq!(r.await.unwrap(), StatusCode::CREATED);
    }
    let mut failed = 0;
    for t in bulk {
        if t.await.unwrap().is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 6);
    let rows = app.store.db.fetch_all(baton_store::q!("SELECT cause_ref FROM code_recomputes WHERE cause = 'alone_test'")).await.unwrap();
    let mut kept: Vec<u32> = rows.iter().map(|r| r.get::<String>("cause_ref").unwrap().parse().unwrap()).collect();
    kept.sort_unstable();
    assert_eq!(kept, [0, 2, 4, 6, 8, 10], "the even jobs kept, nothing of the odd ones");
    let (_, v) = c.get("/api/v1/units?q=批量间单位").await;
    assert_eq!(v["units"].as_array().unwrap().len(), 24);
    let r = baton_store::audit::verify(&app.store.db, &app.store.vault).await.unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    app.stop().await;
}
both!(bulk_jobs_in_their_own_transactions_keep_everyone_elses_writes, bulk_jobs_among_requests);

/// A client that hangs up while its write waits for the database: the request's future is
/// dropped, and `baton_http_in_flight` must come down with it (it used to stay up for good).
async fn hang_up_leaves_no_request_in_flight(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let metrics = app.anonymous().with_bearer(baton_testkit::METRICS_TOKEN);
    let in_flight = || async {
        let (_, m) = metrics.get("/metrics").await;
        let m = m.as_str().unwrap().to_string();
        m.lines().find_map(|l| l.strip_prefix("baton_http_in_flight ")).unwrap().trim().parse::<i64>().unwrap()
    };
    assert_eq!(in_flight().await, 1, "only the metrics request itself");
    // Hold what every audited write needs: the SQLite writer, PostgreSQL's audit head row.
    let mut hold = app.store.db.begin().await.unwrap();
    hold.execute(baton_store::q!("UPDATE audit_head SET seq = seq WHERE id = 1")).await.unwrap();
    let sent = c
        .raw(reqwest::Method::POST, "/api/v1/units")
        .json(&json!({"name": "挂断单位", "kind": "lab", "division_code": "140427"}))
        .timeout(std::time::Duration::from_millis(300))
        .send()
        .await;
    assert!(sent.unwrap_err().is_timeout(), "the write waits for the held transaction");
    // The server notices the closed connection and drops the request.
    let mut seen = 0;
    for _ in 0..200 {
        seen = in_flight().await;
        if seen == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(seen, 1, "the hung-up request is no longer counted");
    drop(hold);
    let (_, v) = c.get("/api/v1/units?q=挂断单位").await;
    assert_eq!(v["units"].as_array().unwrap().len(), 0, "the dropped request wrote nothing");
    app.stop().await;
}
both!(a_hung_up_request_is_not_left_in_flight, hang_up_leaves_no_request_in_flight);
