//! The freight loop's operations around the trip, through the API on the manual clock:
//! truck service sites (capacity, gate, waiting list, the stay on the trip's record) and the
//! responsibility ledger (each party's confirmation, and who had not confirmed at a breach).
use baton_testkit::{Backend, Session, TestApp, both, spawn_app};
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

pub(crate) async fn unit(s: &Session, name: &str) -> String {
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

async fn check_in(app: &TestApp, cp: &Session, dest: &str, plate: &str) -> Value {
    let body = json!({"plate": plate, "destination_id": dest, "eta": (now(app) + Duration::hours(2)).to_rfc3339(), "crew": crew("yellow"),
                      "test_taken_at": (now(app) - Duration::hours(10)).to_rfc3339(), "landing_tube": tube_of(plate)});
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

async fn import_csv(s: &Session, csv: &str, key: Option<&str>) -> (StatusCode, Value) {
    let mut r = s.raw(reqwest::Method::POST, "/api/v1/trips/import").header("content-type", "text/csv").body(csv.to_string());
    if let Some(k) = key {
        r = r.header("idempotency-key", k);
    }
    let resp = r.send().await.unwrap();
    (resp.status(), resp.json().await.unwrap())
}

async fn batch_pre_report(b: Backend) {
    let app = spawn_app(b).await;
    let cmd = app.login("commander").await;
    let ent = app.login("enterprise").await;
    let count = || async { cmd.get("/api/v1/trips").await.1["trips"].as_array().unwrap().len() };
    // The template reads back as an import of its example row.
    let r = ent.raw(reqwest::Method::GET, "/api/v1/trips/import/template").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let xlsx = r.bytes().await.unwrap();
    let resp = ent
        .raw(reqwest::Method::POST, "/api/v1/trips/import")
        .header("content-type", baton_store::sheet::XLSX_MIME)
        .body(xlsx.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let v: Value = resp.json().await.unwrap();
    assert_eq!((v["imported"].as_i64(), v["trips"][0]["plate"].as_str()), (Some(1), Some("晋D12345")), "{v}");
    assert_eq!(count().await, 1);
    // Every bad row is reported by row and column, in both languages; nothing is written.
    let when = (now(&app) + Duration::hours(30)).with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap()).format("%Y-%m-%d %H:%M");
    let bad = format!(
        "车牌号,目的地单位,预计到达卡口时间,司机姓名,司机身份证号,司机手机号,随车人员姓名,随车人员身份证号\n\
         晋D60001,壶关经济技术开发区物流园,{when},李师傅,11010519491231002X,13912345678,,\n\
         晋D6000,,{when},王师傅,110105194912310021,,,\n\
         晋D60001,火星物流,2022/11/01,赵师傅,11010519491231002X,,钱师傅,\n"
    );
    let (s, e) = import_csv(&ent, &bad, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    for (f, code) in [
        ("rows[3].plate", "plate_format"),
        ("rows[3].driver_id_number", ""),
        ("rows[4].plate", "duplicate_in_file"),
        ("rows[4].destination", "unit_unknown"),
        ("rows[4].expected_at", "eta_in_past"),
        ("rows[4].co_driver_id_number", ""),
    ] {
        let got = &e["fields"][f];
        assert!(got.is_object(), "no error for {f}: {e}");
        assert!(code.is_empty() || got["code"] == code, "{f}: {got}");
    }
    assert!(e["fields"]["rows[2].plate"].is_null(), "a good row has no error: {e}");
    assert_eq!(count().await, 1, "all or nothing");
    // Fixed, it imports; the same file again reports each truck as already reported; a retry with its key replays.
    let good = format!(
        "plate,destination,expected_at,driver_name,driver_id_number\n晋D60001,壶关经济技术开发区物流园,{when},李师傅,11010519491231002X\n晋D60002,,{when},王师傅,11010519491231002X\n"
    );
    let (s, v) = import_csv(&ent, &good, Some("imp-1")).await;
    assert_eq!((s, v["imported"].as_i64()), (StatusCode::CREATED, Some(2)), "{v}");
    let (s, again) = import_csv(&ent, &good, Some("imp-1")).await;
    assert_eq!((s, again["trips"][0]["id"].clone()), (StatusCode::CREATED, v["trips"][0]["id"].clone()));
    let (s, e) = import_csv(&ent, &good, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        (e["fields"]["rows[2].plate"]["code"].as_str(), e["fields"]["rows[3].plate"]["code"].as_str()),
        (Some("trip_open_for_plate"), Some("trip_open_for_plate"))
    );
    assert_eq!(count().await, 3);
    let (_, t) = ent.get(&format!("/api/v1/trips/{}", v["trips"][1]["id"].as_str().unwrap())).await;
    assert_eq!(
        (t["state"].as_str(), t["destination"].as_str()),
        (Some("reported"), ent.body["user"]["unit_id"].as_str()),
        "a blank destination is the reporter"
    );
    // Headers missing; not a sheet; no permission.
    let (s, e) = import_csv(&ent, "车牌号,司机姓名\n晋D60003,x\n", None).await;
    assert_eq!((s, e["fields"]["header.expected_at"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("column_missing")));
    let r = ent.raw(reqwest::Method::POST, "/api/v1/trips/import").header("content-type", "image/png").body("x").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let cp = app.login("checkpoint").await;
    assert_eq!(import_csv(&cp, &good, None).await.0, StatusCode::FORBIDDEN);
    // The page: an upload form; a bad file shows its errors by row, in the user's language.
    let form = |csv: &str| {
        let b = "XbatonX";
        format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{}\r\n--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.csv\"\r\nContent-Type: text/csv\r\n\r\n{csv}\r\n--{b}--\r\n",
            ent.csrf
        )
    };
    let page = ent.raw(reqwest::Method::GET, "/trips/import").send().await.unwrap();
    assert!(page.text().await.unwrap().contains("import-form"));
    let post = |body: String| {
        ent.raw(reqwest::Method::POST, "/trips/import").header("content-type", "multipart/form-data; boundary=XbatonX").body(body).send()
    };
    let r = post(form(&bad)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("import-errors") && !html.contains("duplicate_in_file") && html.contains("与第 2 行车牌重复"), "{html}");
    let fresh = good.replace("晋D60001", "晋D60011").replace("晋D60002", "晋D60012");
    let r = post(form(&fresh)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("晋D60011"));
    assert_eq!(count().await, 5);
    let (_, a) = cmd.get("/api/v1/audit?action=trip.import").await;
    assert!(a["entries"].as_array().is_some_and(|e| e.len() >= 2), "{a}");
    app.stop().await;
}
both!(a_batch_pre_report_imports_all_rows_or_none_with_errors_by_row, batch_pre_report);

async fn dashboard(b: Backend) {
    let app = spawn_app(b).await;
    let cmd = app.login("commander").await;
    let cp = app.login("checkpoint").await;
    let escort = app.login("escort").await;
    let steel = unit(&cmd, "壶关县太行钢材贸易有限公司").await;
    let food = unit(&cmd, "壶关县龙泉农产品批发有限公司").await;
    let escort_unit = unit(&cmd, "壶关县交通运输局").await;
    let a = check_in(&app, &cp, &steel, "晋D70001").await["id"].as_str().unwrap().to_string();
    check_in(&app, &cp, &food, "晋D70002").await;
    let ent = app.login("enterprise").await;
    ent.post(
        "/api/v1/trips",
        json!({"plate": "晋D70003", "destination_id": steel, "expected_at": (now(&app) + Duration::hours(1)).to_rfc3339(), "crew": crew("green")}),
    )
    .await;
    // An escort handoff accepted after 10 minutes.
    cp.post(&format!("/api/v1/trips/{a}/actions"), json!({"action": "propose_handoff", "to": escort_unit, "purpose": "escort"})).await;
    app.clock.advance(Duration::minutes(10));
    let (s, v) = escort.post(&format!("/api/v1/trips/{a}/actions"), json!({"action": "accept_handoff"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The reported truck never checks in: one breach, answerable by the cargo owner.
    app.clock.advance(Duration::hours(3));
    baton_store::alerts::sweep(&app.store, now(&app)).await.unwrap();
    let (s, st) = cmd.get("/api/v1/freight/stats").await;
    assert_eq!(s, StatusCode::OK, "{st}");
    let counts = |list: &str| -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> =
            st[list].as_array().unwrap().iter().map(|c| (c["key"].as_str().unwrap().to_string(), c["count"].as_i64().unwrap())).collect();
        v.sort();
        v
    };
    assert_eq!(counts("open_by_state"), [("checked_in".into(), 1), ("escort_assigned".into(), 1), ("reported".into(), 1)]);
    assert_eq!(counts("open_by_class"), [("".into(), 1), ("closed_loop".into(), 2)]);
    assert_eq!(counts("open_by_checkpoint"), [("".into(), 1), ("龙泉高速出口卡口".into(), 2)]);
    assert_eq!(counts("open_by_township"), [("140427100".into(), 1), ("140427401".into(), 2)]);
    let kinds = counts("breaches_by_kind");
    assert!(kinds.contains(&("not_checked_in".into(), 1)), "{kinds:?}");
    let h = &st["handoff_times"][0];
    assert_eq!(
        (h["purpose"].as_str(), h["receiver"].as_str(), h["accepted"].as_i64(), h["avg_minutes"].as_f64()),
        (Some("escort"), Some("壶关县交通运输局"), Some(1), Some(10.0))
    );
    // Loop closure by class: two closed-loop trucks checked in, none closed yet.
    let c = &st["closure_by_class"][0];
    assert_eq!(
        (c["class"].as_str(), c["checked_in"].as_i64(), c["closed"].as_i64(), c["rate"].as_f64()),
        (Some("closed_loop"), Some(2), Some(0), Some(0.0)),
        "{st}"
    );
    // Time in each link: the checkpoint held the escorted truck ten minutes; open spans do not count.
    let l = &st["link_times"];
    assert_eq!(l.as_array().unwrap().len(), 1, "{l}");
    assert_eq!((l[0]["kind"].as_str(), l[0]["spans"].as_i64(), l[0]["avg_minutes"].as_f64()), (Some("checkpoint"), Some(1), Some(10.0)), "{l}");
    let r = cmd.raw(reqwest::Method::GET, "/api/v1/freight/export?list=link_times").send().await.unwrap();
    let rows = baton_store::sheet::read_sheet(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(rows.len(), 2, "header and the checkpoint's line");
    // Scope: the township of 龙泉 counts only trips in its locality.
    let longquan = app.login("longquan").await;
    let (_, st2) = longquan.get("/api/v1/freight/stats").await;
    let n: i64 = st2["open_by_state"].as_array().unwrap().iter().map(|c| c["count"].as_i64().unwrap()).sum();
    assert_eq!(n, 1, "{st2}");
    assert!(st2["handoff_times"].as_array().unwrap().is_empty());
    // Exports: each list as xlsx; an unknown list is a field error.
    let r = cmd.raw(reqwest::Method::GET, "/api/v1/freight/export?list=open_by_township").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rows = baton_store::sheet::read_sheet(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(rows.len(), 3, "header and two townships");
    assert_eq!(cmd.get("/api/v1/freight/export?list=nope").await.1["fields"]["list"]["code"], "list_unknown");
    let page = cmd.raw(reqwest::Method::GET, "/freight/dashboard").send().await.unwrap().text().await.unwrap();
    assert!(page.contains("stats-handoff_times") && page.contains("壶关县交通运输局"));
    assert!(page.contains("stats-closure_by_class") && page.contains("stats-link_times") && page.contains("闭环率"));
    app.stop().await;
}
both!(the_dashboard_counts_open_trips_breaches_and_handoff_times_in_scope, dashboard);

/// Acting as a unit straight through the store, without signing in (a new unit has no login).
fn as_unit(unit: &str) -> baton_store::Principal {
    baton_store::Principal { unit_id: Some(unit.parse().unwrap()), ..baton_store::Principal::system("test") }
}

/// The deadline watcher's escort step, now on the test's clock.
async fn escort_sweep(app: &TestApp) -> baton_store::escorts::EscortSweep {
    baton_store::escorts::sweep(&app.store, now(app)).await.unwrap()
}

async fn alert_sweep(app: &TestApp) -> baton_store::alerts::SweepReport {
    baton_store::alerts::sweep(&app.store, now(app)).await.unwrap()
}

async fn escorts(b: Backend) {
    let app = spawn_app(b).await;
    let cmd = app.login("commander").await;
    let cp = app.login("checkpoint").await;
    let enterprise = app.login("enterprise").await;
    let steel = unit(&cmd, "壶关县太行钢材贸易有限公司").await;
    let build = unit(&cmd, "壶关县百尺建材有限公司").await;
    let police = unit(&cmd, "壶关县公安局").await;
    let transport = unit(&cmd, "壶关县交通运输局").await;
    let checkpoint_unit = unit(&cmd, "龙泉高速出口卡口").await;
    let store = app.store.clone();
    let trip = |id: String| {
        let cmd = &cmd;
        async move { cmd.get(&format!("/api/v1/trips/{id}")).await.1 }
    };
    // The demo roster: police then transport behind every receiver; 太行钢材's trucks go to transport.
    let (s, r) = cmd.get("/api/v1/escorts").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let names: Vec<&str> = r["fallback"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["壶关县公安局", "壶关县交通运输局"]);
    assert_eq!(
        (r["receivers"][0]["receiver_id"].as_str(), r["receivers"][0]["escort_id"].as_str()),
        (Some(steel.as_str()), Some(transport.as_str()))
    );
    // Bad rosters change nothing; only unit managers set it; a receiver sets its own escort.
    let (s, e) = cmd.put("/api/v1/escorts/fallback", json!({"units": [checkpoint_unit, uuid::Uuid::now_v7(), police, police]})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let codes: Vec<&str> = (0..4).map(|i| e["fields"][format!("units[{i}]")]["code"].as_str().unwrap_or("")).collect();
    assert_eq!(codes, ["not_a_department", "unit_unknown", "", "duplicate"]);
    let (s, _) = enterprise.put("/api/v1/escorts/fallback", json!({"units": [police]})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = enterprise.put(&format!("/api/v1/escorts/receivers/{build}"), json!({"escort_id": transport})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "another receiver's escort");
    let (s, e) = enterprise.put(&format!("/api/v1/escorts/receivers/{steel}"), json!({"escort_id": uuid::Uuid::now_v7()})).await;
    assert_eq!((s, e["fields"]["escort_id"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unit_unknown")));
    let (s, r) = enterprise.put(&format!("/api/v1/escorts/receivers/{steel}"), json!({"escort_id": transport})).await;
    assert_eq!(s, StatusCode::OK, "{r}");

    // A. The receiver's escort, proposed by the watcher once the checkpoint has let 10 minutes pass,
    // is not accepted in time: the breach is raised, and the handoff goes to the police instead.
    let a = check_in(&app, &cp, &steel, "晋D50001").await["id"].as_str().unwrap().to_string();
    app.clock.advance(Duration::minutes(5));
    assert_eq!(escort_sweep(&app).await.proposed, 0, "the checkpoint hands over itself within 10 minutes");
    app.clock.advance(Duration::minutes(6));
    let r = escort_sweep(&app).await;
    assert_eq!((r.proposed, r.fallbacks), (1, 0), "{r:?}");
    let t = trip(a.clone()).await;
    assert_eq!((t["pending"]["to"].as_str(), t["pending"]["fallback"].as_str()), (Some(transport.as_str()), None), "{t}");
    app.clock.advance(Duration::minutes(31));
    // The escort step alone raises the breach of the handoff it redirects; the alert sweep then finds it raised.
    let r = escort_sweep(&app).await;
    assert_eq!(r.fallbacks, 1, "{r:?}");
    assert_eq!(alert_sweep(&app).await.raised, 0);
    let t = trip(a.clone()).await;
    assert_eq!((t["pending"]["to"].as_str(), t["pending"]["fallback"].as_str()), (Some(police.as_str()), Some("not_accepted")), "{t}");
    assert_eq!(t["custodian"], checkpoint_unit, "the checkpoint stays answerable until the fallback escort accepts");
    let last = t["handoffs"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["handoff"]["to"].as_str(), last["outcome"].as_str(), last["reason"].as_str()),
        (Some(transport.as_str()), Some("withdrawn"), Some("not_accepted"))
    );
    let (_, al) = cmd.get(&format!("/api/v1/alerts?trip_id={a}")).await;
    let kinds: Vec<&str> = al["alerts"].as_array().unwrap().iter().map(|x| x["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["handoff_not_accepted"]);
    // The late escort can no longer take it; the police can.
    let late = baton_store::trips::act(&store, &as_unit(&transport), a.parse().unwrap(), json!({"action": "accept_handoff"})).await;
    assert!(late.is_err());
    let t = baton_store::trips::act(&store, &as_unit(&police), a.parse().unwrap(), json!({"action": "accept_handoff"})).await.unwrap();
    let chain: Vec<String> = t.trip.chain.iter().map(|s| s.unit.to_string()).collect();
    assert_eq!(chain, [checkpoint_unit.clone(), police.clone()]);
    assert_eq!(t.trip.state.as_str(), "escort_assigned");
    let acts = audit_actions(&cmd, &a).await;
    assert_eq!(acts, ["trip.check_in", "trip.propose_handoff", "alert.raise", "trip.escort_fallback", "trip.accept_handoff"]);
    assert_eq!(escort_sweep(&app).await.trips_checked, 0, "an escorted trip needs nothing more");

    // B. A receiver without an escort: straight to the fallback; each rejection goes to the next; none left, it stays.
    let b = check_in(&app, &cp, &build, "晋D50002").await["id"].as_str().unwrap().to_string();
    app.clock.advance(Duration::minutes(11));
    assert_eq!(escort_sweep(&app).await.fallbacks, 1);
    let t = trip(b.clone()).await;
    assert_eq!((t["pending"]["to"].as_str(), t["pending"]["fallback"].as_str()), (Some(police.as_str()), Some("no_receiver_escort")));
    let reject = json!({"action": "reject_handoff", "reason": "警力不足"});
    baton_store::trips::act(&store, &as_unit(&police), b.parse().unwrap(), reject.clone()).await.unwrap();
    assert_eq!(escort_sweep(&app).await.fallbacks, 1, "a rejection is redirected at once");
    let t = trip(b.clone()).await;
    assert_eq!((t["pending"]["to"].as_str(), t["pending"]["fallback"].as_str()), (Some(transport.as_str()), Some("rejected")));
    baton_store::trips::act(&store, &as_unit(&transport), b.parse().unwrap(), reject).await.unwrap();
    let r = escort_sweep(&app).await;
    assert_eq!((r.fallbacks, r.no_fallback), (0, 1), "nobody left on the roster: {r:?}");
    assert!(trip(b.clone()).await["pending"].is_null());

    // C. The nearest fallback: a department in the destination's township goes before county units.
    let (s, local) = cmd.post("/api/v1/units", json!({"name": "百尺派出所", "kind": "department", "division_code": "140427101"})).await;
    assert_eq!(s, StatusCode::CREATED, "{local}");
    let local = local["id"].as_str().unwrap().to_string();
    let (s, r) = cmd.put("/api/v1/escorts/fallback", json!({"units": [police, transport, local]})).await;
    assert_eq!((s, r["fallback"].as_array().map(Vec::len)), (StatusCode::OK, Some(3)), "{r}");
    let c = check_in(&app, &cp, &build, "晋D50003").await["id"].as_str().unwrap().to_string();
    app.clock.advance(Duration::minutes(11));
    escort_sweep(&app).await;
    assert_eq!(trip(c.clone()).await["pending"]["to"].as_str(), Some(local.as_str()));
    // Sent to the fallback escort, it now sees the trip.
    let seen = baton_store::trips::get(
        &store,
        &baton_store::Principal {
            scope: baton_domain::scope::Scope::Unit { unit_id: local.parse().unwrap(), division: "140427101".into() },
            ..as_unit(&local)
        },
        c.parse().unwrap(),
    )
    .await;
    assert!(seen.is_ok());
    app.stop().await;
}
both!(escorts_fall_back_to_police_and_transport, escorts);

async fn act(s: &Session, id: &str, action: Value) -> (StatusCode, Value) {
    s.post(&format!("/api/v1/trips/{id}/actions"), action).await
}

/// The escort transitions around the roster not walked above: the checkpoint may redirect only
/// a rejected or overdue escort handoff itself; a receiver's own escort rejecting; a fallback
/// escort not accepting in time (a breach each time, then nobody left, a late acceptance); a
/// withdrawn escort not asked again; disabled units passed over; no arrival before an escort has
/// accepted; a `pass` truck left alone. The police accept with their own login.
async fn escort_transitions(b: Backend) {
    let app = spawn_app(b).await;
    let cmd = app.login("commander").await;
    let cp = app.login("checkpoint").await;
    let escort = app.login("escort").await;
    let police_user = app.login("police").await;
    let enterprise = app.login("enterprise").await;
    let steel = unit(&cmd, "壶关县太行钢材贸易有限公司").await;
    let build = unit(&cmd, "壶关县百尺建材有限公司").await;
    let police = unit(&cmd, "壶关县公安局").await;
    let transport = unit(&cmd, "壶关县交通运输局").await;
    let checkpoint_unit = unit(&cmd, "龙泉高速出口卡口").await;
    let pending = |t: &Value| (t["pending"]["to"].as_str().map(str::to_string), t["pending"]["fallback"].as_str().map(str::to_string));
    let trip = |id: String| {
        let cmd = &cmd;
        async move { cmd.get(&format!("/api/v1/trips/{id}")).await.1 }
    };
    let alerts = |id: String| {
        let cmd = &cmd;
        async move {
            let (_, al) = cmd.get(&format!("/api/v1/alerts?trip_id={id}")).await;
            al["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| (x["kind"].as_str().unwrap().to_string(), x["custodian_id"].as_str().unwrap().to_string()))
                .collect::<Vec<_>>()
        }
    };

    // D. The checkpoint hands to the receiver's escort; redirecting it while it is in time is refused.
    let d = check_in(&app, &cp, &steel, "晋D51001").await["id"].as_str().unwrap().to_string();
    let (s, v) = act(&cp, &d, json!({"action": "propose_handoff", "to": transport, "purpose": "escort"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, e) = act(&cp, &d, json!({"action": "escort_fallback", "to": police, "reason": "not_accepted"})).await;
    assert_eq!((s.is_client_error(), e["error"].as_str()), (true, Some("fallback_not_due")), "{e}");
    assert_eq!(pending(&trip(d.clone()).await), (Some(transport.clone()), None), "nothing changed");
    app.clock.advance(Duration::minutes(11));
    assert_eq!(escort_sweep(&app).await.trips_checked, 0, "a handoff in time is the receiver's to answer");
    // The receiver's escort rejects: the watcher sends the truck to the first fallback at once, without a breach.
    let (s, v) = act(&escort, &d, json!({"action": "reject_handoff", "reason": "车辆已派出"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = escort_sweep(&app).await;
    assert_eq!((r.proposed, r.fallbacks), (0, 1), "{r:?}");
    assert_eq!(pending(&trip(d.clone()).await), (Some(police.clone()), Some("rejected".into())));
    assert_eq!(alert_sweep(&app).await.raised, 0);
    assert!(alerts(d.clone()).await.is_empty());
    let (s, v) = act(&police_user, &d, json!({"action": "accept_handoff"})).await;
    assert_eq!((s, v["state"].as_str(), v["custodian"].as_str()), (StatusCode::OK, Some("escort_assigned"), Some(police.as_str())), "{v}");
    assert_eq!(
        audit_actions(&cmd, &d).await,
        ["trip.check_in", "trip.propose_handoff", "trip.reject_handoff", "trip.escort_fallback", "trip.accept_handoff"]
    );

    // E. After a rejection the checkpoint may redirect itself; the watcher then leaves the new handoff alone.
    let e = check_in(&app, &cp, &steel, "晋D51002").await["id"].as_str().unwrap().to_string();
    act(&cp, &e, json!({"action": "propose_handoff", "to": transport, "purpose": "escort"})).await;
    act(&escort, &e, json!({"action": "reject_handoff", "reason": "车辆已派出"})).await;
    let (s, v) = act(&cp, &e, json!({"action": "escort_fallback", "to": police, "reason": "rejected"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(pending(&v), (Some(police.clone()), Some("rejected".into())));
    let r = escort_sweep(&app).await;
    assert_eq!((r.proposed, r.fallbacks, r.trips_checked), (0, 0, 0), "{r:?}");
    act(&police_user, &e, json!({"action": "accept_handoff"})).await;

    // F. No receiver escort; the first fallback does not accept in time: a breach, and the next one;
    // that one does not either: a second breach, nobody left, and it may still accept late.
    let f = check_in(&app, &cp, &build, "晋D51003").await["id"].as_str().unwrap().to_string();
    app.clock.advance(Duration::minutes(11));
    assert_eq!(escort_sweep(&app).await.fallbacks, 1);
    assert_eq!(pending(&trip(f.clone()).await), (Some(police.clone()), Some("no_receiver_escort".into())));
    app.clock.advance(Duration::minutes(31));
    assert_eq!(escort_sweep(&app).await.fallbacks, 1);
    assert_eq!(pending(&trip(f.clone()).await), (Some(transport.clone()), Some("not_accepted".into())));
    assert_eq!(alerts(f.clone()).await, [("handoff_not_accepted".to_string(), checkpoint_unit.clone())]);
    app.clock.advance(Duration::minutes(31));
    let r = escort_sweep(&app).await;
    assert_eq!((r.fallbacks, r.no_fallback), (0, 1), "{r:?}");
    assert_eq!(alert_sweep(&app).await.raised, 1, "the second overdue handoff is a breach of its own");
    assert_eq!(alerts(f.clone()).await.len(), 2);
    assert_eq!(pending(&trip(f.clone()).await), (Some(transport.clone()), Some("not_accepted".into())), "left with the last one asked");
    let (s, v) = act(&escort, &f, json!({"action": "accept_handoff"})).await;
    assert_eq!((s, v["custodian"].as_str()), (StatusCode::OK, Some(transport.as_str())), "{v}");
    assert_eq!(escort_sweep(&app).await.no_fallback, 0);

    // G. A withdrawn escort handoff: the watcher does not ask that unit again, it goes to the fallback.
    let g = check_in(&app, &cp, &steel, "晋D51004").await["id"].as_str().unwrap().to_string();
    act(&cp, &g, json!({"action": "propose_handoff", "to": transport, "purpose": "escort"})).await;
    let (s, v) = act(&cp, &g, json!({"action": "withdraw_handoff"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    app.clock.advance(Duration::minutes(9));
    assert_eq!(escort_sweep(&app).await.fallbacks, 0, "the checkpoint has 10 minutes from its withdrawal");
    app.clock.advance(Duration::minutes(2));
    assert_eq!(escort_sweep(&app).await.fallbacks, 1);
    assert_eq!(pending(&trip(g.clone()).await), (Some(police.clone()), Some("no_receiver_escort".into())));
    act(&police_user, &g, json!({"action": "accept_handoff"})).await;

    // H. Disabled units are passed over: the receiver's escort, and the first unit on the roster.
    // Named while active, then disabled.
    let (s, team) = cmd.post("/api/v1/units", json!({"name": "壶关县交警大队", "kind": "department", "division_code": "140427"})).await;
    assert_eq!(s, StatusCode::CREATED, "{team}");
    let (s, station) = cmd.post("/api/v1/units", json!({"name": "壶关县城关派出所", "kind": "department", "division_code": "140427"})).await;
    assert_eq!(s, StatusCode::CREATED, "{station}");
    let (team, station) = (team["id"].as_str().unwrap().to_string(), station["id"].as_str().unwrap().to_string());
    let (s, r) = cmd.put(&format!("/api/v1/escorts/receivers/{steel}"), json!({"escort_id": team})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, r) = cmd.put("/api/v1/escorts/fallback", json!({"units": [station, police, transport]})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    for (id, name) in [(&team, "壶关县交警大队"), (&station, "壶关县城关派出所")] {
        let (s, u) =
            cmd.put(&format!("/api/v1/units/{id}"), json!({"name": name, "kind": "department", "division_code": "140427", "active": false})).await;
        assert_eq!((s, u["active"].as_bool()), (StatusCode::OK, Some(false)), "{u}");
    }
    let h = check_in(&app, &cp, &steel, "晋D51005").await["id"].as_str().unwrap().to_string();
    app.clock.advance(Duration::minutes(11));
    assert_eq!(escort_sweep(&app).await.fallbacks, 1);
    assert_eq!(pending(&trip(h.clone()).await), (Some(police.clone()), Some("no_receiver_escort".into())));
    act(&police_user, &h, json!({"action": "accept_handoff"})).await;

    // I. A receiver that removed its escort: its truck goes to the fallback, and cannot be taken in
    // without an escort; once the police accept, it can.
    let (s, _) = enterprise.put(&format!("/api/v1/escorts/receivers/{steel}"), json!({"escort_id": null})).await;
    assert_eq!(s, StatusCode::OK);
    let i = check_in(&app, &cp, &steel, "晋D51006").await["id"].as_str().unwrap().to_string();
    app.clock.advance(Duration::minutes(11));
    assert_eq!(escort_sweep(&app).await.fallbacks, 1);
    assert_eq!(pending(&trip(i.clone()).await), (Some(police.clone()), Some("no_receiver_escort".into())));
    let (s, e) = act(&enterprise, &i, json!({"action": "confirm_arrival"})).await;
    assert_eq!((s, e["error"].as_str()), (StatusCode::CONFLICT, Some("escort_required")), "{e}");
    assert_eq!(pending(&trip(i.clone()).await), (Some(police.clone()), Some("no_receiver_escort".into())), "nothing changed");
    act(&police_user, &i, json!({"action": "accept_handoff"})).await;
    let (s, v) = act(&enterprise, &i, json!({"action": "confirm_arrival"})).await;
    assert_eq!((s, v["state"].as_str(), v["custodian"].as_str()), (StatusCode::OK, Some("at_destination"), Some(steel.as_str())), "{v}");
    assert_eq!(escort_sweep(&app).await.trips_checked, 0);

    // J. A `pass` truck has no escort: the watcher never looks at it.
    let body = json!({"plate": "晋D51007", "destination_id": steel, "eta": (now(&app) + Duration::hours(2)).to_rfc3339(), "crew": crew("green"),
                      "test_taken_at": (now(&app) - Duration::hours(10)).to_rfc3339(), "landing_tube": "LT-510007"});
    let (s, v) = cp.post("/api/v1/trips/check-in", body).await;
    assert_eq!((s, v["class"].as_str()), (StatusCode::CREATED, Some("pass")), "{v}");
    app.clock.advance(Duration::minutes(11));
    assert_eq!(escort_sweep(&app).await.trips_checked, 0);
    app.stop().await;
}
both!(every_escort_transition_around_the_fallback_roster, escort_transitions);

/// A sweep that runs exactly at a deadline raises nothing (met on time is not a breach) and must
/// look again: the next sweep after it raises the breach (found by `baton sim`).
async fn sweep_at_the_deadline(b: Backend) {
    let app = spawn_app(b).await;
    let cmd = app.login("commander").await;
    let cp = app.login("checkpoint").await;
    let dest = unit(&cmd, "壶关县太行钢材贸易有限公司").await;
    let body = json!({"plate": "晋D60001", "destination_id": dest, "eta": (now(&app) + Duration::hours(2)).to_rfc3339(), "crew": crew("green"),
                      "test_taken_at": (now(&app) - Duration::hours(10)).to_rfc3339(), "landing_tube": "LT-600001"});
    let (s, v) = cp.post("/api/v1/trips/check-in", body).await;
    assert_eq!((s, v["class"].as_str()), (StatusCode::CREATED, Some("pass")), "{v}");
    let due: chrono::DateTime<chrono::Utc> = v["deadline"]["at"].as_str().unwrap().parse().unwrap();
    assert_eq!(baton_store::alerts::sweep(&app.store, due).await.unwrap().raised, 0, "met exactly on time");
    let r = baton_store::alerts::sweep(&app.store, due + Duration::seconds(1)).await.unwrap();
    assert_eq!(r.raised, 1, "no arrival, once it is late: {r:?}");
    app.stop().await;
}
both!(a_sweep_exactly_at_a_deadline_looks_again, sweep_at_the_deadline);
