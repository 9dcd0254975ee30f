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
