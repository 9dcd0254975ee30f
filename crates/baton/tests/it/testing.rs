//! Sampling and testing through the API on the manual clock: pools of every size, shipment and
//! receipt, results (idempotent, corrections kept), a positive pool through re-check to
//! resolution, overdue escalation, lab-file imports with bad rows, landing tests.
use baton_domain::ident::IdNumber;
use baton_testkit::{Backend, Session, TestApp, both, spawn_app};
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn now(app: &TestApp) -> chrono::DateTime<chrono::Utc> {
    baton_domain::clock::Clock::now(&*app.clock)
}

async fn unit(s: &Session, name: &str) -> String {
    let (_, v) = s.get(&format!("/api/v1/units?q={name}")).await;
    v["units"].as_array().unwrap().iter().find(|u| u["name"] == name).unwrap_or_else(|| panic!("no unit {name}: {v}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A valid resident ID number, distinct per `seq`.
fn id_number(seq: u32) -> String {
    let first17 = format!("140427{}{:02}{:02}{:03}", 1960 + seq % 40, 1 + seq % 12, 1 + seq % 28, seq % 1000);
    let c = IdNumber::check_char(first17.as_bytes()) as char;
    format!("{first17}{c}")
}

fn person(seq: u32) -> Value {
    json!({"name": format!("居民{seq}"), "document_number": id_number(seq)})
}

struct Lab {
    sampler: Session,
    lab: Session,
    cmd: Session,
    lab_id: String,
}

async fn parties(app: &TestApp) -> Lab {
    let cmd = app.login("commander").await;
    let lab_id = unit(&cmd, "壶关县人民医院核酸检测实验室").await;
    Lab { sampler: app.login("sampler").await, lab: app.login("lab").await, cmd, lab_id }
}

/// Open a tube of `k` with persons `first..first+n`; returns the tube.
async fn tube(p: &Lab, barcode: &str, k: u32, first: u32, n: u32) -> Value {
    let members: Vec<Value> = (first..first + n).map(person).collect();
    let (s, v) = p.sampler.post("/api/v1/testing/tubes", json!({"barcode": barcode, "pool_size": k, "members": members})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

async fn ship(p: &Lab, barcodes: &[&str]) -> Value {
    let (s, v) = p.sampler.post("/api/v1/testing/batches", json!({"lab_id": p.lab_id, "barcodes": barcodes})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

async fn receive(p: &Lab, batch: &Value, barcodes: &[&str]) -> Value {
    let (s, v) = p.lab.post(&format!("/api/v1/testing/batches/{}/receive", batch["id"].as_str().unwrap()), json!({"barcodes": barcodes})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn results(p: &Lab, rows: Value) -> (StatusCode, Value) {
    p.lab.post("/api/v1/testing/results", json!({"results": rows})).await
}

async fn status_of(app: &TestApp, person: &str) -> String {
    let id = uuid::Uuid::parse_str(person).unwrap();
    let m = baton_store::results::latest(&app.store, &[id]).await.unwrap();
    m.get(&id).map(|r| r.status.as_str().to_string()).unwrap_or_default()
}

fn member_ids(t: &Value) -> Vec<String> {
    t["member_list"].as_array().unwrap().iter().map(|m| m["person_id"].as_str().unwrap().to_string()).collect()
}

async fn pools_of_every_size(b: Backend) {
    let app = spawn_app(b).await;
    let p = parties(&app).await;
    let mut seq = 0;
    for k in [1u32, 5, 10, 20] {
        let barcode = format!("HG-K{k:02}");
        // Open with the first person, then scan the rest one or two at a time.
        let v = tube(&p, &barcode, k, seq, 1).await;
        assert_eq!((v["pool_size"].as_u64(), v["members"].as_u64()), (Some(u64::from(k)), Some(1)));
        let id = v["id"].as_str().unwrap().to_string();
        let mut added = 1;
        while added < k {
            let n = (k - added).min(2);
            let members: Vec<Value> = (seq + added..seq + added + n).map(person).collect();
            let (s, v) = p.sampler.post(&format!("/api/v1/testing/tubes/{id}/members"), json!({"members": members})).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            added += n;
            assert_eq!(v["members"].as_u64(), Some(u64::from(added)));
            assert_eq!(v["state"], if added == k { "sealed" } else { "open" }, "a full tube seals itself");
        }
        let (_, v) = p.sampler.get(&format!("/api/v1/testing/tubes/{id}")).await;
        assert_eq!(v["member_list"].as_array().unwrap().len(), k as usize);
        assert!(v["member_list"].as_array().unwrap().iter().all(|m| m["status"] == "pending"));
        // Deadlines come from the policy: single 6 h, pooled 24 h.
        let due = chrono::DateTime::parse_from_rfc3339(v["due_at"].as_str().unwrap()).unwrap();
        assert_eq!((due.with_timezone(&chrono::Utc) - now(&app)).num_hours(), if k == 1 { 6 } else { 24 });
        assert_eq!(v["member_list"][0]["document_masked"].as_str().unwrap().len(), 18);
        assert!(v["member_list"][0]["document_masked"].as_str().unwrap().contains('*'), "documents are masked");
        // A full tube takes nobody more.
        let (s, e) = p.sampler.post(&format!("/api/v1/testing/tubes/{id}/members"), json!({"members": [person(900)]})).await;
        assert_eq!((s, e["error"].as_str()), (StatusCode::CONFLICT, Some("tube_full")));
        seq += k;
    }
    // A sealed tube that is not full takes nobody either.
    let v = tube(&p, "HG-HALF", 10, 500, 3).await;
    let id = v["id"].as_str().unwrap();
    let (s, v) = p.sampler.post(&format!("/api/v1/testing/tubes/{id}/seal"), json!({})).await;
    assert_eq!((s, v["state"].as_str()), (StatusCode::OK, Some("sealed")));
    let (s, e) = p.sampler.post(&format!("/api/v1/testing/tubes/{id}/members"), json!({"members": [person(901)]})).await;
    assert_eq!((s, e["error"].as_str()), (StatusCode::CONFLICT, Some("tube_sealed")));
    // Bad input: a reused barcode, a pool size the policy does not allow, a person twice,
    // a new person without a name, a bad document number. Nothing is created.
    let (s, e) = p.sampler.post("/api/v1/testing/tubes", json!({"barcode": "hg-k05", "pool_size": 5})).await;
    assert_eq!((s, e["fields"]["barcode"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("barcode_reused")));
    let (s, e) = p.sampler.post("/api/v1/testing/tubes", json!({"barcode": "HG-NEW1", "pool_size": 3})).await;
    assert_eq!((s, e["fields"]["pool_size"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("pool_size_not_allowed")));
    let (s, e) = p.sampler.post("/api/v1/testing/tubes", json!({"barcode": "HG-NEW2", "pool_size": 5, "members": [person(600), person(600)]})).await;
    assert_eq!((s, e["fields"]["members[1]"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("already_in_tube")), "{e}");
    let (s, e) = p
        .sampler
        .post("/api/v1/testing/tubes", json!({"barcode": "HG-NEW3", "pool_size": 5, "members": [{"document_number": id_number(601)}]}))
        .await;
    assert_eq!((s, e["fields"]["members[0].name"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("name_required_new")), "{e}");
    let (s, e) = p
        .sampler
        .post("/api/v1/testing/tubes", json!({"barcode": "HG-NEW4", "members": [{"name": "甲", "document_number": "140427199001011234"}]}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e["fields"]["members[0].document_number"].is_object(), "{e}");
    for b in ["HG-NEW2", "HG-NEW3", "HG-NEW4"] {
        assert_eq!(p.sampler.get(&format!("/api/v1/testing/tubes/lookup?barcode={b}")).await.0, StatusCode::NOT_FOUND, "{b} was half-created");
    }
    // A known person is found by the document alone (ID card scanned, no name typed).
    let v = tube(&p, "HG-KNOWN", 1, 0, 0).await;
    let (s, v2) = p
        .sampler
        .post(&format!("/api/v1/testing/tubes/{}/members", v["id"].as_str().unwrap()), json!({"members": [{"document_number": id_number(0)}]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v2}");
    let (_, first) = p.sampler.get("/api/v1/testing/tubes/lookup?barcode=HG-K01").await;
    assert_eq!(member_ids(&v2), member_ids(&first), "one person, found by document");
    // Another team's sampler cannot touch the tube; a lab cannot open tubes.
    let (s, _) = p.lab.post("/api/v1/testing/tubes", json!({"barcode": "HG-LAB1"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    app.stop().await;
}
both!(pools_of_every_size_fill_seal_and_refuse_bad_input, pools_of_every_size);

async fn positive_pool(b: Backend) {
    let app = spawn_app(b).await;
    let p = parties(&app).await;
    let pool = tube(&p, "HG-P10", 10, 100, 10).await;
    let neg = tube(&p, "HG-N10", 10, 200, 10).await;
    let members = member_ids(&pool);
    let batch = ship(&p, &["HG-P10", "HG-N10"]).await;
    assert_eq!(batch["state"], "handed");
    // A result for a tube never shipped, or an unknown barcode, is refused row by row, and the
    // good rows of the same request are not applied either.
    tube(&p, "HG-UNSHIP", 5, 300, 1).await;
    let (s, e) = results(&p, json!([{"barcode": "HG-N10", "result": "negative"}, {"barcode": "HG-UNSHIP", "result": "negative"}, {"barcode": "HG-NONE", "result": "阴性"}, {"barcode": "HG-P10", "result": "maybe"}])).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["fields"]["rows[1].barcode"]["code"], "tube_unknown", "not shipped to this lab: as unknown to it as no tube");
    assert_eq!(e["fields"]["rows[2].barcode"]["code"], "tube_unknown");
    assert_eq!(e["fields"]["rows[3].result"]["code"], "result_unknown");
    assert_eq!(status_of(&app, &member_ids(&neg)[0]).await, "pending", "nothing was half-applied");
    receive(&p, &batch, &["HG-P10", "HG-N10"]).await;
    let (s, r) = results(&p, json!([{"barcode": "HG-P10", "result": "positive", "ct": 31.5}, {"barcode": "HG-N10", "result": "negative"}])).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!((r["applied"].as_u64(), r["pending_recheck"].as_u64()), (Some(2), Some(10)));
    // Every member of the positive pool is pending re-check at once; the negative pool's are negative.
    for m in &members {
        assert_eq!(status_of(&app, m).await, "pending_recheck");
    }
    assert_eq!(status_of(&app, &member_ids(&neg)[3]).await, "negative");
    let (s, v) = p.cmd.get(&format!("/api/v1/testing/persons/{}/result", members[0])).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("pending_recheck")));
    // The township and the command office are alerted, as an emergency.
    let (_, a) = p.cmd.get(&format!("/api/v1/alerts?subject_id={}", pool["id"].as_str().unwrap())).await;
    let mut to: Vec<(String, i64, bool)> = a["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["recipient_name"].as_str().unwrap().to_string(), x["level"].as_i64().unwrap(), x["emergency"].as_bool().unwrap()))
        .collect();
    to.sort();
    assert_eq!(to, [("壶关县疫情防控指挥部办公室".to_string(), 2, true), ("龙泉镇人民政府".to_string(), 0, true)], "{a}");
    assert!(a["alerts"].as_array().unwrap().iter().all(|x| x["kind"] == "positive_pool" && x["plate"] == "HG-P10"));
    let township = app.login("longquan").await;
    let (_, a) = township.get("/api/v1/alerts?kind=positive_pool").await;
    assert_eq!(a["alerts"].as_array().unwrap().len(), 2, "the township sees its own and the county's: {a}");
    // The pending re-check list holds each member with a single-tube re-test deadline (4 h).
    let (_, o) = township.get("/api/v1/testing/rechecks").await;
    let orders = o["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 10);
    let due = chrono::DateTime::parse_from_rfc3339(orders[0]["due_at"].as_str().unwrap()).unwrap();
    assert_eq!((due.with_timezone(&chrono::Utc) - now(&app)).num_hours(), 4);
    // Re-tests: one single tube each, by person id (scanned from the re-check list).
    app.clock.advance(Duration::hours(1));
    let mut barcodes = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let b = format!("HG-R{i:02}");
        let (s, v) = p.sampler.post("/api/v1/testing/tubes", json!({"barcode": b, "purpose": "recheck", "members": [{"person_id": m}]})).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["state"], "sealed");
        barcodes.push(b);
    }
    // Taken but not back: still pending re-check.
    assert_eq!(status_of(&app, &members[0]).await, "pending_recheck");
    let refs: Vec<&str> = barcodes.iter().map(String::as_str).collect();
    let batch = ship(&p, &refs).await;
    receive(&p, &batch, &refs).await;
    let rows: Vec<Value> =
        barcodes.iter().enumerate().map(|(i, b)| json!({"barcode": b, "result": if i == 7 { "positive" } else { "negative" }})).collect();
    let (s, r) = results(&p, json!(rows)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    for (i, m) in members.iter().enumerate() {
        assert_eq!(status_of(&app, m).await, if i == 7 { "positive" } else { "negative" }, "member {i}");
    }
    let (_, o) = township.get("/api/v1/testing/rechecks").await;
    assert_eq!(o["orders"].as_array().unwrap().len(), 0, "every re-check resolved: {o}");
    // The confirmed positive is alerted on its own.
    let (_, a) = p.cmd.get("/api/v1/alerts?kind=positive_result").await;
    assert_eq!(a["alerts"].as_array().unwrap().len(), 2);
    // Everything the codes engineer reads moved.
    let since = now(&app) - Duration::minutes(1);
    let changed = baton_store::results::changed_since(&app.store, since, 100).await.unwrap();
    assert_eq!(changed.len(), 10);
    app.stop().await;
}
both!(a_positive_pool_goes_to_pending_recheck_and_retests_resolve_it, positive_pool);

async fn idempotency_and_corrections(b: Backend) {
    let mut app = spawn_app(b).await;
    let p = parties(&app).await;
    let t = tube(&p, "HG-S0001", 1, 700, 1).await;
    let m = member_ids(&t)[0].clone();
    let batch = ship(&p, &["HG-S0001"]).await;
    receive(&p, &batch, &["HG-S0001"]).await;
    let (s, r) = results(&p, json!([{"barcode": "HG-S0001", "result": "negative", "ct": 38.0}])).await;
    assert_eq!((s, r["applied"].as_u64()), (StatusCode::OK, Some(1)), "{r}");
    // The same result again changes nothing.
    let (_, r) = results(&p, json!([{"barcode": "hg-s0001", "result": "阴性", "ct": 38.0}])).await;
    assert_eq!((r["applied"].as_u64(), r["unchanged"].as_u64()), (Some(0), Some(1)), "{r}");
    let (_, v) = p.lab.get(&format!("/api/v1/testing/tubes/{}", t["id"].as_str().unwrap())).await;
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    let first_at = status_updated(&app, &m).await;
    // A changed result is a correction; the original stays.
    app.clock.advance(Duration::minutes(10));
    let (_, r) = results(&p, json!([{"barcode": "HG-S0001", "result": "positive", "ct": 24.2}])).await;
    assert_eq!(r["corrected"].as_u64(), Some(1), "{r}");
    let (_, v) = p.lab.get(&format!("/api/v1/testing/tubes/{}", t["id"].as_str().unwrap())).await;
    let rs = v["results"].as_array().unwrap();
    assert_eq!(rs.len(), 2);
    assert_eq!((rs[0]["outcome"].as_str(), rs[1]["outcome"].as_str()), (Some("negative"), Some("positive")));
    assert_eq!(rs[1]["supersedes"], rs[0]["id"]);
    assert_eq!((v["outcome"].as_str(), v["ct"].as_f64()), (Some("positive"), Some(24.2)));
    assert_eq!(status_of(&app, &m).await, "positive");
    assert!(status_updated(&app, &m).await > first_at);
    // Another lab cannot post for this tube.
    // A restart loses no tube, result or deadline.
    app.restart().await;
    let p = parties(&app).await;
    let (_, v2) = p.lab.get(&format!("/api/v1/testing/tubes/{}", t["id"].as_str().unwrap())).await;
    assert_eq!((v2["due_at"].clone(), v2["results"].as_array().unwrap().len(), v2["outcome"].clone()), (v["due_at"].clone(), 2, json!("positive")));
    assert_eq!(status_of(&app, &m).await, "positive");
    // The same result again after the restart: still nothing new.
    let (_, r) = results(&p, json!([{"barcode": "HG-S0001", "result": "positive", "ct": 24.2}])).await;
    assert_eq!(r["unchanged"].as_u64(), Some(1));
    app.stop().await;
}
both!(repeated_results_change_nothing_and_corrections_keep_the_original, idempotency_and_corrections);

async fn status_updated(app: &TestApp, person: &str) -> chrono::DateTime<chrono::Utc> {
    let id = uuid::Uuid::parse_str(person).unwrap();
    baton_store::results::latest(&app.store, &[id]).await.unwrap()[&id].updated_at
}

async fn overdue(b: Backend) {
    let app = spawn_app(b).await;
    let p = parties(&app).await;
    let sweep = |app: &TestApp| {
        let store = app.store.clone();
        let t = now(app);
        async move {
            let t1 = baton_store::testing::sweep(&store, t).await.unwrap();
            let t2 = baton_store::alerts::sweep(&store, t).await.unwrap();
            (t1, t2)
        }
    };
    let pooled = tube(&p, "HG-O20", 20, 800, 20).await;
    let expedited = {
        let (s, v) = p.sampler.post("/api/v1/testing/tubes", json!({"barcode": "HG-OEXP", "priority": "expedited", "members": [person(850)]})).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    };
    let batch = ship(&p, &["HG-O20", "HG-OEXP"]).await;
    receive(&p, &batch, &["HG-O20", "HG-OEXP"]).await;
    assert_eq!(sweep(&app).await.0.tubes_overdue, 0, "nothing is due yet");
    // Expedited: 4 h.
    app.clock.advance(Duration::hours(4) + Duration::minutes(1));
    assert_eq!(sweep(&app).await.0.tubes_overdue, 1);
    let (_, a) = p.lab.get(&format!("/api/v1/alerts?subject_id={}", expedited["id"].as_str().unwrap())).await;
    let alert = a["alerts"][0].clone();
    assert_eq!(
        (alert["kind"].as_str(), alert["level"].as_i64(), alert["recipient_name"].as_str()),
        (Some("result_overdue"), Some(0), Some("壶关县人民医院核酸检测实验室"))
    );
    assert_eq!(sweep(&app).await.0.tubes_overdue, 0, "raised once");
    // Unacknowledged: 30 min later to the testing task force, 60 min after that to the command office.
    app.clock.advance(Duration::minutes(31));
    assert_eq!(sweep(&app).await.1.escalated, 1);
    let (_, a) = p.cmd.get(&format!("/api/v1/alerts?subject_id={}", expedited["id"].as_str().unwrap())).await;
    assert_eq!((a["alerts"][0]["level"].as_i64(), a["alerts"][0]["recipient_name"].as_str()), (Some(1), Some("核酸检测专班")));
    app.clock.advance(Duration::minutes(61));
    assert_eq!(sweep(&app).await.1.escalated, 1);
    let (_, a) = p.cmd.get(&format!("/api/v1/alerts?subject_id={}", expedited["id"].as_str().unwrap())).await;
    assert_eq!((a["alerts"][0]["level"].as_i64(), a["alerts"][0]["recipient_name"].as_str()), (Some(2), Some("壶关县疫情防控指挥部办公室")));
    // The pooled tube (24 h): raised at its own deadline; the lab acknowledges and the climb stops.
    app.clock.advance(Duration::hours(19));
    assert_eq!(sweep(&app).await.0.tubes_overdue, 1);
    // A day has passed: sessions have expired.
    let p = parties(&app).await;
    let (_, a) = p.lab.get(&format!("/api/v1/alerts?subject_id={}", pooled["id"].as_str().unwrap())).await;
    let aid = a["alerts"][0]["id"].as_str().unwrap().to_string();
    let (s, v) = p.lab.post(&format!("/api/v1/alerts/{aid}/acknowledge"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    app.clock.advance(Duration::hours(3));
    assert_eq!(sweep(&app).await.1.escalated, 0);
    // A result after the deadline ends the watch, and the tube lists as resulted.
    let (s, _) = results(&p, json!([{"barcode": "HG-O20", "result": "negative"}])).await;
    assert_eq!(s, StatusCode::OK);
    let (_, l) = p.lab.get("/api/v1/testing/tubes?overdue=true").await;
    let overdue: Vec<&str> = l["tubes"].as_array().unwrap().iter().map(|t| t["barcode"].as_str().unwrap()).collect();
    assert_eq!(overdue, ["HG-OEXP"]);
    app.stop().await;
}
both!(overdue_tubes_escalate_lab_task_force_command_office, overdue);

async fn receipt(b: Backend) {
    let app = spawn_app(b).await;
    let p = parties(&app).await;
    tube(&p, "HG-B1", 1, 1000, 1).await;
    tube(&p, "HG-B2", 1, 1001, 1).await;
    tube(&p, "HG-B3", 5, 1002, 2).await;
    // Only sealed tubes ship: HG-B3 is still open.
    let (s, e) = p.sampler.post("/api/v1/testing/batches", json!({"lab_id": p.lab_id, "barcodes": ["HG-B1", "HG-B3"]})).await;
    assert_eq!((s, e["fields"]["barcodes[1]"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("tube_not_sealed")));
    let (s, e) = p.sampler.post("/api/v1/testing/batches", json!({"lab_id": unit(&p.cmd, "核酸检测专班").await, "barcodes": ["HG-B1"]})).await;
    assert_eq!((s, e["fields"]["lab_id"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("not_a_lab")));
    let batch = ship(&p, &["HG-B1", "HG-B2"]).await;
    // Another batch handed over in the same instant (the manual clock stands still) gets its own code.
    tube(&p, "HG-B4", 1, 1003, 1).await;
    let other = ship(&p, &["HG-B4"]).await;
    assert_ne!(other["code"], batch["code"]);
    // Only the receiving lab may receive it.
    let (s, _) = p.sampler.post(&format!("/api/v1/testing/batches/{}/receive", batch["id"].as_str().unwrap()), json!({"barcodes": ["HG-B1"]})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let r = receive(&p, &batch, &["HG-B1", "HG-X9"]).await;
    assert_eq!((r["state"].as_str(), r["missing"].clone(), r["extra"].clone()), (Some("received"), json!(["HG-B2"]), json!(["HG-X9"])));
    let (_, t) = p.lab.get("/api/v1/testing/tubes/lookup?barcode=HG-B2").await;
    assert_eq!(t["state"], "missing");
    // The team is alerted about its missing tube; the missing tube cannot get a result.
    let (_, a) = p.sampler.get("/api/v1/alerts?kind=tube_missing").await;
    assert_eq!(a["alerts"][0]["plate"], "HG-B2", "{a}");
    let (s, e) = results(&p, json!([{"barcode": "HG-B2", "result": "negative"}])).await;
    assert_eq!((s, e["fields"]["rows[0].barcode"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("tube_missing")));
    let (s, e) = p.lab.post(&format!("/api/v1/testing/batches/{}/receive", batch["id"].as_str().unwrap()), json!({"barcodes": ["HG-B1"]})).await;
    assert_eq!((s, e["error"].as_str()), (StatusCode::CONFLICT, Some("batch_received")));
    app.stop().await;
}
both!(a_batch_is_received_with_missing_and_extra_tubes_flagged, receipt);

async fn import_file(app: &TestApp, p: &Lab, ct: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let r = p.lab.raw(reqwest::Method::POST, "/api/v1/testing/results/import").header("content-type", ct).body(body).send().await.unwrap();
    let _ = app;
    let s = r.status();
    (s, r.json().await.unwrap())
}

async fn lab_files(b: Backend) {
    let app = spawn_app(b).await;
    let p = parties(&app).await;
    let mut codes = Vec::new();
    for i in 0..6u32 {
        let b = format!("HG-F{i}");
        tube(&p, &b, 1, 1100 + i, 1).await;
        codes.push(b);
    }
    let refs: Vec<&str> = codes.iter().map(String::as_str).collect();
    let batch = ship(&p, &refs).await;
    receive(&p, &batch, &refs).await;
    // A malformed GBK CSV: an unknown tube, an unreadable result, a duplicate, an empty row, a bad Ct.
    let bad = "条码,结果,Ct值,姓名\nHG-F0,阴性,,张三\nHG-ZZZ,阴性,,李四\nHG-F1,不知道,,王五\nHG-F0,阴性,,张三\n,,,\nHG-F2,阳性,abc,赵六\n";
    let (gbk, _, _) = encoding_rs::GBK.encode(bad);
    let (s, e) = import_file(&app, &p, "text/csv", gbk.into_owned()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let f = &e["fields"];
    assert_eq!(f["rows[3].barcode"]["code"], "tube_unknown", "{e}");
    assert_eq!(f["rows[4].result"]["code"], "result_unknown");
    assert_eq!(f["rows[5].barcode"]["code"], "duplicate");
    assert!(f["rows[6]"].is_null(), "a blank row is passed over: {e}");
    assert_eq!(f["rows[7].ct"]["code"], "ct_invalid");
    let (_, t) = p.lab.get("/api/v1/testing/tubes/lookup?barcode=HG-F0").await;
    assert!(t["outcome"].is_null(), "nothing was half-imported");
    // Wrong columns, an unreadable encoding.
    let (s, e) = import_file(&app, &p, "text/csv", "tube,outcome\nHG-F0,negative\n".as_bytes().to_vec()).await;
    assert_eq!((s, e["fields"]["columns.barcode"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("column_missing")), "{e}");
    let (s, e) = import_file(&app, &p, "text/csv", vec![0x62, 0x61, 0xff, 0xfe, 0x81, 0x0a]).await;
    assert_eq!((s, e["fields"]["file"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("encoding_unknown")), "{e}");
    // A good GBK CSV, then the same as xlsx (the repeat changes nothing).
    let good = "条码,结果,Ct值,检测时间\nHG-F0,阴性,,2022-11-10 08:00\nHG-F1,阳性,27.3,2022-11-10 08:05\nHG-F2,无效,,\n";
    let (gbk, _, _) = encoding_rs::GBK.encode(good);
    let (s, r) = import_file(&app, &p, "text/csv", gbk.into_owned()).await;
    assert_eq!((s, r["applied"].as_u64()), (StatusCode::OK, Some(3)), "{r}");
    let (_, t) = p.lab.get("/api/v1/testing/tubes/lookup?barcode=HG-F1").await;
    assert_eq!((t["outcome"].as_str(), t["ct"].as_f64()), (Some("positive"), Some(27.3)));
    use baton_store::sheet::XCell;
    let x = |s: &str| XCell::Text(s.into());
    let sheet = vec![
        vec![x("样本编号"), x("检测结果"), x("Ct值")],
        vec![x("HG-F0"), x("阴性"), XCell::Text(String::new())],
        vec![x("HG-F3"), x("negative"), XCell::Number(36.0)],
    ];
    let bytes = baton_store::sheet::write_sheet("results", &sheet).unwrap();
    let (s, r) = import_file(&app, &p, baton_store::sheet::XLSX_MIME, bytes).await;
    assert_eq!((s, r["applied"].as_u64(), r["unchanged"].as_u64()), (StatusCode::OK, Some(1), Some(1)), "{r}");
    // The invalid tube's member is owed a re-sample, and the team is told.
    let (_, t) = p.lab.get("/api/v1/testing/tubes/lookup?barcode=HG-F2").await;
    assert_eq!(t["member_list"][0]["status"], "invalid");
    let (_, o) = p.cmd.get("/api/v1/testing/rechecks").await;
    assert!(o["orders"].as_array().unwrap().iter().any(|o| o["kind"] == "resample" && o["source_barcode"] == "HG-F2"), "{o}");
    app.stop().await;
}
both!(lab_files_import_all_or_nothing_with_a_report_per_row, lab_files);

/// Issue 17, item 13: the landing tube recorded at check-in is a tube in testing from that
/// moment (single, expedited, tied to the trip, the driver in it), so that the lab's result for
/// its barcode is accepted and a positive landing test alerts the trip, through the API and the pages.
async fn landing(b: Backend) {
    let app = spawn_app(b).await;
    let p = parties(&app).await;
    let checkpoint = app.login("checkpoint").await;
    let dest = unit(&p.cmd, "壶关县太行钢材贸易有限公司").await;
    let check_in = |plate: &str, tube: &str| {
        json!({"plate": plate, "destination_id": dest, "eta": (now(&app) + Duration::hours(2)).to_rfc3339(),
               "crew": [{"name": "张师傅", "id_number": "11010519491231002X", "phone": "13912345678", "health_code": "green"}],
               "test_taken_at": (now(&app) - Duration::hours(10)).to_rfc3339(), "risk": "none", "landing_tube": tube})
    };
    let (s, trip) = checkpoint.post("/api/v1/trips/check-in", check_in("晋D77777", "lt-7777")).await;
    assert_eq!(s, StatusCode::CREATED, "{trip}");
    let trip_id = trip["id"].as_str().unwrap();
    assert_eq!(trip["landing_tube"], "LT-7777", "kept as the lab will send it");
    let (s, t) = checkpoint.get("/api/v1/testing/tubes/lookup?barcode=LT-7777").await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!((t["purpose"].as_str(), t["priority"].as_str(), t["state"].as_str()), (Some("landing"), Some("expedited"), Some("sealed")), "{t}");
    assert_eq!((t["pool_size"].as_i64(), t["trip_id"].as_str(), t["member_list"][0]["name"].as_str()), (Some(1), Some(trip_id), Some("张师傅")));
    let due = |t: &Value, k: &str| chrono::DateTime::parse_from_rfc3339(t[k].as_str().unwrap()).unwrap();
    assert_eq!((due(&t, "due_at") - due(&t, "sampled_at")).num_hours(), 4, "expedited: {t}");
    let (_, opened) = p.cmd.get(&format!("/api/v1/audit?object_id={}&action=testing.tube.open", t["id"].as_str().unwrap())).await;
    assert_eq!(opened["entries"].as_array().unwrap().len(), 1, "{opened}");
    // A barcode names one tube: another truck with it is refused at the field, nothing checked in.
    let (s, e) = checkpoint.post("/api/v1/trips/check-in", check_in("晋D77778", "LT-7777")).await;
    assert_eq!((s, e["fields"]["landing_tube"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("barcode_reused")), "{e}");
    assert_eq!(p.cmd.get("/api/v1/trips?plate=晋D77778").await.1["trips"].as_array().unwrap().len(), 0);
    // A tube opened for the trip by hand must carry its barcode.
    let (s, e) = checkpoint
        .post(
            "/api/v1/testing/tubes",
            json!({"barcode": "LT-0000", "trip_id": trip_id, "members": [{"name": "张师傅", "document_number": "11010519491231002X"}]}),
        )
        .await;
    assert_eq!((s, e["fields"]["barcode"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("landing_tube_mismatch")), "{e}");
    // Shipped like any tube, and the lab's positive is accepted.
    let (s, batch) = checkpoint.post("/api/v1/testing/batches", json!({"lab_id": p.lab_id, "barcodes": ["LT-7777"]})).await;
    assert_eq!(s, StatusCode::CREATED, "{batch}");
    let (s, r) = results(&p, json!([{"barcode": "LT-7777", "result": "positive", "ct": 22.0}])).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["positive"], json!(["LT-7777"]), "{r}");
    assert_eq!(status_of(&app, t["member_list"][0]["person_id"].as_str().unwrap()).await, "positive");
    // A positive landing test is an emergency on the trip: to its custodian, its township and
    // the command office, at once.
    let (_, a) = p.cmd.get(&format!("/api/v1/alerts?trip_id={trip_id}")).await;
    let mut got: Vec<(String, i64)> =
        a["alerts"].as_array().unwrap().iter().map(|x| (x["kind"].as_str().unwrap().to_string(), x["level"].as_i64().unwrap())).collect();
    got.sort();
    assert_eq!(got, [("positive_landing".to_string(), 0), ("positive_landing".to_string(), 1), ("positive_landing".to_string(), 2)], "{a}");
    // The township is the trip's locality (its destination's), as in the responsibility ledger.
    let to_township = a["alerts"].as_array().unwrap().iter().find(|x| x["level"] == 1).unwrap();
    let (_, unit) = p.cmd.get(&format!("/api/v1/units/{}", to_township["recipient_id"].as_str().unwrap())).await;
    assert_eq!(unit["kind"], "township", "{unit}");
    let (_, trip) = p.cmd.get(&format!("/api/v1/trips/{trip_id}")).await;
    assert!(trip["jurisdiction"].as_str().unwrap().starts_with(unit["division_code"].as_str().unwrap()), "{trip} {unit}");
    let landings = baton_store::results::positive_landings(&app.store, now(&app) - Duration::hours(1)).await.unwrap();
    assert_eq!(landings.iter().map(|l| l.trip_id.to_string()).collect::<Vec<_>>(), [trip_id.to_string()]);

    // The same through the pages: the checkpoint checks in, ships from its sampling desk, the lab posts the positive.
    let cp_ui = crate::pages::Ui::of(&app, "checkpoint", "zh").await;
    let eta = (now(&app) + Duration::hours(2)).with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap()).format("%Y-%m-%dT%H:%M").to_string();
    let a = cp_ui
        .post(
            "/trips/check-in",
            &[
                ("plate", "晋D77779"),
                ("trailer", ""),
                ("destination_id", dest.as_str()),
                ("eta", eta.as_str()),
                ("crew_name", "李师傅"),
                ("crew_id_number", "110105194912310038"),
                ("crew_phone", ""),
                ("crew_health_code", "green"),
                ("test_taken_at", ""),
                ("itinerary", ""),
                ("risk", "none"),
                ("landing_tube", "LT-7779"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.html);
    let trip2 = a.location.trim_start_matches("/trips/").split('?').next().unwrap().to_string();
    assert!(cp_ui.get("/testing/sample").await.html.contains("LT-7779"), "the landing tube waits on the desk to be shipped");
    let a = cp_ui.post("/testing/ship", &[("lab_id", p.lab_id.as_str()), ("barcodes", "LT-7779")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.html);
    let lab_ui = crate::pages::Ui::of(&app, "lab", "zh").await;
    let a = lab_ui.post("/testing/lab", &[("barcode", "LT-7779"), ("result", "阳性"), ("ct", "25")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.html);
    let (_, a) = p.cmd.get(&format!("/api/v1/alerts?trip_id={trip2}&kind=positive_landing")).await;
    assert_eq!(a["alerts"].as_array().unwrap().len(), 3, "{a}");
    app.stop().await;
}
both!(the_landing_tube_of_a_check_in_is_a_tube_the_lab_results, landing);
