//! The freight loop through the API on the manual clock: pre-report, check-in with
//! classification, escort, destination, exit; every breach kind raised by the deadline
//! watcher and escalated up the ladder; out-of-order and foreign transitions refused.
use baton_testkit::{Backend, Session, TestApp, both, spawn_app};
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn unit(s: &Session, name: &str) -> String {
    let (_, v) = s.get(&format!("/api/v1/units?q={name}")).await;
    v["units"].as_array().unwrap().iter().find(|u| u["name"] == name).unwrap_or_else(|| panic!("no unit {name}: {v}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn now(app: &TestApp) -> chrono::DateTime<chrono::Utc> {
    baton_domain::clock::Clock::now(&*app.clock)
}

/// A landing tube's barcode of its own for each truck (a barcode names one tube).
fn tube_of(plate: &str) -> String {
    format!("LT-{}", plate.chars().filter(char::is_ascii_alphanumeric).collect::<String>())
}

fn crew(code: &str) -> Value {
    json!([{"name": "张师傅", "id_number": "11010519491231002X", "phone": "13912345678", "health_code": code}])
}

struct Parties {
    cmd: Session,
    checkpoint: Session,
    escort: Session,
    enterprise: Session,
    dest: String,
    escort_unit: String,
    checkpoint_unit: String,
}

async fn parties(app: &TestApp) -> Parties {
    let cmd = app.login("commander").await;
    let dest = unit(&cmd, "壶关县太行钢材贸易有限公司").await;
    let escort_unit = unit(&cmd, "壶关县交通运输局").await;
    let checkpoint_unit = unit(&cmd, "龙泉高速出口卡口").await;
    Parties {
        checkpoint: app.login("checkpoint").await,
        escort: app.login("escort").await,
        enterprise: app.login("enterprise").await,
        cmd,
        dest,
        escort_unit,
        checkpoint_unit,
    }
}

async fn check_in(app: &TestApp, p: &Parties, plate: &str, code: &str, eta_h: i64) -> Value {
    let body = json!({"plate": plate, "destination_id": p.dest, "eta": (now(app) + Duration::hours(eta_h)).to_rfc3339(), "crew": crew(code),
                      "test_taken_at": (now(app) - Duration::hours(10)).to_rfc3339(), "risk": "none", "landing_tube": tube_of(plate)});
    let (s, v) = p.checkpoint.post("/api/v1/trips/check-in", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

async fn act(s: &Session, id: &str, action: Value) -> (StatusCode, Value) {
    s.post(&format!("/api/v1/trips/{id}/actions"), action).await
}

async fn closed_loop_walk(b: Backend) {
    let app = spawn_app(b).await;
    let p = parties(&app).await;
    // The cargo owner pre-reports; the checkpoint finds it by plate.
    let (s, r) = p.enterprise.post("/api/v1/trips", json!({"plate": "晋D12345", "destination_id": p.dest, "expected_at": (now(&app) + Duration::hours(2)).to_rfc3339(), "crew": crew("green")})).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["state"], "reported");
    assert_eq!(r["crew"][0]["id_number"], "110105********002X");
    let v = check_in(&app, &p, "晋D12345", "yellow", 3).await;
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(id, r["id"].as_str().unwrap(), "the reported trip is checked in, not a new one");
    assert_eq!(v["class"], "closed_loop");
    assert_eq!(v["reasons"][0]["code"], "yellow_code");
    assert_eq!(v["custodian"], p.checkpoint_unit);
    assert_eq!(v["landing_tube"], "LT-D12345");
    // Each crew member gets a signed code that opens without an account; a forged one does not.
    let code = v["crew"][0]["code"].as_str().unwrap().to_string();
    let page = reqwest::get(app.url(&format!("/code/{code}"))).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("晋D12345") && html.contains("data-class=\"closed_loop\""), "{html}");
    assert!(!html.contains("11010519491231002X") && !html.contains("13912345678"), "no personal data on the code page");
    let forged = format!("{}.{}", code.split('.').next().unwrap(), "A".repeat(86));
    assert_eq!(reqwest::get(app.url(&format!("/code/{forged}"))).await.unwrap().status(), StatusCode::CONFLICT);
    // Exit before arrival is refused and changes nothing.
    let (s, e) = act(&p.checkpoint, &id, json!({"action": "exit_scan"})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(e["error"].as_str().unwrap().starts_with("exit_before"), "{e}");
    // Checkpoint → escort: proposed, then accepted by the escort only.
    let (s, v) = act(&p.checkpoint, &id, json!({"action": "propose_handoff", "to": p.escort_unit, "purpose": "escort"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["custodian"], p.checkpoint_unit, "the sender stays custodian until acceptance");
    let (s, e) = act(&p.enterprise, &id, json!({"action": "accept_handoff"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "a handoff meant for another unit");
    assert!(e["error"].as_str().unwrap().contains("not_for_you") || e["error"] == "no_pending_handoff", "{e}");
    let (s, v) = act(&p.escort, &id, json!({"action": "accept_handoff"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "escort_assigned");
    assert_eq!(v["custodian"], p.escort_unit);
    let (s, _) = act(&p.escort, &id, json!({"action": "accept_handoff"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "a second acceptance");
    // Destination confirms arrival and departure; the exit checkpoint closes the loop.
    app.clock.advance(Duration::hours(1));
    let (s, v) = act(&p.enterprise, &id, json!({"action": "confirm_arrival"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "at_destination");
    assert_eq!(v["custodian"], p.dest);
    app.clock.advance(Duration::hours(2));
    let (_, v) = act(&p.enterprise, &id, json!({"action": "confirm_departure"})).await;
    assert_eq!(v["state"], "departed");
    app.clock.advance(Duration::minutes(40));
    let (s, v) = act(&p.checkpoint, &id, json!({"action": "exit_scan"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "exited");
    assert!(v["deadline"].is_null());
    // The chain: who held it, from when to when, with no gap.
    let chain = v["chain"].as_array().unwrap();
    let holders: Vec<&str> = chain.iter().map(|s| s["unit"].as_str().unwrap_or_else(|| panic!("{chain:?}"))).collect();
    assert_eq!(holders, [p.enterprise.body["user"]["unit_id"].as_str().unwrap(), &p.checkpoint_unit, &p.escort_unit, &p.dest, &p.checkpoint_unit]);
    for w in chain.windows(2) {
        assert_eq!(w[0]["to"], w[1]["from"]);
    }
    // A closed trip cannot change; nothing was breached, so the watcher raises nothing.
    let (s, e) = act(&p.enterprise, &id, json!({"action": "confirm_departure"})).await;
    assert_eq!((s, e["error"].as_str()), (StatusCode::CONFLICT, Some("trip_closed")));
    app.clock.advance(Duration::days(2));
    let r = baton_store::alerts::sweep(&app.store, now(&app)).await.unwrap();
    assert_eq!(r.raised, 0);
    let cmd = app.login("commander").await;
    let (_, a) = cmd.get(&format!("/api/v1/audit?object_id={id}")).await;
    let actions: Vec<&str> = a["entries"].as_array().unwrap().iter().rev().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "trip.report",
            "trip.check_in",
            "trip.propose_handoff",
            "trip.accept_handoff",
            "trip.confirm_arrival",
            "trip.confirm_departure",
            "trip.exit_scan"
        ]
    );
    app.stop().await;
}
both!(a_closed_loop_truck_walks_from_check_in_to_exit, closed_loop_walk);

async fn classes_and_retries(b: Backend) {
    let app = spawn_app(b).await;
    let p = parties(&app).await;
    let v = check_in(&app, &p, "晋D00001", "green", 2).await;
    assert_eq!(v["class"], "pass");
    let v = check_in(&app, &p, "晋D00002", "red", 2).await;
    assert_eq!(v["class"], "isolate");
    assert_eq!(v["reasons"][0]["code"], "red_code");
    // The same truck again: refused, no second trip.
    let body = json!({"plate": "晋D00001", "destination_id": p.dest, "eta": (now(&app) + Duration::hours(2)).to_rfc3339(), "crew": crew("green"), "risk": "none", "landing_tube": "LT-2"});
    let (s, e) = p.checkpoint.post("/api/v1/trips/check-in", body.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["fields"]["plate"]["code"], "trip_open_for_plate");
    // A retried check-in with its idempotency key returns the first answer.
    let body = json!({"plate": "晋DF12345", "destination_id": p.dest, "eta": (now(&app) + Duration::hours(2)).to_rfc3339(), "crew": crew("green"), "risk": "low", "landing_tube": "LT-3"});
    let send = || p.checkpoint.raw(reqwest::Method::POST, "/api/v1/trips/check-in").header("idempotency-key", "ci-1").json(&body).send();
    let a: Value = send().await.unwrap().json().await.unwrap();
    let r2 = send().await.unwrap();
    assert_eq!(r2.headers()["idempotent-replay"], "true");
    let b2: Value = r2.json().await.unwrap();
    assert_eq!(a["id"], b2["id"]);
    assert_eq!(a["class"], "closed_loop");
    let (_, list) = p.cmd.get("/api/v1/trips?plate=晋DF12345").await;
    assert_eq!(list["trips"].as_array().unwrap().len(), 1);
    // Bad input: plates, ID numbers, colours, unknown destination — field errors, nothing written.
    let bad = json!({"plate": "晋D1234", "destination_id": uuid::Uuid::now_v7(), "eta": (now(&app) + Duration::hours(2)).to_rfc3339(),
                     "crew": [{"name": "", "id_number": "110105194912310021", "health_code": "blue"}], "risk": "none", "landing_tube": ""});
    let (s, e) = p.checkpoint.post("/api/v1/trips/check-in", bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    for f in ["plate", "destination_id", "crew[0].name", "crew[0].id_number", "crew[0].health_code", "landing_tube"] {
        assert!(e["fields"][f].is_object(), "no error for {f}: {e}");
    }
    // Only checkpoints check trucks in; the enterprise may not.
    let (s, _) = p
        .enterprise
        .post("/api/v1/trips/check-in", json!({"plate": "晋D00003", "eta": now(&app).to_rfc3339(), "risk": "none", "landing_tube": "x"}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, all) = p.cmd.get("/api/v1/trips").await;
    assert_eq!(all["trips"].as_array().unwrap().len(), 3);
    app.stop().await;
}
both!(check_in_classifies_and_retries_do_not_duplicate, classes_and_retries);

async fn whitelist_at_check_in(b: Backend) {
    let app = spawn_app(b).await;
    let p = parties(&app).await;
    let from = (now(&app) - Duration::days(1)).to_rfc3339();
    let until = (now(&app) + Duration::days(30)).to_rfc3339();
    for entry in [
        json!({"kind": "vehicle", "tier": "county", "plate": "晋D77777", "name": "太行钢贸车队", "valid_from": from, "valid_until": until}),
        json!({"kind": "driver", "tier": "county", "name": "张师傅", "id_number": "11010519491231002X", "phone": "13912345678", "valid_from": from, "valid_until": until}),
    ] {
        let (s, e) = p.cmd.post("/api/v1/whitelist", entry).await;
        assert_eq!(s, StatusCode::CREATED, "{e}");
        let id = e["id"].as_str().unwrap();
        let (s, r) = p.cmd.post(&format!("/api/v1/whitelist/{id}/review"), json!({"decision": "approve", "reason": "资料齐全"})).await;
        assert_eq!(s, StatusCode::OK, "{r}");
    }
    // No test certificate: whitelisted vehicle and crew go as `pass`, matched, not declared.
    let body = |plate: &str| json!({"plate": plate, "destination_id": p.dest, "eta": (now(&app) + Duration::hours(2)).to_rfc3339(), "crew": crew("green"), "risk": "none", "landing_tube": tube_of(plate)});
    let (s, v) = p.checkpoint.post("/api/v1/trips/check-in", body("晋D77777")).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["class"], "pass");
    assert_eq!(v["reasons"][0]["code"], "whitelisted");
    assert_eq!(v["whitelist"]["whitelisted"], true);
    // The same driver in a vehicle that is not listed: no test, so closed loop.
    let (_, v) = p.checkpoint.post("/api/v1/trips/check-in", body("晋D77778")).await;
    assert_eq!(v["class"], "closed_loop");
    assert_eq!(v["whitelist"]["whitelisted"], false);
    assert!(v["reasons"].as_array().unwrap().iter().any(|r| r["code"] == "no_test"));
    app.stop().await;
}
both!(the_whitelist_is_matched_at_check_in, whitelist_at_check_in);

async fn breaches(b: Backend) {
    let mut app = spawn_app(b).await;
    let p = parties(&app).await;
    let sweep = |app: &TestApp| {
        let store = app.store.clone();
        let t = now(app);
        async move { baton_store::alerts::sweep(&store, t).await.unwrap() }
    };
    // 1. Reported but never checked in.
    p.enterprise.post("/api/v1/trips", json!({"plate": "晋D10001", "destination_id": p.dest, "expected_at": (now(&app) + Duration::hours(1)).to_rfc3339(), "crew": crew("green")})).await;
    // 2. Checked in, never arrives (pass: ETA + 60 min slack).
    let noarr = check_in(&app, &p, "晋D10002", "green", 1).await["id"].as_str().unwrap().to_string();
    // 3. A handoff nobody accepts (30 min).
    let ho = check_in(&app, &p, "晋D10003", "yellow", 5).await["id"].as_str().unwrap().to_string();
    act(&p.checkpoint, &ho, json!({"action": "propose_handoff", "to": p.escort_unit, "purpose": "escort"})).await;
    // 4. Arrives and overstays (closed loop: 6 h).
    let over = check_in(&app, &p, "晋D10004", "yellow", 1).await["id"].as_str().unwrap().to_string();
    act(&p.checkpoint, &over, json!({"action": "propose_handoff", "to": p.escort_unit, "purpose": "escort"})).await;
    act(&p.escort, &over, json!({"action": "accept_handoff"})).await;
    let (s, v) = act(&p.enterprise, &over, json!({"action": "confirm_arrival"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // 5. Departs and is never seen at an exit (120 min).
    let noexit = check_in(&app, &p, "晋D10005", "green", 1).await["id"].as_str().unwrap().to_string();
    act(&p.enterprise, &noexit, json!({"action": "confirm_arrival"})).await;
    let (s, v) = act(&p.enterprise, &noexit, json!({"action": "confirm_departure"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(sweep(&app).await.raised, 0, "nothing is due yet");
    // A restart loses no pending deadline.
    app.restart().await;
    app.clock.advance(Duration::minutes(31));
    assert_eq!(sweep(&app).await.raised, 1, "the handoff acceptance");
    app.clock.advance(Duration::minutes(100));
    let r = sweep(&app).await;
    assert_eq!(r.raised, 3, "not checked in, no arrival, no exit: {r:?}");
    assert_eq!(sweep(&app).await.raised, 0, "raising is idempotent");
    app.clock.advance(Duration::hours(5));
    let kinds = |v: &Value| {
        let mut k: Vec<String> = v["alerts"].as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap().to_string()).collect();
        k.sort();
        k
    };
    sweep(&app).await;
    let cmd = app.login("commander").await;
    let (_, all) = cmd.get("/api/v1/alerts").await;
    // The unaccepted escort trip also missed its arrival.
    assert_eq!(kinds(&all), ["handoff_not_accepted", "no_arrival", "no_arrival", "no_exit", "not_checked_in", "overstay"]);
    let trips_of = |kind: &str| {
        let mut t: Vec<String> =
            all["alerts"].as_array().unwrap().iter().filter(|a| a["kind"] == kind).map(|a| a["trip_id"].as_str().unwrap().to_string()).collect();
        t.sort();
        t
    };
    let trip_of = |kind: &str| trips_of(kind).join(",");
    let mut both_late = vec![noarr.clone(), ho.clone()];
    both_late.sort();
    assert_eq!(trips_of("no_arrival"), both_late);
    assert_eq!(trip_of("handoff_not_accepted"), ho);
    assert_eq!(trip_of("overstay"), over);
    // Past the closed-loop limit the crew is handed to the destination's township: the
    // watcher proposed it on the custodian's behalf; the township must still accept.
    let (_, t) = cmd.get(&format!("/api/v1/trips/{over}")).await;
    let township = unit(&cmd, "壶关县经济技术开发区管理委员会").await;
    assert_eq!(t["pending"]["purpose"], "township", "{t}");
    assert_eq!(t["pending"]["to"], township.as_str());
    assert_eq!(t["custodian"], p.dest, "the destination stays answerable until the township accepts");
    assert_eq!(trip_of("no_exit"), noexit);
    // Each went first to the custodian; the unacknowledged ones climbed to the command office.
    let a = all["alerts"].as_array().unwrap().iter().find(|a| a["kind"] == "no_arrival" && a["trip_id"] == noarr.as_str()).unwrap();
    assert_eq!(a["custodian_id"], p.checkpoint_unit);
    assert_eq!(a["level"], 2);
    assert_eq!(a["recipient_name"], "壶关县疫情防控指挥部办公室");
    app.stop().await;
}
both!(every_breach_kind_is_raised_once_and_escalates, breaches);

async fn escalation_ladder(b: Backend) {
    let app = spawn_app(b).await;
    let p = parties(&app).await;
    let id = check_in(&app, &p, "晋D20001", "green", 1).await["id"].as_str().unwrap().to_string();
    let sweep = || baton_store::alerts::sweep(&app.store, now(&app));
    app.clock.advance(Duration::minutes(121));
    assert_eq!(sweep().await.unwrap().raised, 1);
    let (_, v) = p.checkpoint.get("/api/v1/alerts?mine=true").await;
    let alert = v["alerts"][0].clone();
    assert_eq!((alert["kind"].as_str(), alert["level"].as_i64()), (Some("no_arrival"), Some(0)));
    let aid = alert["id"].as_str().unwrap().to_string();
    // 30 min unacknowledged: to the checkpoint's supervising unit (交通物流专班).
    app.clock.advance(Duration::minutes(31));
    assert_eq!(sweep().await.unwrap().escalated, 1);
    let (_, v) = p.cmd.get(&format!("/api/v1/alerts?trip_id={id}")).await;
    assert_eq!(v["alerts"][0]["level"], 1);
    assert_eq!(v["alerts"][0]["recipient_name"], "交通物流专班");
    // Acknowledging stops the climb.
    let (s, v) = p.checkpoint.post(&format!("/api/v1/alerts/{aid}/acknowledge"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["acknowledged_by"], "checkpoint");
    app.clock.advance(Duration::hours(3));
    assert_eq!(sweep().await.unwrap().escalated, 0);
    // Resolving needs a note; a resolved alert stays resolved.
    let (s, e) = p.checkpoint.post(&format!("/api/v1/alerts/{aid}/resolve"), json!({"note": ""})).await;
    assert_eq!((s, e["fields"]["note"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("required")));
    let (s, v) = p.checkpoint.post(&format!("/api/v1/alerts/{aid}/resolve"), json!({"note": "司机手机没电，已联系上，车辆已到达"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["resolved_at"].is_string());
    assert_eq!(p.checkpoint.post(&format!("/api/v1/alerts/{aid}/resolve"), json!({"note": "again"})).await.0, StatusCode::CONFLICT);
    // A township outside the trip's locality and parties sees neither the trip nor its alert.
    let baichi = app.login("baichi").await;
    assert_eq!(baichi.get(&format!("/api/v1/trips/{id}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(baichi.get("/api/v1/alerts").await.1["alerts"].as_array().unwrap().len(), 0);
    assert_eq!(baichi.post(&format!("/api/v1/alerts/{aid}/acknowledge"), json!({})).await.0, StatusCode::NOT_FOUND);
    assert_eq!(act(&baichi, &id, json!({"action": "confirm_arrival"})).await.0, StatusCode::NOT_FOUND);
    app.stop().await;
}
both!(unacknowledged_alerts_climb_the_ladder_until_someone_acts, escalation_ladder);

async fn itinerary_at_check_in(b: Backend) {
    let app = spawn_app(b).await;
    let p = parties(&app).await;
    let day = |d: i64| (now(&app) + Duration::days(d)).format("%Y-%m-%d").to_string();
    let (s, a) = p.cmd.post("/api/v1/risk-areas", json!({"division": "太原市小店区", "level": "high", "from": day(-3)})).await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let body = |plate: &str, place: &str| {
        json!({"plate": plate, "destination_id": p.dest, "eta": (now(&app) + Duration::hours(2)).to_rfc3339(), "crew": crew("green"),
               "test_taken_at": (now(&app) - Duration::hours(5)).to_rfc3339(), "landing_tube": tube_of(plate),
               "itinerary": [{"place": place, "from": format!("{} 08:00", day(-2)), "to": format!("{} 20:00", day(-2))}]})
    };
    // A stay in the high-risk district itself: isolate, and the hit is recorded.
    let (s, v) = p.checkpoint.post("/api/v1/trips/check-in", body("晋D30001", "山西省太原市小店区")).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["class"], "isolate");
    assert_eq!(v["reasons"][0]["code"], "high_risk_stay");
    assert_eq!(v["risk_hits"][0]["division_code"], "140105");
    // A stay recorded only as the city: a possible hit, escorted rather than quarantined.
    let (_, v) = p.checkpoint.post("/api/v1/trips/check-in", body("晋D30002", "太原市")).await;
    assert_eq!(v["class"], "closed_loop");
    assert_eq!(v["risk_hits"][0]["coarse"], true);
    // Elsewhere, or a stay before the area was declared: no hit.
    let (_, v) = p.checkpoint.post("/api/v1/trips/check-in", body("晋D30003", "长治市潞州区")).await;
    assert_eq!(v["class"], "pass");
    // A place that matches no division is a field error, and nothing is written.
    let (s, e) = p.checkpoint.post("/api/v1/trips/check-in", body("晋D30004", "火星市")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["fields"]["itinerary[0].place"]["code"], "division_unknown");
    assert_eq!(p.cmd.get("/api/v1/trips?plate=晋D30004").await.1["trips"].as_array().unwrap().len(), 0);
    // A policy that reads coarse hits strictly: the same city-level stay is now a high-risk stay.
    let when = (now(&app) + Duration::minutes(5)).to_rfc3339();
    let (s, v) = p
        .cmd
        .post("/api/v1/policy", json!({"effective_from": when, "params": {"truck": {"coarse_hit_one_level_lower": false}}, "note": "严格"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    app.clock.advance(Duration::minutes(6));
    let (_, v) = p.checkpoint.post("/api/v1/trips/check-in", body("晋D30005", "太原市")).await;
    assert_eq!((v["class"].as_str(), v["risk_hits"][0]["coarse"].as_bool()), (Some("isolate"), Some(true)), "{v}");
    app.stop().await;
}
both!(the_itinerary_is_matched_against_risk_areas_at_check_in, itinerary_at_check_in);

async fn mismatches(b: Backend) {
    let app = spawn_app(b).await;
    let p = parties(&app).await;
    let (s, r) = p.enterprise.post("/api/v1/trips", json!({"plate": "晋D80001", "destination_id": p.dest, "expected_at": (now(&app) + Duration::hours(2)).to_rfc3339(), "crew": crew("green")})).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    let body = |plate: &str, id_number: &str| {
        json!({"plate": plate, "trip_id": id, "destination_id": p.dest, "eta": (now(&app) + Duration::hours(3)).to_rfc3339(),
               "crew": [{"name": "张师傅", "id_number": id_number, "health_code": "green"}],
               "test_taken_at": (now(&app) - Duration::hours(5)).to_rfc3339(), "landing_tube": tube_of(plate)})
    };
    // Checkpoint staff whose scope covers the pre-report (the county's) may name it by its id; a
    // unit-scoped checkpoint names only trips it is party to (see ids.rs).
    let admin = app.login("admin").await;
    let (s, u) = admin
        .post(
            "/api/v1/users",
            json!({"username": "cp_county", "display_name": "县卡口值守", "unit_id": p.checkpoint_unit, "role": "checkpoint_staff",
                   "scope_kind": "division", "scope_code": "140427", "password": "Checkpoint-county-1"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    let cp = app.login_with("cp_county", "Checkpoint-county-1").await.unwrap();
    // The checkpoint picks the pre-report, but another truck stands there: refused, raised at once to the reporter.
    let (s, e) = cp.post("/api/v1/trips/check-in", body("晋D80009", "11010519491231002X")).await;
    assert_eq!((s, e["fields"]["plate"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("plate_mismatch")), "{e}");
    let (_, a) = p.enterprise.get(&format!("/api/v1/alerts?trip_id={id}")).await;
    let a = &a["alerts"].as_array().unwrap();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!((a[0]["kind"].as_str(), a[0]["custodian_id"].as_str()), (Some("plate_mismatch"), p.enterprise.body["user"]["unit_id"].as_str()));
    assert_eq!(p.cmd.get(&format!("/api/v1/trips/{id}")).await.1["state"], "reported", "nothing changed");
    // The right truck with another driver: checked in as seen, and the identity mismatch is raised to the checkpoint.
    let (s, v) = cp.post("/api/v1/trips/check-in", body("晋D80001", "110105194912310038")).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, a) = p.cmd.get(&format!("/api/v1/alerts?trip_id={id}&kind=identity_mismatch")).await;
    assert_eq!(a["alerts"][0]["custodian_id"], p.checkpoint_unit, "{a}");
    // The same crew as reported raises nothing.
    let (_, r2) = p.enterprise.post("/api/v1/trips", json!({"plate": "晋D80002", "destination_id": p.dest, "expected_at": (now(&app) + Duration::hours(2)).to_rfc3339(), "crew": crew("green")})).await;
    let id2 = r2["id"].as_str().unwrap();
    let mut same = body("晋D80002", "11010519491231002X");
    same["trip_id"] = json!(id2);
    assert_eq!(cp.post("/api/v1/trips/check-in", same).await.0, StatusCode::CREATED);
    assert_eq!(p.cmd.get(&format!("/api/v1/alerts?trip_id={id2}")).await.1["alerts"].as_array().unwrap().len(), 0);
    app.stop().await;
}
both!(plate_and_identity_mismatches_raise_alerts_at_once, mismatches);

/// Issue 17, item 12: a truck that leaves by another checkpoint than the one it entered by is
/// scanned out there by its plate (API and page), audited, the baton handed to that checkpoint.
async fn exit_elsewhere(b: Backend) {
    let app = spawn_app(b).await;
    let p = parties(&app).await;
    let admin = app.login("admin").await;
    let jidian_unit = unit(&p.cmd, "集店高速出口卡口").await;
    let (s, u) = admin
        .post(
            "/api/v1/users",
            json!({"username": "cp_jidian", "display_name": "集店卡口", "unit_id": jidian_unit, "role": "checkpoint_staff", "scope_kind": "unit",
                   "password": baton::demo::DEMO_PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    let jidian = app.login("cp_jidian").await;
    // In at 龙泉, to the steel yard and away again.
    let id = check_in(&app, &p, "晋D21001", "green", 2).await["id"].as_str().unwrap().to_string();
    let (s, v) = act(&p.enterprise, &id, json!({"action": "confirm_arrival"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // 集店 is no party to the trip: it cannot see it, nor scan it out by its id.
    assert_eq!(jidian.get(&format!("/api/v1/trips/{id}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(act(&jidian, &id, json!({"action": "exit_scan"})).await.0, StatusCode::NOT_FOUND);
    // By the plate it finds the open trip, which is refused until the destination saw it leave.
    let (s, e) = jidian.post("/api/v1/trips/exit", json!({"plate": "晋D21001"})).await;
    assert_eq!((s, e["error"].as_str()), (StatusCode::CONFLICT, Some("exit_before_departure")), "{e}");
    let (s, v) = act(&p.enterprise, &id, json!({"action": "confirm_departure"})).await;
    assert_eq!((s, v["state"].as_str()), (StatusCode::OK, Some("departed")), "{v}");
    // Bad plates, unknown plates and units that are not checkpoints are refused; nothing changes.
    let (s, e) = jidian.post("/api/v1/trips/exit", json!({"plate": "晋D2100"})).await;
    assert_eq!((s, e["fields"]["plate"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("plate_format")), "{e}");
    let (s, e) = jidian.post("/api/v1/trips/exit", json!({"plate": "晋D29999"})).await;
    assert_eq!((s, e["fields"]["plate"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("trip_unknown")), "{e}");
    let (s, e) = p.enterprise.post("/api/v1/trips/exit", json!({"plate": "晋D21001"})).await;
    assert_eq!((s, e["error"].as_str()), (StatusCode::CONFLICT, Some("not_a_checkpoint")), "{e}");
    assert_eq!(p.cmd.get(&format!("/api/v1/trips/{id}")).await.1["state"], "departed");
    // Scanned out at 集店 (the plate as typed, in lower case): the loop is closed there.
    let send =
        || jidian.raw(reqwest::Method::POST, "/api/v1/trips/exit").header("idempotency-key", "exit-1").json(&json!({"plate": "晋d21001"})).send();
    let r = send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["id"].as_str(), v["state"].as_str()), (Some(id.as_str()), Some("exited")), "{v}");
    assert_eq!((v["custodian"].as_str(), v["closed"]["by"].as_str()), (Some(jidian_unit.as_str()), Some(jidian_unit.as_str())));
    // The baton: the destination held it until the scan, and 集店 took it at that instant.
    let chain = v["chain"].as_array().unwrap();
    let (last, before) = (&chain[chain.len() - 1], &chain[chain.len() - 2]);
    assert_eq!((last["unit"].as_str(), before["unit"].as_str()), (Some(jidian_unit.as_str()), Some(p.dest.as_str())), "{v}");
    assert_eq!(
        (before["to"].clone(), last["from"].clone(), last["to"].clone()),
        (v["closed"]["at"].clone(), v["closed"]["at"].clone(), v["closed"]["at"].clone())
    );
    // A retry with the key answers the same; a second scan finds no open trip.
    let r = send().await.unwrap();
    assert_eq!(r.headers()["idempotent-replay"], "true");
    let (s, e) = jidian.post("/api/v1/trips/exit", json!({"plate": "晋D21001"})).await;
    assert_eq!((s, e["fields"]["plate"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("trip_unknown")), "{e}");
    // 集店 is a party now, the scan is audited in its name, and the ledger reads the closed trip.
    assert_eq!(jidian.get(&format!("/api/v1/trips/{id}")).await.0, StatusCode::OK);
    let (_, a) = p.cmd.get(&format!("/api/v1/audit?object_id={id}&action=trip.exit_scan")).await;
    let entries = a["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{a}");
    assert_eq!((entries[0]["actor_name"].as_str(), entries[0]["unit_id"].as_str()), (Some("cp_jidian"), Some(jidian_unit.as_str())));
    let (s, l) = p.cmd.get(&format!("/api/v1/trips/{id}/ledger")).await;
    assert_eq!(s, StatusCode::OK, "{l}");

    // The exit page: type or scan the plate, and the trip is closed.
    let id2 = check_in(&app, &p, "晋D21002", "green", 2).await["id"].as_str().unwrap().to_string();
    act(&p.enterprise, &id2, json!({"action": "confirm_arrival"})).await;
    act(&p.enterprise, &id2, json!({"action": "confirm_departure"})).await;
    let ui = crate::pages::Ui::of(&app, "cp_jidian", "zh").await;
    let page = ui.get("/trips/exit").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("id=\"exit-form\"") && page.html.contains("name=\"plate\""), "{}", page.html);
    let a = ui.post("/trips/exit", &[("plate", "晋D29998")]).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(crate::pages::field_error(&a.html, "plate").as_deref(), Some("该车牌没有未闭环的行程"), "{}", a.html);
    let a = ui.post("/trips/exit", &[("plate", "晋D21002")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.html);
    assert_eq!(a.location, format!("/trips/{id2}?saved=1"));
    assert_eq!(p.cmd.get(&format!("/api/v1/trips/{id2}")).await.1["state"], "exited");
    // Staff without check-in rights have no exit page.
    assert_eq!(crate::pages::Ui::of(&app, "enterprise", "zh").await.get("/trips/exit").await.status, StatusCode::FORBIDDEN);
    app.stop().await;
}
both!(any_checkpoint_scans_a_truck_out_by_its_plate, exit_elsewhere);
