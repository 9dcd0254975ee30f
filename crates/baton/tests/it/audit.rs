//! The audit chain: `baton audit verify` catches an edited, a deleted and a reordered entry.
use baton_store::{audit, q};
use baton_testkit::{Backend, TestApp, both, spawn_app};
use serde_json::json;

async fn verify(app: &TestApp) -> audit::VerifyReport {
    audit::verify(&app.store.db, &app.store.vault).await.unwrap()
}

/// Run the real binary's `audit verify` against the test's database and key file.
fn verify_cli(app: &TestApp) -> (bool, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_baton"));
    cmd.arg("--data-dir").arg(&app.config.data_dir).arg("--key-file").arg(&app.config.key_file).args(["audit", "verify"]);
    cmd.env_remove("BATON_DATABASE_URL");
    if let Some(url) = &app.config.database_url {
        cmd.arg("--database-url").arg(url);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

async fn tamper(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    for i in 0..5 {
        let (s, _) = c.post("/api/v1/units", json!({"name": format!("审计测试单位{i}"), "kind": "lab", "division_code": "140427"})).await;
        assert!(s.is_success());
    }
    let r = verify(&app).await;
    assert!(r.ok(), "{:?}", r.problems);
    assert!(r.entries > 40);
    let (ok, out) = verify_cli(&app);
    assert!(ok, "{out}");
    assert!(out.contains("intact"), "{out}");
    let n = r.entries;
    let db = &app.store.db;

    // 1. Edit an entry's detail.
    db.execute(q!("UPDATE audit_log SET detail = $1 WHERE seq = 10", "{\"name\":\"forged\"}")).await.unwrap();
    let r = verify(&app).await;
    assert_eq!(r.problems, vec!["entry 10 was altered".to_string()]);
    let (ok, out) = verify_cli(&app);
    assert!(!ok && out.contains("entry 10 was altered"), "{out}");
    // Restore by putting back what was there is impossible without the key; instead start over.
    app.stop().await;

    let app = spawn_app(b).await;
    let db = &app.store.db;
    assert!(verify(&app).await.ok());
    // 2. Delete an entry in the middle.
    db.execute(q!("DELETE FROM audit_log WHERE seq = 7")).await.unwrap();
    let r = verify(&app).await;
    assert!(r.problems.iter().any(|p| p.contains("entries 7..7 are missing")), "{:?}", r.problems);
    assert!(!verify_cli(&app).0);
    app.stop().await;

    let app = spawn_app(b).await;
    let db = &app.store.db;
    let last: i64 = db.fetch_one(q!("SELECT MAX(seq) AS m FROM audit_log")).await.unwrap().get("m").unwrap();
    // 3. Delete the newest entry (the head row still remembers it).
    db.execute(q!("DELETE FROM audit_log WHERE seq = $1", last)).await.unwrap();
    let r = verify(&app).await;
    assert!(r.problems.iter().any(|p| p.contains("entries deleted")), "{:?}", r.problems);
    app.stop().await;

    let app = spawn_app(b).await;
    let db = &app.store.db;
    // 4. Reorder: swap the contents of two entries, keeping their sequence numbers.
    let a = db.fetch_one(q!("SELECT action, object_id, detail FROM audit_log WHERE seq = 3")).await.unwrap();
    let bb = db.fetch_one(q!("SELECT action, object_id, detail FROM audit_log WHERE seq = 4")).await.unwrap();
    let (a1, a2, a3): (String, String, String) = (a.get("action").unwrap(), a.get("object_id").unwrap(), a.get("detail").unwrap());
    let (b1, b2, b3): (String, String, String) = (bb.get("action").unwrap(), bb.get("object_id").unwrap(), bb.get("detail").unwrap());
    db.execute(q!("UPDATE audit_log SET action = $1, object_id = $2, detail = $3 WHERE seq = 3", b1, b2, b3)).await.unwrap();
    db.execute(q!("UPDATE audit_log SET action = $1, object_id = $2, detail = $3 WHERE seq = 4", a1, a2, a3)).await.unwrap();
    let r = verify(&app).await;
    assert!(r.problems.contains(&"entry 3 was altered".to_string()) && r.problems.contains(&"entry 4 was altered".to_string()), "{:?}", r.problems);
    let _ = n;
    app.stop().await;
}
both!(audit_verify_catches_edited_deleted_and_reordered_entries, tamper);

/// Deleting the newest entries and rewinding the head to match, or deleting every entry, leaves
/// a chain that checks by itself; the anchor kept outside the database catches both, refuses
/// to follow the rewound head, and cannot be forged without the key.
async fn anchored(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    for i in 0..3 {
        let (s, _) = c.post("/api/v1/units", json!({"name": format!("锚定单位{i}"), "kind": "lab", "division_code": "140427"})).await;
        assert!(s.is_success());
    }
    let (db, vault, path) = (&app.store.db, &app.store.vault, app.config.data_dir.join("audit-anchor.json"));
    let now = baton_domain::clock::Clock::now(&*app.clock);
    // (The jobs loop anchors too, every ten seconds; either way the anchor is at the head.)
    audit::anchor(db, vault, &path, now).await.unwrap();
    let a = audit::read_anchor(&path).unwrap().unwrap();
    let head: i64 = db.fetch_one(q!("SELECT seq FROM audit_head WHERE id = 1")).await.unwrap().get("seq").unwrap();
    assert_eq!(a.seq, head);
    assert_eq!(audit::anchor(db, vault, &path, now).await.unwrap(), None, "an unmoved chain is not anchored again");
    let (ok, out) = verify_cli(&app);
    assert!(ok && out.contains(&format!("anchored at entry {}", a.seq)), "{out}");

    // Rewind: the newest three entries deleted, the head set back to the entry before them.
    let k = a.seq - 3;
    let h: Vec<u8> = db.fetch_one(q!("SELECT hash FROM audit_log WHERE seq = $1", k)).await.unwrap().get("hash").unwrap();
    db.execute(q!("DELETE FROM audit_log WHERE seq > $1", k)).await.unwrap();
    db.execute(q!("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", k, h)).await.unwrap();
    assert!(verify(&app).await.ok(), "the chain alone cannot tell");
    let (ok, out) = verify_cli(&app);
    assert!(!ok && out.contains("head rewound"), "{out}");
    let kept = audit::anchor(db, vault, &path, now).await;
    assert!(kept.is_err(), "the anchor does not follow a rewound head: {kept:?}");
    assert_eq!(audit::read_anchor(&path).unwrap(), Some(a.clone()));

    // Every entry deleted, the head back at the start.
    db.execute(q!("DELETE FROM audit_log")).await.unwrap();
    db.execute(q!("UPDATE audit_head SET seq = 0, hash = $1 WHERE id = 1", vec![0u8; 32])).await.unwrap();
    let r = verify(&app).await;
    assert!(r.ok() && r.entries == 0, "{:?}", r.problems);
    let (ok, out) = verify_cli(&app);
    assert!(!ok && out.contains(&format!("records entry {}", a.seq)), "{out}");

    // An anchor moved back by hand, without the key, is refused as forged.
    let forged = audit::Anchor { seq: 0, ..a };
    std::fs::write(&path, serde_json::to_vec(&forged).unwrap()).unwrap();
    let (ok, out) = verify_cli(&app);
    assert!(!ok && out.contains("MAC does not match"), "{out}");
    app.stop().await;
}
both!(audit_anchor_catches_a_rewound_or_emptied_chain, anchored);

async fn every_write_is_audited(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let (_, u) = c.post("/api/v1/units", json!({"name": "审计单位", "kind": "lab", "division_code": "140427100"})).await;
    let id = u["id"].as_str().unwrap();
    c.put(&format!("/api/v1/units/{id}"), json!({"name": "审计单位(改)", "kind": "lab", "division_code": "140427100"})).await;
    let (_, a) = c.get(&format!("/api/v1/audit?object_id={id}")).await;
    let e = a["entries"].as_array().unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(e[0]["action"], "unit.update");
    assert_eq!(e[1]["action"], "unit.create");
    assert_eq!(e[0]["actor_name"], "commander");
    assert!(e[0]["detail"].as_str().unwrap().contains("审计单位(改)"));
    assert!(!e[0]["request_id"].as_str().unwrap().is_empty());
    // The request id in the audit entry is the one the client saw.
    let r = c
        .raw(reqwest::Method::PUT, &format!("/api/v1/units/{id}"))
        .header("x-request-id", "req-abc-123")
        .json(&json!({"name": "审计单位", "kind": "lab", "division_code": "140427100"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-abc-123");
    let (_, a) = c.get(&format!("/api/v1/audit?object_id={id}&limit=1")).await;
    assert_eq!(a["entries"][0]["request_id"], "req-abc-123");
    app.stop().await;
}
both!(writes_are_audited_with_actor_and_request_id, every_write_is_audited);
