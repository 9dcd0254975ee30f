//! Alerts end with what they watched, on the manual clock: the change that mends a link or ends
//! a trip closes its alerts (or, for an emergency, stops their climb) with the reason, and the
//! ladder never climbs for a settled subject; a unit holds one open alert per subject.
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
    let first17 = format!("140427{}{:02}{:02}{:03}", 1960 + seq, 1 + seq, 1 + seq, seq);
    let c = baton_domain::ident::IdNumber::check_char(first17.as_bytes()) as char;
    format!("{first17}{c}")
}

async fn sweep(app: &TestApp) -> baton_store::alerts::SweepReport {
    baton_store::alerts::sweep(&app.store, now(app)).await.unwrap()
}

fn crew(code: &str) -> Value {
    json!([{"name": "张师傅", "id_number": "11010519491231002X", "phone": "13912345678", "health_code": code}])
}

async fn check_in(app: &TestApp, cp: &Session, dest: &str, plate: &str, code: &str) -> String {
    let body = json!({"plate": plate, "destination_id": dest, "eta": (now(app) + Duration::hours(1)).to_rfc3339(), "crew": crew(code),
                      "test_taken_at": (now(app) - Duration::hours(10)).to_rfc3339(), "risk": "none", "landing_tube": format!("LT-{}", &plate[plate.len() - 5..])});
    let (s, v) = cp.post("/api/v1/trips/check-in", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

async fn act(s: &Session, id: &str, action: Value) {
    let (st, v) = s.post(&format!("/api/v1/trips/{id}/actions"), action).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

/// The trip's alerts of `kind`, as the command office sees them.
async fn alerts_of(cmd: &Session, trip: &str, kind: &str) -> Vec<Value> {
    let (_, v) = cmd.get(&format!("/api/v1/alerts?trip_id={trip}&kind={kind}")).await;
    v["alerts"].as_array().unwrap_or_else(|| panic!("{v}")).clone()
}

/// The one alert of `kind` on the trip: closed by the system with `reason`, at level 0.
async fn closed_with(cmd: &Session, trip: &str, kind: &str, reason: &str) {
    let a = alerts_of(cmd, trip, kind).await;
    assert_eq!(a.len(), 1, "{a:?}");
    let a = &a[0];
    assert_eq!((a["stop_reason"].as_str(), a["resolved_by"].as_str(), a["level"].as_i64()), (Some(reason), Some("system"), Some(0)), "{a}");
    assert!(a["resolved_at"].is_string() && a["stopped_at"].is_string() && a["escalate_at"].is_null(), "{a}");
}

async fn trip_alerts_end(b: Backend) {
    let app = spawn_app(b).await;
    let cmd = app.login("commander").await;
    let cp = app.login("checkpoint").await;
    let enterprise = app.login("enterprise").await;
    let escort = app.login("escort").await;
    let dest = unit(&cmd, "壶关县太行钢材贸易有限公司").await;
    let escort_unit = unit(&cmd, "壶关县交通运输局").await;
    let hotel = unit(&cmd, "壶关县集中隔离点(一)").await;
    // Four trucks, each with a broken link: a pre-report never checked in, a late arrival, an
    // isolate crew not disposed of, an escort handoff nobody accepts.
    let (s, r) = enterprise
        .post("/api/v1/trips", json!({"plate": "晋D30001", "destination_id": dest, "expected_at": (now(&app) + Duration::minutes(30)).to_rfc3339(), "crew": crew("green")}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let reported = r["id"].as_str().unwrap().to_string();
    let late = check_in(&app, &cp, &dest, "晋D30002", "green").await;
    let isolate = check_in(&app, &cp, &dest, "晋D30003", "red").await;
    let handoff = check_in(&app, &cp, &dest, "晋D30004", "yellow").await;
    act(&cp, &handoff, json!({"action": "propose_handoff", "to": escort_unit, "purpose": "escort"})).await;
    app.clock.advance(Duration::minutes(125));
    let r = sweep(&app).await;
    assert_eq!(r.raised, 5, "not checked in, no arrival ×2, not disposed, handoff: {r:?}");
    // Each link is mended, or its trip ended, before anybody acknowledged: the alert ends in the
    // same transaction, with the reason, before any sweep.
    act(&enterprise, &reported, json!({"action": "cancel", "reason": "订单取消"})).await;
    closed_with(&cmd, &reported, "not_checked_in", "trip_cancelled").await;
    act(&enterprise, &late, json!({"action": "confirm_arrival"})).await;
    closed_with(&cmd, &late, "no_arrival", "arrived").await;
    act(&escort, &handoff, json!({"action": "accept_handoff"})).await;
    closed_with(&cmd, &handoff, "handoff_not_accepted", "handoff_accepted").await;
    assert!(alerts_of(&cmd, &handoff, "no_arrival").await[0]["resolved_at"].is_null(), "the escorted truck is still late");
    let hotel_staff = baton_store::Principal { unit_id: Some(hotel.parse().unwrap()), ..baton_store::Principal::system("test") };
    act(&cp, &isolate, json!({"action": "propose_handoff", "to": hotel, "purpose": "quarantine"})).await;
    let t = baton_store::trips::act(&app.store, &hotel_staff, isolate.parse().unwrap(), json!({"action": "accept_handoff"})).await.unwrap();
    assert_eq!(t.trip.state.as_str(), "isolated");
    closed_with(&cmd, &isolate, "not_disposed", "trip_isolated").await;
    let (_, v) = cmd.get("/api/v1/audit?action=alert.close").await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 4, "each end is audited: {v}");
    // The late truck leaves and is never scanned out; the exit scan ends that alert too.
    act(&enterprise, &late, json!({"action": "confirm_departure"})).await;
    app.clock.advance(Duration::minutes(121));
    // (The escorted truck, still late, is now the escort's to answer for: raised to it as well.)
    assert_eq!(sweep(&app).await.raised, 2);
    act(&cp, &late, json!({"action": "exit_scan"})).await;
    closed_with(&cmd, &late, "no_exit", "trip_exited").await;
    // Hours later nothing has climbed but the one link still broken (the escorted truck's arrival).
    app.clock.advance(Duration::hours(3));
    assert_eq!(sweep(&app).await.settled, 0, "each was ended when it was settled");
    for (trip, kind) in
        [(&reported, "not_checked_in"), (&late, "no_arrival"), (&late, "no_exit"), (&isolate, "not_disposed"), (&handoff, "handoff_not_accepted")]
    {
        assert_eq!(alerts_of(&cmd, trip, kind).await[0]["level"], 0, "{kind}");
    }
    assert!(alerts_of(&cmd, &handoff, "no_arrival").await.iter().any(|a| a["level"] == 2));
    // An alert left open on a settled subject (written before this rule) is ended by the
    // ladder at its next rung instead of climbing.
    app.store
        .db
        .execute(baton_store::q!(
            "UPDATE alerts SET resolved_at = NULL, resolved_by = NULL, stopped_at = NULL, stop_reason = NULL, escalate_at = $2 WHERE trip_id = $1",
            uuid::Uuid::parse_str(&reported).unwrap(),
            now(&app)
        ))
        .await
        .unwrap();
    let r = sweep(&app).await;
    assert_eq!((r.escalated, r.settled), (0, 1), "{r:?}");
    closed_with(&cmd, &reported, "not_checked_in", "trip_cancelled").await;
    app.stop().await;
}
both!(alerts_end_with_their_trip_or_their_mended_link_and_never_climb_after, trip_alerts_end);

/// Open alerts held twice by one unit for one subject and kind: (unit, subject, kind, how many).
async fn open_twice(app: &TestApp) -> Vec<(String, String, String, i64)> {
    let rows = app
        .store
        .db
        .fetch_all(baton_store::q!(
            "SELECT u.name, a.subject, a.kind, COUNT(*) AS n FROM alerts a JOIN units u ON u.id = a.recipient_id WHERE a.resolved_at IS NULL
             GROUP BY u.name, a.subject_kind, a.subject_id, a.subject, a.kind HAVING COUNT(*) > 1"
        ))
        .await
        .unwrap();
    rows.iter().map(|r| (r.get("name").unwrap(), r.get("subject").unwrap(), r.get("kind").unwrap(), r.get("n").unwrap())).collect()
}

async fn one_open_alert_per_unit_and_subject(b: Backend) {
    let app = spawn_app(b).await;
    let cmd = app.login("commander").await;
    let cp = app.login("checkpoint").await;
    let sampler = app.login("sampler").await;
    let lab = app.login("lab").await;
    let lab_id = unit(&cmd, "壶关县人民医院核酸检测实验室").await;
    let dest = unit(&cmd, "壶关县太行钢材贸易有限公司").await;
    let office = unit(&cmd, "壶关县疫情防控指挥部办公室").await;
    // A positive pool of residents, and a positive landing test of a truck's crew.
    let members: Vec<Value> = (0..5).map(|i| json!({"name": format!("居民{i}"), "document_number": id_number(i)})).collect();
    let (s, v) = sampler.post("/api/v1/testing/tubes", json!({"barcode": "HG-P5", "pool_size": 5, "members": members})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let pool = v["id"].as_str().unwrap().to_string();
    let trip = check_in(&app, &cp, &dest, "晋D40001", "green").await;
    // Check-in may register the landing tube itself; open it here only where it did not.
    if cp.get("/api/v1/testing/tubes/lookup?barcode=LT-40001").await.0 != StatusCode::OK {
        let body = json!({"barcode": "LT-40001", "trip_id": trip, "members": [{"name": "张师傅", "document_number": "11010519491231002X"}]});
        let (s, v) = cp.post("/api/v1/testing/tubes", body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (s, v) = sampler.post("/api/v1/testing/batches", json!({"lab_id": lab_id, "barcodes": ["HG-P5"]})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = cp.post("/api/v1/testing/batches", json!({"lab_id": lab_id, "barcodes": ["LT-40001"]})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let rows = json!([{"barcode": "HG-P5", "result": "positive", "ct": 30.0}, {"barcode": "LT-40001", "result": "positive", "ct": 22.0}]);
    let (s, v) = lab.post("/api/v1/testing/results", json!({"results": rows})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Nobody acknowledges: every rung runs out, and the township's and the custodian's alerts
    // climb toward the command office, which was alerted at once.
    app.clock.advance(Duration::hours(3));
    let r = sweep(&app).await;
    assert!(r.merged >= 3, "the pool's township, the trip's township and its custodian: {r:?}");
    sweep(&app).await;
    assert_eq!(open_twice(&app).await, [], "one open alert per unit, subject and kind");
    let open_at_office = |subject: String, kind: &'static str| {
        let cmd = &cmd;
        let office = office.clone();
        async move {
            let (_, v) = cmd.get(&format!("/api/v1/alerts?subject_id={subject}&kind={kind}&open=true")).await;
            let all = v["alerts"].as_array().unwrap().clone();
            let (at_office, below): (Vec<Value>, Vec<Value>) = all.into_iter().partition(|a| a["recipient_id"] == office.as_str());
            (at_office, below)
        }
    };
    for (subject, kind) in [(pool.clone(), "positive_pool"), (trip, "positive_landing")] {
        let (at_office, below) = open_at_office(subject, kind).await;
        assert_eq!(at_office.len(), 1, "{at_office:?}");
        // The alerts below stay open where they are, for their units to act on, and name the one that carries on.
        assert!(!below.is_empty());
        for a in &below {
            assert_eq!((a["stop_reason"].as_str(), a["merged_into"].as_str()), (Some("merged"), at_office[0]["id"].as_str()), "{a}");
            assert!(a["resolved_at"].is_null() && a["escalate_at"].is_null() && a["level"].as_i64() < Some(2), "{a}");
        }
    }
    // The database holds the rule itself: a second open alert for a unit, subject and kind is refused.
    let dup = app
        .store
        .db
        .execute(baton_store::q!(
            "UPDATE alerts SET recipient_id = $1 WHERE subject_id = $2 AND recipient_id <> $1 AND resolved_at IS NULL",
            uuid::Uuid::parse_str(&office).unwrap(),
            uuid::Uuid::parse_str(&pool).unwrap()
        ))
        .await;
    assert!(dup.is_err(), "{dup:?}");
    app.stop().await;
}
both!(a_unit_holds_one_open_alert_per_subject_and_escalation_merges_into_it, one_open_alert_per_unit_and_subject);
