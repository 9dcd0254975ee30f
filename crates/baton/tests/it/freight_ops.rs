//! The freight loop's operations around the trip, through the API on the manual clock:
//! truck service sites (capacity, gate, waiting list, the stay on the trip's record) and the
//! responsibility ledger (each party's confirmation, and who had not confirmed at a breach).
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

fn crew(code: &str) -> Value {
    json!([{"name": "张师傅", "id_number": "11010519491231002X", "phone": "13912345678", "health_code": code}])
}

async fn check_in(app: &TestApp, cp: &Session, dest: &str, plate: &str) -> Value {
    let body = json!({"plate": plate, "destination_id": dest, "eta": (now(app) + Duration::hours(2)).to_rfc3339(), "crew": crew("yellow"),
                      "test_taken_at": (now(app) - Duration::hours(10)).to_rfc3339(), "landing_tube": "LT-000001"});
    let (s, v) = cp.post("/api/v1/trips/check-in", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

async fn audit_actions(cmd: &Session, id: &str) -> Vec<String> {
    let (_, a) = cmd.get(&format!("/api/v1/audit?object_id={id}")).await;
    a["entries"].as_array().unwrap().iter().rev().map(|e| e["action"].as_str().unwrap().to_string()).collect()
}

async fn service_site(b: Backend) {
    let app = spawn_app(b).await;
    let cmd = app.login("commander").await;
    let cp = app.login("checkpoint").await;
    let site = app.login("site").await;
    let dest = unit(&cmd, "壶关县太行钢材贸易有限公司").await;
    let site_id = unit(&cmd, "壶关县货车专用服务场地").await;
    let a = check_in(&app, &cp, &dest, "晋D40001").await["id"].as_str().unwrap().to_string();
    check_in(&app, &cp, &dest, "晋D40002").await;
    // The site's staff see their site; no capacity yet; a bad capacity is a field error.
    let (_, l) = site.get("/api/v1/sites").await;
    assert_eq!(l["sites"].as_array().unwrap().len(), 1, "{l}");
    assert!(l["sites"][0]["capacity"].is_null());
    let (s, e) = site.post(&format!("/api/v1/sites/{site_id}/capacity"), json!({"capacity": -1})).await;
    assert_eq!((s, e["fields"]["capacity"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("out_of_range")));
    let (s, v) = site.post(&format!("/api/v1/sites/{site_id}/capacity"), json!({"capacity": 1})).await;
    assert_eq!((s, v["capacity"].as_i64()), (StatusCode::OK, Some(1)), "{v}");
    // Gate: a truck in by plate; the retry returns the same stay.
    let path = format!("/api/v1/sites/{site_id}/check-in");
    let (s, first) = site.post(&path, json!({"plate": "晋D40001"})).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!((first["waiting_result"].as_bool(), first["over_capacity"].as_bool()), (Some(true), Some(false)));
    let (_, again) = site.post(&path, json!({"plate": "晋D40001"})).await;
    assert_eq!(again["id"], first["id"]);
    // Full: refused, unless admitted over capacity, which is flagged.
    let (s, e) = site.post(&path, json!({"plate": "晋D40002"})).await;
    assert_eq!((s, e["error"].as_str()), (StatusCode::CONFLICT, Some("site_full")), "{e}");
    let (s, over) = site.post(&path, json!({"plate": "晋D40002", "over_capacity": true, "waiting_result": false})).await;
    assert_eq!((s, over["over_capacity"].as_bool()), (StatusCode::CREATED, Some(true)), "{over}");
    // Bad input: field errors, nothing written.
    for (plate, code) in [("晋D4000", "plate_invalid"), ("晋D49999", "trip_unknown")] {
        let (s, e) = site.post(&path, json!({"plate": plate})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert!(e["fields"]["plate"]["code"].as_str().unwrap().contains(code) || code == "plate_invalid", "{e}");
    }
    let (_, v) = site.get(&format!("/api/v1/sites/{site_id}")).await;
    assert_eq!((v["present"].as_array().unwrap().len(), v["waiting"].as_array().unwrap().len()), (2, 1), "{v}");
    assert_eq!(v["over_capacity"], true);
    // Result in, then out; a second check-out is refused.
    let stay = first["id"].as_str().unwrap();
    let (s, r) = site.post(&format!("/api/v1/sites/{site_id}/stays/{stay}/result"), json!({})).await;
    assert_eq!((s, r["waiting_result"].as_bool()), (StatusCode::OK, Some(false)), "{r}");
    let (s, r) = site.post(&format!("/api/v1/sites/{site_id}/stays/{stay}/check-out"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r["left_at"].is_string());
    assert_eq!(site.post(&format!("/api/v1/sites/{site_id}/stays/{stay}/check-out"), json!({})).await.0, StatusCode::CONFLICT);
    let (_, v) = site.get(&format!("/api/v1/sites/{site_id}")).await;
    assert_eq!((v["present"].as_array().unwrap().len(), v["waiting"].as_array().unwrap().len()), (1, 0));
    // The stay is part of the trip's record, which the site may now read.
    let (s, t) = site.get(&format!("/api/v1/trips/{a}")).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["site_stays"].as_array().unwrap().len(), 1);
    assert_eq!(t["site_stays"][0]["site_name"], "壶关县货车专用服务场地");
    assert_eq!(audit_actions(&cmd, &a).await[1..], ["site.check_in", "site.result", "site.check_out"]);
    // Scope: other units neither see nor work the site's gate; the command office sees it.
    let ent = app.login("enterprise").await;
    assert_eq!(ent.get(&format!("/api/v1/sites/{site_id}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(ent.post(&path, json!({"plate": "晋D40001"})).await.0, StatusCode::NOT_FOUND);
    let (s, e) = cmd.post(&path, json!({"plate": "晋D40001"})).await;
    assert_eq!((s, e["error"].as_str()), (StatusCode::CONFLICT, Some("not_site_staff")));
    assert_eq!(cmd.get("/api/v1/sites").await.1["sites"][0]["present"], 1);
    app.stop().await;
}
both!(a_service_site_admits_trucks_up_to_capacity_and_keeps_the_stay_on_the_trip, service_site);

fn id_number(seq: u32) -> String {
    let first17 = format!("14042719900101{:03}", 100 + seq);
    let c = baton_domain::ident::IdNumber::check_char(first17.as_bytes()) as char;
    format!("{first17}{c}")
}

async fn ledger(b: Backend) {
    let app = spawn_app(b).await;
    let cmd = app.login("commander").await;
    let cp = app.login("checkpoint").await;
    let ent = app.login("enterprise").await;
    let park = unit(&cmd, "壶关经济技术开发区物流园").await;
    let township = unit(&cmd, "壶关县经济技术开发区管理委员会").await;
    let (s, u) = cmd
        .post(
            "/api/v1/users",
            json!({"username": "kaifaqu", "display_name": "开发区值班", "unit_id": township, "role": "township_staff", "scope_kind": "division",
                   "scope_code": "140427401", "password": baton::demo::DEMO_PASSWORD, "phone": "13903551999", "id_number": id_number(1)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    let twp = app.login("kaifaqu").await;
    // The cargo owner pre-reports a truck to the logistics park.
    let (s, r) = ent
        .post(
            "/api/v1/trips",
            json!({"plate": "晋D50001", "destination_id": park, "expected_at": (now(&app) + Duration::hours(1)).to_rfc3339(), "crew": crew("green")}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    let v = check_in(&app, &cp, &park, "晋D50001").await;
    let (s, l) = ent.get(&format!("/api/v1/trips/{id}/ledger")).await;
    assert_eq!(s, StatusCode::OK, "{l}");
    let parties: Vec<&str> = l["parties"].as_array().unwrap().iter().map(|p| p["party"].as_str().unwrap()).collect();
    assert_eq!(parties, ["cargo_owner", "logistics_park", "township", "driver"]);
    assert!(l["parties"].as_array().unwrap().iter().all(|p| p["confirmed_at"].is_null()));
    assert_eq!(l["parties"][3]["name"], "张师傅");
    // The cargo owner confirms, once; a repeat changes nothing.
    let path = format!("/api/v1/trips/{id}/confirm");
    let (s, l) = ent.post(&path, json!({"party": "cargo_owner"})).await;
    assert_eq!(s, StatusCode::OK, "{l}");
    assert_eq!(l["parties"][0]["confirmed_by"], "enterprise");
    let first_at = l["parties"][0]["confirmed_at"].clone();
    app.clock.advance(Duration::minutes(1));
    let (_, l) = ent.post(&path, json!({"party": "cargo_owner"})).await;
    assert_eq!(l["parties"][0]["confirmed_at"], first_at);
    // Nobody confirms for another party; bad party names are field errors; the driver uses the code.
    assert_eq!(ent.post(&path, json!({"party": "township"})).await.1["error"], "not_party");
    assert_eq!(ent.post(&path, json!({"party": "nobody"})).await.1["fields"]["party"]["code"], "party_unknown");
    assert_eq!(ent.post(&path, json!({"party": "driver"})).await.1["error"], "driver_confirms_by_code");
    // The driver confirms by opening their code, without an account.
    let code = v["crew"][0]["code"].as_str().unwrap();
    let r = reqwest::Client::new().post(app.url(&format!("/code/{code}/confirm"))).send().await.unwrap();
    assert!(r.status().is_success() || r.status().is_redirection(), "{}", r.status());
    // The truck never arrives: the breach names who had not confirmed (the park and the township).
    app.clock.advance(Duration::hours(4));
    baton_store::alerts::sweep(&app.store, now(&app)).await.unwrap();
    app.clock.advance(Duration::minutes(5));
    let (s, l) = twp.post(&path, json!({"party": "township"})).await;
    assert_eq!(s, StatusCode::OK, "{l}");
    let b = l["breaches"].as_array().unwrap();
    assert_eq!(b.len(), 1, "{l}");
    assert_eq!(b[0]["kind"], "no_arrival");
    assert_eq!(b[0]["unconfirmed"], json!(["logistics_park", "township"]), "the township confirmed only after the breach");
    assert!(l["parties"][2]["confirmed_at"].is_string() && l["parties"][3]["confirmed_at"].is_string());
    let actions = audit_actions(&cmd, &id).await;
    assert_eq!(actions.iter().filter(|a| *a == "trip.confirm").count(), 3, "{actions:?}");
    // Scope: another township sees no ledger.
    let baichi = app.login("baichi").await;
    assert_eq!(baichi.get(&format!("/api/v1/trips/{id}/ledger")).await.0, StatusCode::NOT_FOUND);
    app.stop().await;
}
both!(the_ledger_records_each_partys_confirmation_and_names_who_had_not_at_a_breach, ledger);
