//! Mass-screening rounds, pool-size planning and overdue re-tests, through the API on the
//! manual clock: coverage per village cut to the viewer's scope, the missing list (masked,
//! revealed only with the right and audited), Dorfman's published figures from real results,
//! and re-test orders that nobody sampled in time raising alerts that climb.
use baton_domain::ident::IdNumber;
use baton_testkit::{Backend, Session, TestApp, both, spawn_app};
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

const NANGUAN: &str = "140427100200"; // 龙泉镇南关村
const DONGJIE: &str = "140427100201"; // 龙泉镇东街村
const BAICHI: &str = "140427101200"; // 百尺镇百尺村

fn now(app: &TestApp) -> chrono::DateTime<chrono::Utc> {
    baton_domain::clock::Clock::now(&*app.clock)
}

/// A valid resident ID number, distinct per `seq`.
fn id_number(seq: u32) -> String {
    let first17 = format!("140427{}{:02}{:02}{:03}", 1970 + seq % 40, 1 + seq % 12, 1 + seq % 28, seq % 1000);
    let c = IdNumber::check_char(first17.as_bytes()) as char;
    format!("{first17}{c}")
}

async fn unit(s: &Session, name: &str) -> String {
    let (_, v) = s.get(&format!("/api/v1/units?q={name}")).await;
    v["units"].as_array().unwrap().iter().find(|u| u["name"] == name).unwrap_or_else(|| panic!("no unit {name}: {v}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Register a resident of `village` through the registry; returns the person id.
async fn resident(cmd: &Session, seq: u32, village: &str) -> String {
    let (s, v) = cmd
        .post(
            "/api/v1/persons",
            json!({"name": format!("居民{seq}"), "document_number": id_number(seq), "phone": format!("139{seq:08}"), "division": village}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    v["id"].as_str().unwrap().to_string()
}

async fn open_tube(sampler: &Session, barcode: &str, k: u32, round: Option<&str>, ids: &[&String]) -> Value {
    let members: Vec<Value> = ids.iter().map(|id| json!({"person_id": id})).collect();
    let mut body = json!({"barcode": barcode, "pool_size": k, "members": members});
    if let Some(r) = round {
        body["round_id"] = json!(r);
    }
    let (s, v) = sampler.post("/api/v1/testing/tubes", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

async fn seal(sampler: &Session, t: &Value) {
    if t["state"] == "open" {
        let (s, v) = sampler.post(&format!("/api/v1/testing/tubes/{}/seal", t["id"].as_str().unwrap()), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}

/// Ship the barcodes to the hospital lab, have it receive them and post `results`.
async fn result(sampler: &Session, lab: &Session, lab_id: &str, rows: &[(&str, &str)]) {
    let barcodes: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let (s, b) = sampler.post("/api/v1/testing/batches", json!({"lab_id": lab_id, "barcodes": barcodes})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, v) = lab.post(&format!("/api/v1/testing/batches/{}/receive", b["id"].as_str().unwrap()), json!({"barcodes": barcodes})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let list: Vec<Value> = rows.iter().map(|(b, r)| json!({"barcode": b, "result": r})).collect();
    let (s, v) = lab.post("/api/v1/testing/results", json!({"results": list})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

fn line<'a>(cov: &'a Value, key: &str, code: &str) -> &'a Value {
    cov[key].as_array().unwrap().iter().find(|l| l["code"] == code).unwrap_or_else(|| panic!("no {code} in {key}: {cov}"))
}

fn counts(l: &Value) -> [i64; 5] {
    ["expected", "sampled", "resulted", "positive", "missing"].map(|k| l[k].as_i64().unwrap())
}

async fn coverage(b: Backend) {
    let app = spawn_app(b).await;
    let cmd = app.login("commander").await;
    let sampler = app.login("sampler").await;
    // Residents: four in 南关村, two in 东街村 (龙泉镇), two in 百尺村 (百尺镇).
    let mut p = Vec::new();
    for (i, v) in [NANGUAN, NANGUAN, NANGUAN, NANGUAN, DONGJIE, DONGJIE, BAICHI, BAICHI].iter().enumerate() {
        p.push(resident(&cmd, i as u32, v).await);
    }
    // Sampled the day before the round: does not count for it.
    let early = open_tube(&sampler, "RD-EARLY", 1, None, &[&p[5]]).await;
    assert_eq!(early["state"], "sealed");
    app.clock.advance(Duration::hours(20));
    // Sessions last 12 h: sign in again.
    let (cmd, sampler, lab) = (app.login("commander").await, app.login("sampler").await, app.login("lab").await);
    let lab_id = unit(&cmd, "壶关县人民医院核酸检测实验室").await;

    // Bad input: nothing is created.
    for (body, field, code) in [
        (json!({"name": "", "area": "140427"}), "name", "required"),
        (json!({"name": "x", "area": "140105"}), "area", "outside_scope"),
        (json!({"name": "x", "area": "Atlantis"}), "area", "division_unknown"),
        (json!({"name": "x", "area": "14"}), "area", "division_level"),
        (json!({"name": "x", "area": "140427", "priority": "soon"}), "priority", "priority_unknown"),
        (
            json!({"name": "x", "area": "140427", "starts_at": now(&app).to_rfc3339(), "due_at": (now(&app) - Duration::hours(1)).to_rfc3339()}),
            "due_at",
            "due_before_start",
        ),
        (json!({"name": "x", "area": "140427", "due_at": (now(&app) + Duration::days(8)).to_rfc3339()}), "due_at", "window_too_long"),
    ] {
        let (s, e) = cmd.post("/api/v1/testing/rounds", body.clone()).await;
        assert_eq!((s, e["fields"][field]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(code)), "{body}: {e}");
    }
    let (s, _) = app.login("longquan").await.post("/api/v1/testing/rounds", json!({"name": "x", "area": "140427101"})).await;
    assert!(matches!(s, StatusCode::FORBIDDEN | StatusCode::UNPROCESSABLE_ENTITY), "a township cannot open a round for another: {s}");
    let (s, _) = sampler.post("/api/v1/testing/rounds", json!({"name": "x", "area": "140427"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(cmd.get("/api/v1/testing/rounds").await.1["rounds"].as_array().unwrap().len(), 0);

    // A county round, expedited: the window defaults to the policy's 24 h.
    let (s, round) = cmd.post("/api/v1/testing/rounds", json!({"name": "第一轮全员核酸", "area": "壶关县", "priority": "expedited"})).await;
    assert_eq!(s, StatusCode::CREATED, "{round}");
    let rid = round["id"].as_str().unwrap().to_string();
    assert_eq!((round["area"].as_str(), round["state"].as_str()), (Some("140427"), Some("open")));
    let due = chrono::DateTime::parse_from_rfc3339(round["due_at"].as_str().unwrap()).unwrap();
    assert_eq!((due.with_timezone(&chrono::Utc) - now(&app)).num_hours(), 24);

    let (_, c) = cmd.get(&format!("/api/v1/testing/rounds/{rid}")).await;
    assert_eq!(counts(&c["total"]), [8, 0, 0, 0, 8], "{c}");
    // Tubes tied to the round take its priority (expedited: 4 h).
    let t1 = open_tube(&sampler, "RD-0001", 5, Some(&rid), &[&p[0], &p[1], &p[2]]).await;
    assert_eq!(t1["priority"], "expedited");
    let due = chrono::DateTime::parse_from_rfc3339(t1["due_at"].as_str().unwrap()).unwrap();
    assert_eq!((due.with_timezone(&chrono::Utc) - now(&app)).num_hours(), 4);
    seal(&sampler, &t1).await;
    // Sampled during the window in a tube not tied to the round: counts too.
    open_tube(&sampler, "RD-0002", 1, None, &[&p[4]]).await;
    // A 百尺镇 resident at 龙泉镇's desk shows their ID card: named by document, not by an id of
    // another township's registry.
    let (s, v) =
        sampler.post("/api/v1/testing/tubes", json!({"barcode": "RD-0003", "round_id": rid, "members": [{"document_number": id_number(6)}]})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    result(&sampler, &lab, &lab_id, &[("RD-0001", "positive"), ("RD-0003", "negative")]).await;

    let (_, c) = cmd.get(&format!("/api/v1/testing/rounds/{rid}")).await;
    assert_eq!(counts(&c["total"]), [8, 5, 4, 3, 3], "{c}");
    assert_eq!(counts(line(&c, "villages", NANGUAN)), [4, 3, 3, 3, 1]);
    assert_eq!(counts(line(&c, "villages", DONGJIE)), [2, 1, 0, 0, 1], "the early sample does not count");
    assert_eq!(counts(line(&c, "villages", BAICHI)), [2, 1, 1, 0, 1]);
    assert_eq!(counts(line(&c, "townships", "140427100")), [6, 4, 3, 3, 2]);
    assert!((c["total"]["coverage"].as_f64().unwrap() - 5.0 / 8.0).abs() < 1e-9);

    // A township sees the county's round, cut to its own villages.
    let longquan = app.login("longquan").await;
    let (_, l) = longquan.get("/api/v1/testing/rounds?state=open").await;
    assert_eq!(l["rounds"].as_array().unwrap().len(), 1, "{l}");
    let (_, c) = longquan.get(&format!("/api/v1/testing/rounds/{rid}")).await;
    assert_eq!(counts(&c["total"]), [6, 4, 3, 3, 2], "{c}");
    assert!(c["villages"].as_array().unwrap().iter().all(|v| v["code"].as_str().unwrap().starts_with("140427100")));
    let (_, m) = app.login("baichi").await.get(&format!("/api/v1/testing/rounds/{rid}/missing")).await;
    assert_eq!(m["missing"].as_array().unwrap().len(), 1);
    assert_eq!(m["missing"][0]["person_id"].as_str(), Some(p[7].as_str()));

    // The missing list: masked in JSON and in the plain export.
    let (_, m) = cmd.get(&format!("/api/v1/testing/rounds/{rid}/missing?village={NANGUAN}")).await;
    let missing: Vec<&str> = m["missing"].as_array().unwrap().iter().map(|x| x["person_id"].as_str().unwrap()).collect();
    assert_eq!(missing, [p[3].as_str()]);
    assert!(m["missing"][0]["document_masked"].as_str().unwrap().contains('*'));
    let (s, e) = cmd.get(&format!("/api/v1/testing/rounds/{rid}/missing?village=140427101")).await;
    assert_eq!((s, e["fields"]["village"]["code"].as_str()), (StatusCode::OK, None), "a township inside the county round is fine: {e}");
    let sheet = |s: &Session, q: String| {
        let r = s.raw(reqwest::Method::GET, &format!("/api/v1/testing/rounds/{rid}/missing/export{q}"));
        async move {
            let r = r.send().await.unwrap();
            let status = r.status();
            (status, r.bytes().await.unwrap().to_vec())
        }
    };
    let (s, bytes) = sheet(&cmd, String::new()).await;
    assert_eq!(s, StatusCode::OK);
    let rows = baton_store::sheet::read_sheet(&bytes).unwrap();
    assert_eq!(rows.len(), 4, "header and three missing");
    let docs: Vec<String> = rows[1..].iter().map(|r| r.1[4].text()).collect();
    assert!(docs.iter().all(|d| d.contains('*')), "{docs:?}");
    // In full: only with the right, and audited.
    let leader = app.login("leader").await;
    assert_eq!(sheet(&leader, "?reveal=true".into()).await.0, StatusCode::FORBIDDEN);
    let (s, bytes) = sheet(&cmd, format!("?reveal=true&village={NANGUAN}")).await;
    assert_eq!(s, StatusCode::OK);
    let rows = baton_store::sheet::read_sheet(&bytes).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[1].1[4].text(), rows[1].1[5].text()), (id_number(3), "13900000003".to_string()));
    let (_, a) = cmd.get("/api/v1/audit?action=testing.round.export_missing").await;
    let revealed: Vec<bool> = a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str::<Value>(e["detail"].as_str().unwrap()).unwrap()["revealed"].as_bool().unwrap())
        .collect();
    assert_eq!(revealed, [true, false], "{a}");

    // The page: totals, per township and per village, the export links.
    let (s, html) = cmd.get(&format!("/rounds/{rid}")).await;
    let html = html.as_str().unwrap().to_string();
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains("第一轮全员核酸") && html.contains("南关村委会") && html.contains("round-townships") && html.contains("round-export-reveal"),
        "{html}"
    );
    let (s, html) = leader.get(&format!("/rounds/{rid}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!html.as_str().unwrap().contains("round-export-reveal"), "no reveal link without the right");
    let (s, html) = cmd.get("/rounds").await;
    assert!(s.is_success() && html.as_str().unwrap().contains("round-form"));

    // After the window a round takes no more tubes.
    app.clock.advance(Duration::hours(25));
    let (cmd, sampler) = (app.login("commander").await, app.login("sampler").await);
    let (s, e) = sampler.post("/api/v1/testing/tubes", json!({"barcode": "RD-LATE", "round_id": rid, "members": [{"person_id": p[3]}]})).await;
    assert_eq!((s, e["fields"]["round_id"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("round_closed")), "{e}");
    let (_, l) = cmd.get("/api/v1/testing/rounds?state=closed").await;
    assert_eq!(l["rounds"][0]["id"].as_str(), Some(rid.as_str()));
    app.stop().await;
}
both!(a_round_counts_expected_sampled_resulted_per_village_in_scope, coverage);

async fn planning(b: Backend) {
    let app = spawn_app(b).await;
    let cmd = app.login("commander").await;
    let sampler = app.login("sampler").await;
    let lab = app.login("lab").await;
    let lab_id = unit(&cmd, "壶关县人民医院核酸检测实验室").await;
    // Nobody tested yet: no suggestion.
    let (s, v) = cmd.get("/api/v1/testing/planning").await;
    assert_eq!((s, v["tested"].as_i64(), v["prevalence_source"].as_str()), (StatusCode::OK, Some(0), Some("none")), "{v}");
    assert!(v["suggested"].is_null());
    // 100 persons in ten pools of 10; one pool positive, its single-tube re-tests find one case: p = 1%.
    let mut rows = Vec::new();
    let mut pool = Vec::new();
    for t in 0..10u32 {
        let members: Vec<Value> =
            (0..10u32).map(|i| json!({"name": format!("居民{}", t * 10 + i), "document_number": id_number(t * 10 + i)})).collect();
        let barcode = format!("PL-{t:04}");
        let (s, v) = sampler.post("/api/v1/testing/tubes", json!({"barcode": barcode, "pool_size": 10, "members": members})).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        if t == 3 {
            pool = v["member_list"].as_array().unwrap().iter().map(|m| m["person_id"].as_str().unwrap().to_string()).collect();
        }
        rows.push((barcode, if t == 3 { "positive" } else { "negative" }));
    }
    let refs: Vec<(&str, &str)> = rows.iter().map(|(b, r)| (b.as_str(), *r)).collect();
    result(&sampler, &lab, &lab_id, &refs).await;
    app.clock.advance(Duration::hours(1));
    let mut rechecks = Vec::new();
    for (i, m) in pool.iter().enumerate() {
        let b = format!("PL-R{i:02}");
        let (s, v) = sampler.post("/api/v1/testing/tubes", json!({"barcode": b, "purpose": "recheck", "members": [{"person_id": m}]})).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        rechecks.push((b, if i == 4 { "positive" } else { "negative" }));
    }
    let refs: Vec<(&str, &str)> = rechecks.iter().map(|(b, r)| (b.as_str(), *r)).collect();
    result(&sampler, &lab, &lab_id, &refs).await;

    let (s, v) = cmd.get("/api/v1/testing/planning?area=140427").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!((v["tested"].as_i64(), v["positive"].as_i64(), v["in_positive_pools"].as_i64()), (Some(100), Some(1), Some(10)), "{v}");
    assert!((v["positivity"].as_f64().unwrap() - 0.01).abs() < 1e-12);
    // Dorfman (1943): at p = 1% the best pool is 11, about 0.196 tests per person; of the sizes
    // the policy allows (1, 5, 10, 20) it is 10.
    assert_eq!(v["best"]["pool_size"].as_u64(), Some(11), "{v}");
    assert!((v["best"]["tests_per_person"].as_f64().unwrap() - 0.1956).abs() < 0.0005, "{v}");
    assert_eq!(v["suggested"]["pool_size"].as_u64(), Some(10));
    assert!((v["suggested"]["tests_per_person"].as_f64().unwrap() - (0.1 + 1.0 - 0.99f64.powi(10))).abs() < 1e-9);
    let allowed: Vec<u64> = v["allowed"].as_array().unwrap().iter().map(|c| c["pool_size"].as_u64().unwrap()).collect();
    assert_eq!(allowed, [1, 5, 10, 20]);
    assert_eq!(v["allowed"][0]["tests_per_person"].as_f64(), Some(1.0));
    // At p = 0.1%: 32, about 0.063 (a what-if; the measured positivity stays reported).
    let (_, v) = cmd.get("/api/v1/testing/planning?prevalence=0.001").await;
    assert_eq!(
        (v["prevalence_source"].as_str(), v["best"]["pool_size"].as_u64(), v["suggested"]["pool_size"].as_u64()),
        (Some("given"), Some(32), Some(20))
    );
    assert!((v["best"]["tests_per_person"].as_f64().unwrap() - 0.0628).abs() < 0.0005, "{v}");
    assert!((v["positivity"].as_f64().unwrap() - 0.01).abs() < 1e-12);
    // Another township has no results: nothing to estimate from; bad input is refused.
    let (_, v) = cmd.get("/api/v1/testing/planning?area=140427101").await;
    assert_eq!((v["tested"].as_i64(), v["prevalence_source"].as_str()), (Some(0), Some("none")));
    for (q, field) in [("prevalence=0", "prevalence"), ("prevalence=0.9", "prevalence"), ("days=0", "days"), ("area=99", "area")] {
        let (s, e) = cmd.get(&format!("/api/v1/testing/planning?{q}")).await;
        assert_eq!((s, e["fields"][field].is_object()), (StatusCode::UNPROCESSABLE_ENTITY, true), "{q}: {e}");
    }
    // For a round of 龙泉镇: the persons still to sample, in tubes of the suggested size.
    for i in 0..25u32 {
        resident(&cmd, 500 + i, DONGJIE).await;
    }
    app.clock.advance(Duration::minutes(1));
    let (_, round) = cmd.post("/api/v1/testing/rounds", json!({"name": "龙泉镇第二轮", "area": "140427100"})).await;
    let (_, v) = cmd.get(&format!("/api/v1/testing/planning?round_id={}", round["id"].as_str().unwrap())).await;
    assert_eq!((v["area"].as_str(), v["to_sample"].as_i64(), v["tubes_needed"].as_i64()), (Some("140427100"), Some(125), Some(13)), "{v}");
    let (s, html) = cmd.get(&format!("/rounds/{}?prevalence=0.1", round["id"].as_str().unwrap())).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.as_str().unwrap().contains("round-plan") && html.as_str().unwrap().contains("0.063"), "the what-if shows Dorfman's figure");
    // A week later the window holds no results.
    app.clock.advance(Duration::days(8));
    let cmd = app.login("commander").await;
    let (_, v) = cmd.get("/api/v1/testing/planning?days=7").await;
    assert_eq!(v["tested"].as_i64(), Some(0), "{v}");
    app.stop().await;
}
both!(planning_suggests_dorfman_pool_sizes_from_recent_positivity, planning);

async fn overdue_retests(b: Backend) {
    let app = spawn_app(b).await;
    let cmd = app.login("commander").await;
    let sampler = app.login("sampler").await;
    let lab = app.login("lab").await;
    let lab_id = unit(&cmd, "壶关县人民医院核酸检测实验室").await;
    let members: Vec<Value> = (0..5u32).map(|i| json!({"name": format!("居民{i}"), "document_number": id_number(700 + i)})).collect();
    let (_, pool) = sampler.post("/api/v1/testing/tubes", json!({"barcode": "OR-P5", "pool_size": 5, "members": members})).await;
    let ids: Vec<String> = pool["member_list"].as_array().unwrap().iter().map(|m| m["person_id"].as_str().unwrap().to_string()).collect();
    result(&sampler, &lab, &lab_id, &[("OR-P5", "positive")]).await;
    let sweep = |app: &TestApp| {
        let (store, t) = (app.store.clone(), now(app));
        async move { (baton_store::testing::sweep(&store, t).await.unwrap(), baton_store::alerts::sweep(&store, t).await.unwrap()) }
    };
    assert_eq!(sweep(&app).await.0.retests_overdue, 0, "nothing is due yet");
    // Two members are re-tested in time; three are not sampled by the 4 h deadline.
    app.clock.advance(Duration::hours(2));
    for (i, id) in ids.iter().take(2).enumerate() {
        let (s, v) =
            sampler.post("/api/v1/testing/tubes", json!({"barcode": format!("OR-R{i}"), "purpose": "recheck", "members": [{"person_id": id}]})).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    app.clock.advance(Duration::hours(1) + Duration::minutes(59));
    assert_eq!(sweep(&app).await.0.retests_overdue, 0, "due at 4 h, not before");
    app.clock.advance(Duration::minutes(2));
    assert_eq!(sweep(&app).await.0.retests_overdue, 3);
    assert_eq!(sweep(&app).await.0.retests_overdue, 0, "raised once");
    let (_, a) = cmd.get("/api/v1/alerts?kind=retest_overdue").await;
    let alerts = a["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 3, "{a}");
    assert!(
        alerts
            .iter()
            .all(|x| x["recipient_name"] == "龙泉镇人民政府" && x["level"] == 0 && x["emergency"] == true && x["subject_kind"] == "retest_order"),
        "{a}"
    );
    assert!(alerts.iter().all(|x| x["plate"].as_str().unwrap().contains('*')), "the subject names the person, masked: {a}");
    // The township sees them; unacknowledged they climb to the command office.
    let (_, t) = app.login("longquan").await.get("/api/v1/alerts?kind=retest_overdue").await;
    assert_eq!(t["alerts"].as_array().unwrap().len(), 3);
    app.clock.advance(Duration::minutes(31));
    assert_eq!(sweep(&app).await.1.escalated, 3);
    let (_, a) = cmd.get("/api/v1/alerts?kind=retest_overdue").await;
    assert!(a["alerts"].as_array().unwrap().iter().all(|x| x["recipient_name"] == "壶关县疫情防控指挥部办公室" && x["level"] == 2), "{a}");
    app.stop().await;
}
both!(overdue_retest_orders_raise_alerts_to_the_township, overdue_retests);
