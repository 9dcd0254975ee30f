//! The whitelist (白名单): every status transition and the refused ones, fraud, review, expiry
//! on the manual clock, matching at check-in, xlsx import (a bad row writes nothing) and export
//! (masked; a reveal is audited), personal data sealed at rest, permission and scope, and bad
//! input that never gets a 5xx. Each runs on SQLite and PostgreSQL.
use baton_store::sheet::{RCell, XCell, read_sheet, write_sheet};
use baton_testkit::{Backend, Session, both, spawn_app, t0};
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const CODE: &str = "91350100M000100Y43";
const CODE2: &str = "91110000802100433B";

fn id_number(first17: &str) -> String {
    let c = baton_domain::ident::IdNumber::check_char(first17.as_bytes()) as char;
    format!("{first17}{c}")
}

fn days(n: i64) -> String {
    (t0() + Duration::days(n)).to_rfc3339()
}

fn vehicle(plate: &str) -> Value {
    json!({"kind": "vehicle", "tier": "county", "plate": plate, "name": "太行物流", "valid_from": days(-1), "valid_until": days(30)})
}

fn driver(id: &str, phone: &str) -> Value {
    json!({"kind": "driver", "tier": "city", "name": "张师傅", "id_number": id, "phone": phone, "valid_from": days(-1), "valid_until": days(2)})
}

async fn create(s: &Session, body: Value) -> String {
    let (st, v) = s.post("/api/v1/whitelist", body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "pending_review");
    v["id"].as_str().unwrap().to_string()
}

async fn act(s: &Session, id: &str, what: &str, body: Value) -> (StatusCode, Value) {
    s.post(&format!("/api/v1/whitelist/{id}/{what}"), body).await
}

async fn matched(s: &Session, body: Value) -> Value {
    let (st, v) = s.post("/api/v1/whitelist/match", body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

async fn upload(s: &Session, bytes: Vec<u8>) -> (StatusCode, Value) {
    let r = s.raw(reqwest::Method::POST, "/api/v1/whitelist/import").header("content-type", XLSX).body(bytes).send().await.unwrap();
    let st = r.status();
    let text = r.text().await.unwrap();
    (st, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn export(s: &Session, q: &str) -> (StatusCode, String, Vec<u8>) {
    let r = s.raw(reqwest::Method::GET, &format!("/api/v1/whitelist/export{q}")).send().await.unwrap();
    let st = r.status();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (st, ct, r.bytes().await.unwrap().to_vec())
}

async fn page(s: &Session, path: &str) -> (StatusCode, String) {
    let r = s.raw(reqwest::Method::GET, path).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn count(s: &Session) -> usize {
    s.get("/api/v1/whitelist").await.1["entries"].as_array().unwrap().len()
}

async fn audit_count(s: &Session) -> usize {
    s.get("/api/v1/audit?limit=1000").await.1["entries"].as_array().unwrap().len()
}

async fn lifecycle(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let id = create(&c, vehicle("晋D12345")).await;
    let plate = json!({"plate": "晋d·12345"});
    // Pending review does not count.
    let m = matched(&c, plate.clone()).await;
    assert_eq!(m["whitelisted"], false);
    assert_eq!(m["vehicle"]["problem"], "pending_review");
    // Only review leaves pending_review; every change needs a reason.
    assert_eq!(act(&c, &id, "status", json!({"to": "active", "reason": "x"})).await.1["error"], "whitelist_review_required");
    let (s, v) = act(&c, &id, "review", json!({"decision": "approve", "reason": " "})).await;
    assert_eq!((s, v["fields"]["reason"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("reason_required")));
    let (s, v) = act(&c, &id, "review", json!({"decision": "maybe", "reason": "x"})).await;
    assert_eq!((s, v["fields"]["decision"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("review_decision_unknown")));
    let (s, v) = act(&c, &id, "review", json!({"decision": "approve", "reason": "材料齐全"})).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("active")), "{v}");
    assert_eq!(v["counts_now"], true);
    let m = matched(&c, plate.clone()).await;
    assert_eq!(m["whitelisted"], true);
    assert_eq!(m["matched"][0], id.as_str());
    assert_eq!(act(&c, &id, "review", json!({"decision": "reject", "reason": "x"})).await.1["error"], "whitelist_not_pending");
    // active → suspended → active.
    assert_eq!(act(&c, &id, "status", json!({"to": "suspended", "reason": "核查中"})).await.1["status"], "suspended");
    assert_eq!(matched(&c, plate.clone()).await["vehicle"]["problem"], "suspended");
    assert_eq!(act(&c, &id, "status", json!({"to": "suspended", "reason": "again"})).await.1["error"], "whitelist_transition");
    assert_eq!(act(&c, &id, "status", json!({"to": "active", "reason": "核查无误"})).await.1["status"], "active");
    let (s, v) = act(&c, &id, "status", json!({"to": "flying", "reason": "x"})).await;
    assert_eq!((s, v["fields"]["to"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("whitelist_status_unknown")));
    // Fraud suspends at once and blocks reinstating until cleared.
    let (s, v) = act(&c, &id, "fraud", json!({"reason": "证件伪造"})).await;
    assert_eq!((s, v["status"].as_str(), v["fraud"].as_bool()), (StatusCode::OK, Some("suspended"), Some(true)));
    let m = matched(&c, plate.clone()).await;
    assert_eq!((m["whitelisted"].as_bool(), m["vehicle"]["problem"].as_str()), (Some(false), Some("fraud")));
    assert!(m["vehicle"]["reason_zh"].as_str().unwrap().contains("造假"));
    assert_eq!(act(&c, &id, "fraud", json!({"reason": "again"})).await.1["error"], "whitelist_fraud_already");
    assert_eq!(act(&c, &id, "status", json!({"to": "active", "reason": "x"})).await.1["error"], "whitelist_fraud");
    assert_eq!(act(&c, &id, "fraud", json!({"fraud": false, "reason": "复核为误报"})).await.1["fraud"], false);
    assert_eq!(act(&c, &id, "status", json!({"to": "active", "reason": "恢复"})).await.1["status"], "active");
    // Revoked is final.
    assert_eq!(act(&c, &id, "status", json!({"to": "revoked", "reason": "企业注销"})).await.1["status"], "revoked");
    for (what, body) in [
        ("status", json!({"to": "active", "reason": "x"})),
        ("status", json!({"to": "suspended", "reason": "x"})),
        ("fraud", json!({"reason": "x"})),
        ("review", json!({"decision": "approve", "reason": "x"})),
    ] {
        let (s, v) = act(&c, &id, what, body).await;
        assert_eq!((s, v["error"].as_str()), (StatusCode::CONFLICT, Some("whitelist_revoked")));
    }
    // The history tells every change with its reason and actor.
    let (_, e) = c.get(&format!("/api/v1/whitelist/{id}")).await;
    let h = e["history"].as_array().unwrap();
    let kinds: Vec<&str> = h.iter().map(|x| x["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["create", "approve", "suspend", "reinstate", "flag_fraud", "clear_fraud", "reinstate", "revoke"]);
    assert!(h.iter().all(|x| !x["reason"].as_str().unwrap().is_empty() && x["actor"] == "commander"));
    assert_eq!(h[4]["reason"], "证件伪造");
    let (_, a) = c.get(&format!("/api/v1/audit?object_id={id}")).await;
    assert_eq!(a["entries"].as_array().unwrap().len(), 8);
    assert_eq!(a["entries"][0]["action"], "whitelist.revoke");
    // A new entry for the plate may follow the revoked one; a second live one may not.
    let id2 = create(&c, vehicle("晋D12345")).await;
    let (s, v) = c.post("/api/v1/whitelist", vehicle("晋D12345")).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::CONFLICT, Some("whitelist_duplicate")));
    // Rejected: only revoke remains.
    act(&c, &id2, "review", json!({"decision": "reject", "reason": "材料不全"})).await;
    assert_eq!(act(&c, &id2, "status", json!({"to": "active", "reason": "x"})).await.1["error"], "whitelist_transition");
    assert_eq!(act(&c, &id2, "status", json!({"to": "revoked", "reason": "清理"})).await.1["status"], "revoked");
    app.stop().await;
}
both!(whitelist_status_machine_review_and_fraud, lifecycle);

async fn expiry_and_matching(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let d1 = id_number("14042719800101123");
    let d2 = id_number("14042719850505456");
    let v = create(&c, vehicle("晋DD12345")).await;
    let a = create(&c, driver(&d1, "13800134567")).await;
    let bb = create(&c, driver(&d2, "13800134568")).await;
    let mut later = driver(&id_number("14042719900909789"), "13800134569");
    later["valid_from"] = json!(days(5));
    later["valid_until"] = json!(days(10));
    let l = create(&c, later).await;
    let e = create(
        &c,
        json!({"kind": "enterprise", "tier": "province", "name": "太行钢贸", "credit_code": CODE, "valid_from": days(-1), "valid_until": days(60)}),
    )
    .await;
    for id in [&v, &a, &bb, &l, &e] {
        assert_eq!(act(&c, id, "review", json!({"decision": "approve", "reason": "ok"})).await.0, StatusCode::OK);
    }
    let all = json!({"plate": "晋DD12345", "driver_id_numbers": [d1, d2], "enterprise_code": CODE});
    let m = matched(&c, all.clone()).await;
    assert_eq!(m["whitelisted"], true, "{m}");
    assert_eq!(m["matched"].as_array().unwrap().len(), 4);
    // The driver is shown masked, never in full.
    assert!(m["drivers"][0]["key"].as_str().unwrap().contains("********"));
    assert!(!m.to_string().contains(&d1));
    // Not listed.
    let m = matched(&c, json!({"plate": "晋D54321", "enterprise_code": CODE2})).await;
    assert_eq!((m["vehicle"]["problem"].as_str(), m["enterprise"]["problem"].as_str()), (Some("not_listed"), Some("not_listed")));
    // Not yet valid, then valid, on the manual clock.
    let d3 = id_number("14042719900909789");
    assert_eq!(matched(&c, json!({"driver_id_numbers": [d3]})).await["drivers"][0]["problem"], "not_yet_valid");
    // Two days on, the drivers' validity has ended; the vehicle still counts.
    app.clock.advance(Duration::days(2));
    // Sessions last 12 hours: sign in again on the moved clock.
    let c = app.login("commander").await;
    let m = matched(&c, all).await;
    assert_eq!(m["whitelisted"], false);
    assert_eq!(m["vehicle"]["ok"], true);
    assert_eq!(m["drivers"][0]["problem"], "expired");
    assert!(m["drivers"][1]["reason_en"].as_str().unwrap().contains("expired"));
    let (_, got) = c.get(&format!("/api/v1/whitelist/{a}")).await;
    assert_eq!((got["counts_now"].as_bool(), got["problem"].as_str()), (Some(false), Some("expired")));
    app.clock.advance(Duration::days(4));
    let c = app.login("commander").await;
    assert_eq!(matched(&c, json!({"driver_id_numbers": [d3]})).await["whitelisted"], true);
    // Bad match input.
    let (s, v) = c.post("/api/v1/whitelist/match", json!({})).await;
    assert_eq!((s, v["fields"]["plate"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("match_empty")));
    let (s, v) =
        c.post("/api/v1/whitelist/match", json!({"plate": "晋D1", "driver_id_numbers": ["110105194912310021"], "enterprise_code": "1"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"]["plate"]["code"], "plate_format");
    assert_eq!(v["fields"]["driver_id_numbers[0]"]["code"], "id_number_check");
    assert_eq!(v["fields"]["enterprise_code"]["code"], "credit_code_length");
    app.stop().await;
}
both!(whitelist_expiry_and_check_in_matching, expiry_and_matching);

async fn permissions_and_scope(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let id = create(&c, vehicle("晋D12345")).await;
    act(&c, &id, "review", json!({"decision": "approve", "reason": "ok"})).await;
    // The checkpoint (unit scope) reads the county's list and matches, but cannot write.
    let cp = app.login("checkpoint").await;
    assert_eq!(count(&cp).await, 1);
    assert_eq!(cp.get(&format!("/api/v1/whitelist/{id}")).await.0, StatusCode::OK);
    assert_eq!(matched(&cp, json!({"plate": "晋D12345"})).await["whitelisted"], true);
    assert_eq!(cp.post("/api/v1/whitelist", vehicle("晋D22222")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(act(&cp, &id, "status", json!({"to": "suspended", "reason": "x"})).await.0, StatusCode::FORBIDDEN);
    assert_eq!(act(&cp, &id, "fraud", json!({"reason": "x"})).await.0, StatusCode::FORBIDDEN);
    assert_eq!(act(&cp, &id, "review", json!({"decision": "reject", "reason": "x"})).await.0, StatusCode::FORBIDDEN);
    assert_eq!(upload(&cp, write_sheet("s", &[vec![XCell::Text("类型".into())]]).unwrap()).await.0, StatusCode::FORBIDDEN);
    // The enterprise and township staff have no whitelist rights; nobody anonymous has any.
    for who in ["enterprise", "longquan"] {
        let s = app.login(who).await;
        assert_eq!(s.get("/api/v1/whitelist").await.0, StatusCode::FORBIDDEN, "{who}");
        assert_eq!(s.post("/api/v1/whitelist/match", json!({"plate": "晋D12345"})).await.0, StatusCode::FORBIDDEN, "{who}");
        assert_eq!(s.get("/api/v1/whitelist/export").await.0, StatusCode::FORBIDDEN, "{who}");
    }
    assert_eq!(app.anonymous().get("/api/v1/whitelist").await.0, StatusCode::UNAUTHORIZED);
    // Leaders read.
    assert_eq!(count(&app.login("leader").await).await, 1);
    // An entry of one township (made by a writer scoped to 百尺镇) is not seen from another township's checkpoint.
    let baichi = baton_store::Principal {
        scope: baton_domain::scope::Scope::Division { code: "140427101".into() },
        name: "baichi-writer".into(),
        ..baton_store::Principal::system("t")
    };
    let input: baton_store::whitelist::EntryInput = serde_json::from_value(vehicle("晋D33333")).unwrap();
    let local = baton_store::whitelist::create(&app.store, &baichi, &input).await.unwrap();
    let lid = local.entry.id.to_string();
    assert_eq!(local.entry.jurisdiction, "140427101");
    assert_eq!(cp.get(&format!("/api/v1/whitelist/{lid}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(count(&cp).await, 1);
    assert_eq!(matched(&cp, json!({"plate": "晋D33333"})).await["vehicle"]["problem"], "not_listed");
    // The county sees it and may change it; the township writer cannot change the county's entry.
    assert_eq!(c.get(&format!("/api/v1/whitelist/{lid}")).await.0, StatusCode::OK);
    let county_id = uuid::Uuid::parse_str(&id).unwrap();
    let suspend = baton_store::whitelist::StatusInput { to: "suspended".into(), reason: "x".into() };
    assert!(matches!(baton_store::whitelist::change_status(&app.store, &baichi, county_id, &suspend).await, Err(baton_domain::Error::Forbidden)));
    // Unknown and malformed ids are not found.
    assert_eq!(c.get("/api/v1/whitelist/0190b5a4-7c1e-7000-8000-000000000000").await.0, StatusCode::NOT_FOUND);
    assert_eq!(c.get("/api/v1/whitelist/nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(act(&c, "nope", "status", json!({"to": "revoked", "reason": "x"})).await.0, StatusCode::NOT_FOUND);
    app.stop().await;
}
both!(whitelist_permissions_and_scope, permissions_and_scope);

fn header() -> Vec<XCell> {
    ["类型", "层级", "名称/姓名", "统一社会信用代码", "车牌号", "身份证号", "手机号", "有效期起", "有效期止", "备注"]
        .iter()
        .map(|s| XCell::Text((*s).into()))
        .collect()
}

fn row(cells: &[&str]) -> Vec<XCell> {
    cells.iter().map(|s| if s.is_empty() { XCell::Text(String::new()) } else { XCell::Text((*s).into()) }).collect()
}

async fn import_export(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let d1 = id_number("14042719800101123");
    let date = |y, m, d| XCell::Date(chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap());
    // A good sheet: date cells and date text, labels in Chinese and English, a phone typed as a number.
    let mut good = vec![
        header(),
        row(&["企业", "省级", "太行钢贸", CODE, "", "", "", "2022-11-01", "2022-12-31", ""]),
        row(&["vehicle", "county", "", "", "晋D12345", "", "", "2022/11/01", "2022/12/31", "冷链"]),
        vec![
            XCell::Text("司机".into()),
            XCell::Text("市级".into()),
            XCell::Text("张师傅".into()),
            XCell::Text(String::new()),
            XCell::Text(String::new()),
            XCell::Text(d1.clone()),
            XCell::Number(13800134567.0),
            date(2022, 11, 1),
            date(2022, 11, 30),
        ],
    ];
    let (s, v) = upload(&c, write_sheet("白名单", &good).unwrap()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["imported"], 3);
    assert_eq!(count(&c).await, 3);
    let (_, list) = c.get(&format!("/api/v1/whitelist?id_number={d1}")).await;
    let e = &list["entries"][0];
    assert_eq!((e["kind"].as_str(), e["status"].as_str(), e["phone"].as_str()), (Some("driver"), Some("pending_review"), Some("138****4567")));
    // 2022-11-30 is valid through the end of that day, China time.
    assert_eq!(e["valid_until"], "2022-11-30T16:00:00Z");
    let (_, a) = c.get("/api/v1/audit?action=whitelist.import").await;
    assert_eq!(a["entries"].as_array().unwrap().len(), 1);

    // A sheet with bad rows writes nothing and names every problem by row.
    let entries_before = count(&c).await;
    let audit_before = audit_count(&c).await;
    good.truncate(1);
    good.extend([
        row(&["车辆", "县级", "", "", "晋D1234", "", "", "2022-11-01", "2022-12-31", ""]),
        row(&["司机", "县级", "李四", "", "", "110105194912310021", "13800134500", "2022-11-01", "2022-12-31", ""]),
        row(&["企业", "县级", "某公司", "91350100M000100Y44", "", "", "", "2022-11-01", "2022-12-31", ""]),
        row(&["车辆", "乡级", "", "", "晋D55555", "", "", "2022-11-01", "2022-12-31", ""]),
        row(&["车辆", "县级", "", "", "晋D66666", "", "", "2022-13-01", "2022-10-01", ""]),
        row(&["车辆", "县级", "", "", "晋D77777", "", "", "2022-11-01", "2022-12-31", ""]),
        row(&["车辆", "县级", "", "", "晋D77777", "", "", "2022-11-01", "2022-12-31", ""]),
        row(&["车辆", "县级", "", "", "晋D12345", "", "", "2022-11-01", "2022-12-31", ""]),
        row(&["车辆", "县级", "", "", "晋D88888", "", "", "2022-11-01", "2022-11-05", ""]),
        row(&["船", "县级", "", "", "", "", "", "2022-11-01", "2022-12-31", ""]),
        row(&["车辆", "县级", "", "", "晋D99999", "", "", "2022-11-01", "2022-12-31", ""]),
    ]);
    let (s, v) = upload(&c, write_sheet("白名单", &good).unwrap()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let f = &v["fields"];
    assert_eq!(f["rows[2].plate"]["code"], "plate_format");
    assert_eq!(f["rows[3].id_number"]["code"], "id_number_check");
    assert_eq!(f["rows[4].credit_code"]["code"], "credit_code_check");
    assert_eq!(f["rows[5].tier"]["code"], "whitelist_tier_unknown");
    assert_eq!(f["rows[6].valid_from"]["code"], "date_format");
    assert_eq!(f["rows[8].plate"]["code"], "duplicate_in_file");
    assert!(f["rows[8].plate"]["en"].as_str().unwrap().contains("row 7"));
    assert_eq!(f["rows[9].plate"]["code"], "whitelist_duplicate");
    assert_eq!(f["rows[10].valid_until"]["code"], "validity_past");
    assert_eq!(f["rows[11].kind"]["code"], "whitelist_kind_unknown");
    assert!(f["rows[12]"].is_null() && f["rows[7].plate"].is_null());
    assert_eq!(count(&c).await, entries_before);
    assert_eq!(audit_count(&c).await, audit_before);
    // Wrong type of file, not a workbook, a missing column, an empty sheet.
    let r = c.raw(reqwest::Method::POST, "/api/v1/whitelist/import").header("content-type", "application/pdf").body("a,b").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, v) = upload(&c, b"PK not really a zip".to_vec()).await;
    assert_eq!((s, v["fields"]["file"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("xlsx_unreadable")));
    let (s, v) = upload(&c, write_sheet("s", &[row(&["名称", "车牌号"]), row(&["a", "晋D12345"])]).unwrap()).await;
    assert_eq!((s, v["fields"]["header.kind"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("xlsx_column_missing")));
    let (s, v) = upload(&c, write_sheet("s", &[header()]).unwrap()).await;
    assert_eq!((s, v["fields"]["file"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("xlsx_empty")));
    assert_eq!(count(&c).await, entries_before);

    // Export: masked by default, for anyone who may read.
    let cp = app.login("checkpoint").await;
    let (st, ct, bytes) = export(&cp, "").await;
    assert_eq!((st, ct.as_str()), (StatusCode::OK, XLSX));
    let rows = read_sheet(&bytes).unwrap();
    assert_eq!(rows.len(), 4);
    let text: Vec<String> = rows.iter().flat_map(|(_, r)| r.iter().map(RCell::text)).collect();
    assert!(text.contains(&"晋D12345".to_string()) && text.contains(&CODE.to_string()));
    assert!(text.iter().any(|t| t.contains("********")) && text.contains(&"138****4567".to_string()));
    assert!(!text.iter().any(|t| t.contains(&d1) || t.contains("13800134567")));
    assert_eq!(export(&cp, "?reveal=true").await.0, StatusCode::FORBIDDEN);
    // Filters apply to the export.
    let rows = read_sheet(&export(&c, "?kind=vehicle").await.2).unwrap();
    assert_eq!(rows.len(), 2);
    // Revealed: full values, and the export is audited.
    assert_eq!(c.get("/api/v1/audit?action=whitelist.export").await.1["entries"].as_array().unwrap().len(), 0);
    let (st, _, bytes) = export(&c, "?reveal=true").await;
    assert_eq!(st, StatusCode::OK);
    let text: Vec<String> = read_sheet(&bytes).unwrap().iter().flat_map(|(_, r)| r.iter().map(RCell::text).collect::<Vec<_>>()).collect();
    assert!(text.contains(&d1) && text.contains(&"13800134567".to_string()));
    let (_, a) = c.get("/api/v1/audit?action=whitelist.export").await;
    assert_eq!(a["entries"].as_array().unwrap().len(), 1);
    assert!(!a.to_string().contains(&d1));
    // A revealed export imports again (into another jurisdiction's list, here after revoking).
    let sheet = read_sheet(&bytes).unwrap();
    assert_eq!(sheet[0].1[0], RCell::Text("类型".into()));
    app.stop().await;
}
both!(whitelist_xlsx_import_and_export, import_export);

async fn personal_at_rest(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let secrets: Vec<(String, String)> =
        (0..5).map(|i| (id_number(&format!("140427198802{:02}321", i + 1)), format!("1390355{:04}", 7000 + i))).collect();
    for (id, phone) in &secrets {
        create(&c, driver(id, phone)).await;
    }
    let (id, phone) = &secrets[2];
    // Found through the blind index; shown masked.
    let (_, l) = c.get(&format!("/api/v1/whitelist?id_number={id}")).await;
    assert_eq!(l["entries"].as_array().unwrap().len(), 1);
    let eid = l["entries"][0]["id"].as_str().unwrap().to_string();
    assert!(!l.to_string().contains(id.as_str()) && !l.to_string().contains(phone.as_str()));
    // Each driver is fully revealed only with the right, and audited.
    let who = baton_store::Principal::system("t");
    let full = baton_store::whitelist::reveal(&app.store, &who, uuid::Uuid::parse_str(&eid).unwrap(), baton_domain::ident::PersonalKind::IdNumber)
        .await
        .unwrap();
    assert_eq!(full.as_deref(), Some(id.as_str()));
    let (_, a) = c.get(&format!("/api/v1/audit?action=personal.reveal&object_id={eid}")).await;
    assert_eq!(a["entries"].as_array().unwrap().len(), 1);
    match b {
        Backend::Sqlite => {
            let mut bytes = Vec::new();
            for f in ["baton.db", "baton.db-wal", "baton.db-shm"] {
                if let Ok(b) = std::fs::read(app.config.data_dir.join(f)) {
                    bytes.extend(b);
                }
            }
            for (id, phone) in &secrets {
                for s in [id, phone] {
                    assert!(!bytes.windows(s.len()).any(|w| w == s.as_bytes()), "{s} is in the database file in plain text");
                }
            }
            assert!(bytes.windows("张师傅".len()).any(|w| w == "张师傅".as_bytes()), "the scan finds plain text");
        }
        Backend::Postgres => {
            let rows = app
                .store
                .db
                .fetch_all(baton_store::q!(
                    "SELECT CAST(w AS TEXT) AS t FROM whitelist_entries w UNION ALL SELECT CAST(h AS TEXT) AS t FROM whitelist_history h
                     UNION ALL SELECT CAST(a AS TEXT) AS t FROM audit_log a"
                ))
                .await
                .unwrap();
            let all: String = rows.iter().map(|r| r.get::<String>("t").unwrap()).collect();
            for (id, phone) in &secrets {
                assert!(!all.contains(id.as_str()) && !all.contains(phone.as_str()), "{id} or {phone} stored in plain text");
            }
            assert!(all.contains("张师傅"));
        }
    }
    // Key rotation re-seals them, and they still open.
    let mut ring = baton_store::Keyring::load(&app.config.key_file).unwrap();
    ring.rotate();
    ring.save(&app.config.key_file).unwrap();
    let store = baton::app::open_store(&app.config, app.clock.clone()).await.unwrap();
    assert_eq!(baton_store::whitelist::reseal_all(&store).await.unwrap(), 10);
    assert_eq!(baton_store::whitelist::reseal_all(&store).await.unwrap(), 0);
    let l = baton_store::whitelist::list(&store, &who, &Default::default(), &Default::default()).await.unwrap().items;
    assert!(l.iter().any(|e| e.phone.as_deref() == Some("139****7002")));
    app.stop().await;
}
both!(whitelist_personal_data_sealed_masked_and_revealed_with_audit, personal_at_rest);

async fn bad_input(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let id = create(&c, vehicle("晋D12345")).await;
    let before = count(&c).await;
    // Field errors for every kind, all at once.
    let (s, v) = c
        .post(
            "/api/v1/whitelist",
            json!({"kind": "driver", "tier": "town", "name": "", "id_number": "123", "phone": "12", "plate": "晋D12345", "valid_from": days(3), "valid_until": days(1)}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    for (f, code) in [
        ("tier", "whitelist_tier_unknown"),
        ("name", "required"),
        ("id_number", "id_number_length"),
        ("phone", "phone_format"),
        ("plate", "field_not_for_kind"),
        ("valid_until", "validity_order"),
    ] {
        assert_eq!(v["fields"][f]["code"], code, "{f}: {v}");
    }
    let (s, v) = c.post("/api/v1/whitelist", json!({"kind": "enterprise", "tier": "county", "name": "x", "credit_code": "91350100M000100Y4I", "valid_from": days(0), "valid_until": days(1)})).await;
    assert_eq!((s, v["fields"]["credit_code"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("credit_code_chars")));
    let (s, v) = c
        .post("/api/v1/whitelist", json!({"kind": "vehicle", "tier": "county", "plate": "晋D1", "valid_from": "tomorrow", "valid_until": days(1)}))
        .await;
    assert_eq!((s, v["fields"]["valid_from"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_type")));
    let (s, v) = c.get("/api/v1/whitelist?status=flying").await;
    assert_eq!((s, v["fields"]["status"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_filter")));
    assert_eq!(c.get("/api/v1/whitelist?colour=red").await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(c.get("/api/v1/whitelist?fraud=perhaps").await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(c.get("/api/v1/whitelist?id_number=1234").await.0, StatusCode::UNPROCESSABLE_ENTITY);
    // Garbage to every route: a 4xx, never a 5xx, and nothing changes.
    let bodies: Vec<(&str, &str, Vec<u8>)> = vec![
        ("/api/v1/whitelist", "application/json", b"{".to_vec()),
        ("/api/v1/whitelist", "application/json", b"[]".to_vec()),
        ("/api/v1/whitelist", "text/plain", b"hello".to_vec()),
        ("/api/v1/whitelist/match", "application/json", b"{\"driver_id_numbers\": \"x\"}".to_vec()),
        ("/api/v1/whitelist/match", "application/json", b"{\"plate\": 5}".to_vec()),
        ("/api/v1/whitelist/import", XLSX, Vec::new()),
        ("/api/v1/whitelist/import", XLSX, vec![0u8; 5000]),
        ("/api/v1/whitelist/import", XLSX, vec![b'x'; 2 << 20]),
    ];
    let id_routes = ["status", "fraud", "review"].map(|w| format!("/api/v1/whitelist/{id}/{w}"));
    let mut all: Vec<(String, &str, Vec<u8>)> = bodies.into_iter().map(|(p, ct, b)| (p.to_string(), ct, b)).collect();
    for r in &id_routes {
        all.push((r.clone(), "application/json", b"{\"reason\": 5}".to_vec()));
        all.push((r.clone(), "application/json", b"{\"to\": \"active\", \"reason\": \"x\", \"extra\": 1}".to_vec()));
        all.push((
            r.clone(),
            "application/json",
            format!("{{\"to\": \"revoked\", \"decision\": \"reject\", \"reason\": \"{}\"}}", "长".repeat(600)).into_bytes(),
        ));
    }
    for (path, ct, body) in all {
        let big = body.len() > 1 << 20;
        let r = match c.raw(reqwest::Method::POST, &path).header("content-type", ct).body(body).send().await {
            Ok(r) => r,
            // The server may answer 413 and close before an oversized body is fully sent.
            Err(e) if big => {
                assert!(!e.is_status(), "{path}: {e}");
                continue;
            }
            Err(e) => panic!("{path}: {e}"),
        };
        let st = r.status();
        assert!(st.is_client_error(), "{path} {ct}: {st}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].is_string() && v["request_id"].is_string(), "{path}: {v}");
    }
    assert_eq!(count(&c).await, before);
    let (_, e) = c.get(&format!("/api/v1/whitelist/{id}")).await;
    assert_eq!((e["status"].as_str(), e["history"].as_array().unwrap().len()), (Some("pending_review"), 1));
    assert_eq!(c.raw(reqwest::Method::DELETE, &format!("/api/v1/whitelist/{id}")).send().await.unwrap().status(), StatusCode::METHOD_NOT_ALLOWED);
    app.stop().await;
}
both!(whitelist_bad_input_is_refused_and_never_5xx, bad_input);

/// The pages: the list, the add form, an entry with its history and forms, the export link.
async fn pages(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let id = create(&c, vehicle("晋D12345")).await;
    let (st, html) = page(&c, "/whitelist").await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("晋D12345") && html.contains("/whitelist/export.xlsx") && html.contains("href=\"/whitelist/new\""));
    assert!(page(&c, "/").await.1.contains("href=\"/whitelist\""));
    let (st, html) = page(&c, &format!("/whitelist/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("review-form") && html.contains("fraud-form") && html.contains("whitelist-history"));
    // A form post with the CSRF token approves; a missing reason is shown on the page.
    let form = |path: String, body: String| {
        c.raw(reqwest::Method::POST, &path).header("content-type", "application/x-www-form-urlencoded").body(body).send()
    };
    let r = form(format!("/whitelist/{id}/review"), format!("csrf={}&decision=approve&reason=", c.csrf)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = form(format!("/whitelist/{id}/review"), format!("csrf={}&decision=approve&reason=ok", c.csrf)).await.unwrap();
    assert!(r.status().is_success() || r.status().is_redirection());
    assert_eq!(c.get(&format!("/api/v1/whitelist/{id}")).await.1["status"], "active");
    let r = form(
        "/whitelist/new".into(),
        format!("csrf={}&kind=vehicle&tier=county&plate=%E6%99%8BD1&valid_from=2022-11-10T09%3A00&valid_until=2022-12-10T09%3A00", c.csrf),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("field-error"));
    let (st, _) = page(&c, "/whitelist/export.xlsx?kind=vehicle").await;
    assert_eq!(st, StatusCode::OK);
    // The checkpoint sees the list but no add link and no change forms; the enterprise sees nothing.
    let cp = app.login("checkpoint").await;
    let (st, html) = page(&cp, "/whitelist").await;
    assert_eq!(st, StatusCode::OK);
    assert!(!html.contains("href=\"/whitelist/new\""));
    assert!(!page(&cp, &format!("/whitelist/{id}")).await.1.contains("fraud-form"));
    assert_eq!(page(&cp, "/whitelist/new").await.0, StatusCode::FORBIDDEN);
    assert_eq!(page(&app.login("enterprise").await, "/whitelist").await.0, StatusCode::FORBIDDEN);
    assert_eq!(page(&c, "/whitelist/not-an-id").await.0, StatusCode::NOT_FOUND);
    app.stop().await;
}
both!(whitelist_pages, pages);
