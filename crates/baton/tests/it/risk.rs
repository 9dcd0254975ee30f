//! Risk areas: create, edit (supersede), lift, history and "in force at"; imports of CSV (UTF-8
//! and GBK), JSON and xlsx with per-row errors and all-or-nothing writes; itinerary matching at
//! the window edges; permissions; bad input never a 5xx.
use baton_domain::clock::Clock;
use baton_store::{Principal, audit};
use baton_testkit::{Backend, Session, TestApp, both, spawn_app, t0};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn upload(s: &Session, query: &str, ct: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let r = s.raw(reqwest::Method::POST, &format!("/api/v1/risk-areas/import{query}")).header("content-type", ct).body(body).send().await.unwrap();
    let st = r.status();
    let text = r.text().await.unwrap();
    (st, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn in_force(s: &Session, at: Option<DateTime<Utc>>) -> Vec<Value> {
    let path = match at {
        Some(t) => format!("/api/v1/risk-areas?at={}", ts(t).replace('+', "%2B")),
        None => "/api/v1/risk-areas".into(),
    };
    let (st, v) = s.get(&path).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["areas"].as_array().unwrap().clone()
}

/// Risk-area audit entries (read with the system's scope).
async fn risk_audit(app: &TestApp) -> Vec<(String, String)> {
    let all = baton_store::page::PageQuery::largest();
    let entries = audit::search(&app.store.db, &Principal::system("test"), &audit::Search::default(), &all).await.unwrap();
    entries.items.into_iter().filter(|e| e.action.starts_with("risk_area.")).map(|e| (e.action, e.jurisdiction)).collect()
}

async fn history_len(s: &Session) -> usize {
    s.get("/api/v1/risk-areas/history").await.1["areas"].as_array().unwrap().len()
}

async fn lifecycle(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let (st, a) = c.post("/api/v1/risk-areas", json!({"division": "太原市小店区", "level": "高", "from": "2022-11-08"})).await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    assert_eq!((a["division_code"].as_str(), a["level"].as_str(), a["to"].is_null()), (Some("140105"), Some("high"), true));
    assert_eq!(a["division_name"], "山西省太原市小店区");
    let first = a["id"].as_str().unwrap().to_string();
    assert_eq!(in_force(&c, None).await.len(), 1);

    // Two hours later (sessions last 12 h) the area is changed to low: a new version supersedes the first.
    app.clock.advance(Duration::hours(2));
    let (st, b2) = c.post("/api/v1/risk-areas", json!({"division": "140105", "level": "low", "from": "2022-11-08", "note": "降级"})).await;
    assert_eq!(st, StatusCode::CREATED, "{b2}");
    assert_eq!(b2["replaces"], first.as_str());
    let now = in_force(&c, None).await;
    assert_eq!((now.len(), now[0]["level"].as_str()), (1, Some("low")));
    // As the lists stood an hour after the first entry, it was high.
    let then = in_force(&c, Some(t0() + Duration::hours(1))).await;
    assert_eq!((then.len(), then[0]["level"].as_str(), then[0]["id"].as_str()), (1, Some("high"), Some(first.as_str())));
    // Before it was declared: nothing.
    assert!(in_force(&c, Some(t0() - Duration::days(3))).await.is_empty());
    let (_, h) = c.get("/api/v1/risk-areas/history").await;
    let h = h["areas"].as_array().unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[1]["id"], first.as_str());
    assert!(h[1]["superseded_at"].is_string() && h[0]["superseded_at"].is_null());
    let (_, h) = c.get("/api/v1/risk-areas/history?division=1402").await;
    assert!(h["areas"].as_array().unwrap().is_empty());

    // Lift the current version; the old version cannot be lifted, nor the lifted one again.
    let cur = b2["id"].as_str().unwrap();
    let (st, l) = c.post(&format!("/api/v1/risk-areas/{cur}/lift"), json!({"note": "连续5天无新增"})).await;
    assert_eq!(st, StatusCode::OK, "{l}");
    assert_eq!(l["to"].as_str().map(|t| t.parse::<DateTime<Utc>>().unwrap()), Some(app.clock.now()));
    assert!(in_force(&c, None).await.is_empty());
    assert_eq!(in_force(&c, Some(app.clock.now() - Duration::minutes(1))).await.len(), 1);
    let (st, v) = c.post(&format!("/api/v1/risk-areas/{first}/lift"), json!({})).await;
    assert_eq!((st, v["error"].as_str()), (StatusCode::CONFLICT, Some("risk_area_superseded")));
    let (st, v) = c.post(&format!("/api/v1/risk-areas/{}/lift", l["id"].as_str().unwrap()), json!({})).await;
    assert_eq!((st, v["error"].as_str()), (StatusCode::CONFLICT, Some("risk_area_lifted")));
    assert_eq!(history_len(&c).await, 3);

    // Every write is audited, county-wide.
    let au = risk_audit(&app).await;
    let actions: Vec<&str> = au.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, ["risk_area.lift", "risk_area.create", "risk_area.create"]);
    assert!(au.iter().all(|(_, j)| j == "140427"), "the county's staff wrote them: the county's entries");
    app.stop().await;
}
both!(create_edit_lift_history_and_in_force_at, lifecycle);

fn xlsx(rows: &[[&str; 5]]) -> Vec<u8> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    for (i, h) in ["division", "place", "level", "from", "to"].iter().enumerate() {
        ws.write_string(0, i as u16, *h).unwrap();
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            if !v.is_empty() {
                ws.write_string(r as u32 + 1, c as u16, *v).unwrap();
            }
        }
    }
    wb.save_to_buffer().unwrap()
}

async fn imports(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let csv = "division,place,level,from,to\n140105,,high,2022-11-08,\n太原市迎泽区,某某小区,低,2022-11-09 08:00,2022-11-20\n";
    let (st, r) = upload(&c, "?source=省卫健委&note=11月10日通报", "text/csv", csv.as_bytes().to_vec()).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!((r["created"].as_u64(), r["superseded"].as_u64(), r["format"].as_str()), (Some(2), Some(0), Some("csv")));
    assert_eq!(r["list"]["source"], "省卫健委");
    assert_eq!(in_force(&c, None).await.len(), 2);

    // GBK, as Chinese Excel saves CSV: re-listing 小店区 supersedes it.
    let (gbk, _, _) = encoding_rs::GBK.encode("地区,等级,开始时间\n山西省太原市小店区,中风险,2022-11-08\n140427,低,2022-11-09\n");
    let (st, r) = upload(&c, "", "text/csv; charset=gbk", gbk.into_owned()).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!((r["created"].as_u64(), r["superseded"].as_u64()), (Some(2), Some(1)));
    let now = in_force(&c, None).await;
    assert_eq!(now.len(), 3);
    assert!(now.iter().any(|a| a["division_code"] == "140105" && a["level"] == "medium"));

    // JSON, replacing the whole list: everything it does not name is superseded.
    let body = json!([{"division": "140106", "place": "某某小区", "level": "high", "from": "2022-11-09T08:00:00+08:00", "to": null}]);
    let (st, r) = upload(&c, "?replace=true", "application/json", serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!((r["created"].as_u64(), r["superseded"].as_u64()), (Some(1), Some(3)));
    assert_eq!(in_force(&c, None).await.len(), 1);

    // xlsx.
    let (st, r) = upload(&c, "", XLSX, xlsx(&[["140427101", "", "high", "2022-11-09", ""], ["1401", "", "低", "2022-11-09", "2022-11-12"]])).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(r["created"].as_u64(), Some(2));
    assert_eq!(in_force(&c, None).await.len(), 3);

    // Bad rows in every format: each reported at its row, nothing written.
    let before = history_len(&c).await;
    let audit_before = risk_audit(&app).await;
    assert_eq!(audit_before.len(), 4);
    let bad_csv = "division,place,level,from,to\n140105,,high,2022-11-08,\n火星市,,high,2022-11-08,\n城区,,low,2022-11-08,\n140427,,severe,2022-11-08,\n140428,,low,11月8日,\n,,,,\n";
    let (st, v) = upload(&c, "", "text/csv", bad_csv.as_bytes().to_vec()).await;
    assert_eq!((st, v["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_input")), "{v}");
    let f = &v["fields"];
    assert_eq!(f["rows[3].division"]["code"], "division_unknown");
    assert_eq!(f["rows[4].division"]["code"], "division_ambiguous");
    assert!(f["rows[4].division"]["zh"].as_str().unwrap().contains("请写明上级"));
    assert_eq!(f["rows[5].level"]["code"], "risk_level_unknown");
    assert_eq!(f["rows[6].from"]["code"], "datetime_format");
    assert!(f.get("rows[7]").is_none(), "a blank row is passed over, as Excel shows it: {v}");
    assert!(f.get("rows[2].division").is_none(), "the good row is not reported: {v}");

    let (st, v) = upload(
        &c,
        "",
        XLSX,
        xlsx(&[["火星市", "", "high", "2022-11-08", ""], ["", "", "", "", ""], ["140105", "", "高", "2022-11-08", ""], ["140105", "", "x", "", ""]]),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["fields"]["rows[2].division"]["code"], "division_unknown");
    assert_eq!(v["fields"]["rows[5].level"]["code"], "risk_level_unknown");
    assert_eq!(v["fields"]["rows[5].from"]["code"], "required");

    let body = json!([{"division": "城区", "level": "high", "from": "2022-11-08"}, {}, {"division": "140105", "level": true, "from": "2022-11-08"}]);
    let (st, v) = upload(&c, "", "application/json", serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["fields"]["rows[3].level"]["code"], "invalid_type");
    let body = json!([{"division": "城区", "level": "high", "from": "2022-11-08"}, {}]);
    let (st, v) = upload(&c, "", "application/json", serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["fields"]["rows[1].division"]["code"], "division_ambiguous");
    assert_eq!(v["fields"]["rows[2]"]["code"], "row_empty");

    let (st, v) = upload(&c, "", "text/csv", b"division,levle,from\n140105,high,2022-11-08\n".to_vec()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"]["columns.levle"]["code"], "column_unknown");
    let (st, v) = upload(&c, "", XLSX, b"not a workbook".to_vec()).await;
    assert_eq!((st, v["fields"]["file"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("xlsx_unreadable")));
    let (st, v) = upload(&c, "", "application/pdf", b"%PDF".to_vec()).await;
    assert_eq!((st, v["error"].as_str()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_media_type")));

    assert_eq!(history_len(&c).await, before);
    assert_eq!(risk_audit(&app).await, audit_before);
    app.stop().await;
}
both!(imports_csv_gbk_json_xlsx_all_or_nothing, imports);

async fn matching(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let now = t0();
    // 小店区 high since 10 days ago; 坞城街道 (a township of 小店区) high too.
    let (st, v) = c.post("/api/v1/risk-areas", json!({"division": "140105", "level": "high", "from": ts(now - Duration::days(10))})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = c.post("/api/v1/risk-areas", json!({"division": "140427101", "level": "low", "from": ts(now - Duration::days(10))})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let check = |stays: Value| c.post("/api/v1/risk-areas/match", json!({"stays": stays}));
    let start = now - Duration::days(7);
    // Ends exactly at the window's start: no hit.
    let (st, r) = check(json!([{"place": "太原市小店区", "from": ts(start - Duration::hours(10)), "to": ts(start)}])).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert!(r["hits"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!((r["itinerary_days"].as_u64(), r["pass_through_max_hours"].as_u64()), (Some(7), Some(4)));
    // Inside the window by exactly 4 h: no; by 5 h: a hit, clipped to the window.
    let (_, r) = check(json!([{"place": "140105", "from": ts(start - Duration::hours(10)), "to": ts(start + Duration::hours(4))}])).await;
    assert!(r["hits"].as_array().unwrap().is_empty(), "{r}");
    let (_, r) = check(json!([{"place": "140105", "from": ts(start - Duration::hours(10)), "to": ts(start + Duration::hours(5))}])).await;
    let hits = r["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{r}");
    assert_eq!((hits[0]["level"].as_str(), hits[0]["coarse"].as_bool(), hits[0]["stay"].as_u64()), (Some("high"), Some(false), Some(0)));
    assert_eq!(hits[0]["overlap_from"].as_str().map(|t| t.parse::<DateTime<Utc>>().unwrap()), Some(start));
    assert_eq!(r["worst"], "high");
    // A 4-hour pass-through is not a stay.
    let (_, r) = check(json!([{"place": "140105", "from": ts(now - Duration::hours(6)), "to": ts(now - Duration::hours(2))}])).await;
    assert!(r["hits"].as_array().unwrap().is_empty());
    assert_eq!(r["stays"][0]["pass_through"], true);
    // A stay recorded only at city level, and one in 壶关县 (a low township inside): possible hits.
    let (_, r) = check(json!([
        {"place": "太原市", "from": ts(now - Duration::days(2)), "to": ts(now - Duration::days(1))},
        {"place": "壶关县", "from": ts(now - Duration::hours(20)), "to": ts(now)}
    ]))
    .await;
    let hits = r["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2, "{r}");
    assert!(hits.iter().all(|h| h["coarse"] == true));
    assert_eq!((r["worst"].clone(), r["worst_possible"].as_str()), (Value::Null, Some("high")));
    // A lifted area stops matching from its lifting time on (the lift is recorded an hour later).
    app.clock.advance(Duration::hours(1));
    let (_, list) = c.get("/api/v1/risk-areas").await;
    let id = list["areas"].as_array().unwrap().iter().find(|a| a["division_code"] == "140105").unwrap()["id"].as_str().unwrap().to_string();
    let (st, _) = c.post(&format!("/api/v1/risk-areas/{id}/lift"), json!({"at": ts(now - Duration::days(3))})).await;
    assert_eq!(st, StatusCode::OK);
    let (_, r) = check(json!([{"place": "140105", "from": ts(now - Duration::days(2)), "to": ts(now - Duration::days(1))}])).await;
    assert!(r["hits"].as_array().unwrap().is_empty(), "{r}");
    // As checked before the lift was recorded, it was a hit.
    let (_, r) = c
        .post("/api/v1/risk-areas/match", json!({"at": ts(now + Duration::minutes(30)), "stays": [{"place": "140105", "from": ts(now - Duration::days(2)), "to": ts(now - Duration::days(1))}]}))
        .await;
    assert_eq!(r["hits"].as_array().unwrap().len(), 1, "{r}");
    app.stop().await;
}
both!(itinerary_matching_at_the_window_edges, matching);

async fn permissions_and_bad_input(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let cp = app.login("checkpoint").await;
    let (st, a) = c.post("/api/v1/risk-areas", json!({"division": "140105", "level": "high", "from": "2022-11-08"})).await;
    assert_eq!(st, StatusCode::CREATED);
    let id = a["id"].as_str().unwrap();
    // Anyone signed in reads and matches; a checkpoint user cannot write.
    assert_eq!(in_force(&cp, None).await.len(), 1);
    let (st, _) = cp.get("/api/v1/risk-areas/history").await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = cp.post("/api/v1/risk-areas/match", json!({"stays": [{"place": "140105", "from": "2022-11-08", "to": "2022-11-09"}]})).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = cp.post("/api/v1/risk-areas", json!({"division": "140106", "level": "high", "from": "2022-11-08"})).await;
    assert_eq!((st, v["error"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    let (st, _) = cp.post(&format!("/api/v1/risk-areas/{id}/lift"), json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = upload(&cp, "", "text/csv", b"division,level,from\n140106,high,2022-11-08\n".to_vec()).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = app.anonymous().get("/api/v1/risk-areas").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Bad input: field errors, never a 5xx, nothing written.
    let (st, v) = c.post("/api/v1/risk-areas", json!({"division": "城区", "level": "severe", "from": "yesterday", "to": "2022-11-01"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["fields"]["division"]["code"], "division_ambiguous");
    assert_eq!(v["fields"]["level"]["code"], "risk_level_unknown");
    assert_eq!(v["fields"]["from"]["code"], "datetime_format");
    let (st, v) = c.post("/api/v1/risk-areas", json!({"division": "140106", "level": "high", "from": "2022-11-08", "to": "2022-11-08"})).await;
    assert_eq!((st, v["fields"]["to"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("to_before_from")));
    let (st, v) = c.post("/api/v1/risk-areas", json!({"division": "140106", "level": "high"})).await;
    assert_eq!((st, v["fields"]["from"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("required")));
    let (st, v) = c.post("/api/v1/risk-areas", json!({"division": "140106", "level": "high", "from": "2022-11-08", "colour": "red"})).await;
    assert_eq!((st, v["fields"]["colour"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_field")));
    let (st, v) = c.post(&format!("/api/v1/risk-areas/{id}/lift"), json!({"at": "2022-11-01"})).await;
    assert_eq!((st, v["fields"]["at"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("lift_before_from")));
    let (st, _) = c.post("/api/v1/risk-areas/not-a-uuid/lift", json!({})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = c.post(&format!("/api/v1/risk-areas/{}/lift", uuid::Uuid::now_v7()), json!({})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = c.get("/api/v1/risk-areas?at=tomorrow").await;
    assert_eq!((st, v["fields"]["at"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("datetime_format")));
    let (st, v) = c.get("/api/v1/risk-areas/history?division=火星市").await;
    assert_eq!((st, v["fields"]["division"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("division_unknown")));
    let (st, v) = c
        .post(
            "/api/v1/risk-areas/match",
            json!({"stays": [{"place": "火星市", "from": "2022-11-08", "to": "2022-11-07"}, {"place": "城区", "from": "x", "to": "2022-11-09"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["fields"]["stays[0].place"]["code"], "division_unknown");
    assert_eq!(v["fields"]["stays[0].to"]["code"], "to_before_from");
    assert_eq!(v["fields"]["stays[1].place"]["code"], "division_ambiguous");
    assert_eq!(v["fields"]["stays[1].from"]["code"], "datetime_format");
    let (st, _) = upload(&c, "", "text/csv", Vec::new()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(history_len(&c).await, 1);

    // Idempotent create: a retry with the same key returns the first answer.
    let body = json!({"division": "140106", "level": "low", "from": "2022-11-08"});
    let post = || c.raw(reqwest::Method::POST, "/api/v1/risk-areas").header("idempotency-key", "ra-1").json(&body).send();
    let r1: Value = post().await.unwrap().json().await.unwrap();
    let r2 = post().await.unwrap();
    assert_eq!(r2.headers()["idempotent-replay"], "true");
    assert_eq!(r2.json::<Value>().await.unwrap()["id"], r1["id"]);
    assert_eq!(history_len(&c).await, 2);

    // The page renders for both, with the forms only for the writer.
    let page = |s: &Session| s.raw(reqwest::Method::GET, "/risk-areas").send();
    let html = page(&c).await.unwrap().text().await.unwrap();
    assert!(html.contains("小店区") && html.contains("risk-import-form") && html.contains("risk-lift-form"));
    let r = page(&cp).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("小店区") && !html.contains("risk-import-form"));
    let r = cp.raw(reqwest::Method::GET, "/risk-areas/history").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.stop().await;
}
both!(permissions_and_bad_input_on_risk_areas, permissions_and_bad_input);

async fn ui_forms(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let form = |path: &'static str, fields: Vec<(&'static str, String)>| {
        let mut f = fields;
        f.push(("csrf", c.csrf.clone()));
        c.raw(reqwest::Method::POST, path).form(&f).send()
    };
    // Add one by the form.
    let r = form(
        "/risk-areas",
        vec![
            ("division", "太原市小店区".into()),
            ("place", String::new()),
            ("level", "high".into()),
            ("from", "2022-11-08T08:00".into()),
            ("to", String::new()),
            ("note", String::new()),
        ],
    )
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(in_force(&c, None).await.len(), 1);
    // A pasted CSV with a bad row: 422, the rows listed, nothing written.
    let r = form(
        "/risk-areas/import",
        vec![
            ("format", "csv".into()),
            ("content", "division,level,from\n140106,high,2022-11-08\n城区,low,2022-11-08\n".into()),
            ("source", String::new()),
            ("note", String::new()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("rows[3].division") && html.contains("division_ambiguous"), "{html}");
    assert_eq!(in_force(&c, None).await.len(), 1);
    let r = form(
        "/risk-areas/import",
        vec![
            ("format", "csv".into()),
            ("content", "division,level,from\n140106,high,2022-11-08\n".into()),
            ("source", "paste".into()),
            ("note", String::new()),
        ],
    )
    .await
    .unwrap();
    assert!(r.status().is_success());
    assert_eq!(in_force(&c, None).await.len(), 2);
    // Lift one.
    let id = in_force(&c, None).await[0]["id"].as_str().unwrap().to_string();
    let r = form("/risk-areas/lift", vec![("id", id), ("at", String::new()), ("note", String::new())]).await.unwrap();
    assert!(r.status().is_success());
    assert_eq!(in_force(&c, None).await.len(), 1);
    // A form without the CSRF token changes nothing.
    let r = c
        .raw(reqwest::Method::POST, "/risk-areas")
        .form(&[("division", "140107"), ("level", "high"), ("from", "2022-11-08T08:00")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    assert_eq!(history_len(&c).await, 3);
    app.stop().await;
}
both!(risk_area_pages_add_import_and_lift, ui_forms);
