//! Every list of the API pages the same way: `limit` and an opaque `cursor`, `next_cursor`
//! in the answer (null at the end), keyset order. Paging through a list gives each row once,
//! in order, also while rows are added; a bad cursor or limit is a field error.
use baton_domain::code::Colour;
use baton_domain::ident::IdNumber;
use baton_testkit::{Backend, Session, TestApp, both, spawn_app};
use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

fn now(app: &TestApp) -> DateTime<Utc> {
    baton_domain::clock::Clock::now(&*app.clock)
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339()
}

/// A valid resident ID number of Huguan, distinct per `seq`.
fn id_number(seq: u32) -> String {
    let first17 = format!("140427{}{:02}{:02}{:03}", 1960 + seq % 40, 1 + seq % 12, 1 + seq % 28, seq % 1000);
    let c = IdNumber::check_char(first17.as_bytes()) as char;
    format!("{first17}{c}")
}

async fn created(s: &Session, path: &str, body: Value) -> Value {
    let (st, v) = s.post(path, body).await;
    assert!(st.is_success(), "POST {path}: {st} {v}");
    v
}

/// One page of `path` (a list answering under `name`).
async fn page(s: &Session, path: &str, name: &str, limit: usize, cursor: Option<&str>) -> (Vec<Value>, Option<String>) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = match cursor {
        None => format!("{path}{sep}limit={limit}"),
        Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
    };
    let (st, v) = s.get(&url).await;
    assert_eq!(st, StatusCode::OK, "GET {url}: {v}");
    assert!(v.get("next_cursor").is_some(), "GET {url} does not say whether a next page follows: {v}");
    let rows = v[name].as_array().unwrap_or_else(|| panic!("GET {url}: no {name}: {v}")).clone();
    assert!(rows.len() <= limit, "GET {url}: {} rows for a limit of {limit}", rows.len());
    (rows, v["next_cursor"].as_str().map(str::to_string))
}

/// Every row of `path`, `limit` a page, following `next_cursor` to the end.
async fn walk(s: &Session, path: &str, name: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..500 {
        let (rows, next) = page(s, path, name, limit, cursor.as_deref()).await;
        let full = rows.len() == limit;
        out.extend(rows);
        match next {
            Some(c) => {
                assert!(full, "{path}: a short page with a next cursor");
                cursor = Some(c);
            }
            None => return out,
        }
    }
    panic!("{path}: more than 500 pages");
}

async fn every_list_pages(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.login("admin").await;
    let enterprise = app.login("enterprise").await;
    let sampler = app.login("sampler").await;
    let lab = app.login("lab").await;
    let venue_staff = app.login("venue").await;
    let my_unit = admin.body["user"]["unit_id"].as_str().unwrap().to_string();
    let unit = |name: &'static str| {
        let admin = &admin;
        async move {
            let (_, v) = admin.get(&format!("/api/v1/units?q={name}")).await;
            v["units"].as_array().unwrap().iter().find(|u| u["name"] == name).unwrap()["id"].as_str().unwrap().to_string()
        }
    };
    let dest = unit("壶关县太行钢材贸易有限公司").await;
    let lab_id = unit("壶关县人民医院核酸检测实验室").await;
    let venue_unit = unit("壶关县龙泉农贸市场").await;
    let t = now(&app);
    // At least two rows in every list that takes creating.
    for i in 0..3 {
        let body = json!({"name": format!("令牌{i}"), "unit_id": my_unit, "permissions": ["units.read"], "scope_kind": "unit"});
        created(&admin, "/api/v1/tokens", body).await;
        created(&admin, "/api/v1/grids", json!({"village_code": "140427100200", "name": format!("第{i}网格")})).await;
        created(
            &admin,
            "/api/v1/whitelist",
            json!({"kind": "vehicle", "tier": "county", "plate": format!("晋D8000{i}"), "name": "太行物流",
                                                    "valid_from": ts(t - Duration::days(1)), "valid_until": ts(t + Duration::days(30))}),
        )
        .await;
        let report = json!({"plate": format!("晋D9000{i}"), "destination_id": dest, "expected_at": ts(t + Duration::minutes(30)),
                            "crew": [{"name": "张师傅", "id_number": "11010519491231002X"}]});
        created(&enterprise, "/api/v1/trips", report).await;
        let venue = json!({"name": format!("场所{i}"), "kind": "market", "unit_id": venue_unit, "division": "140427100"});
        created(&admin, "/api/v1/venues", venue).await;
        created(&admin, "/api/v1/testing/rounds", json!({"name": format!("第{i}轮"), "area": "壶关县"})).await;
        created(&sampler, "/api/v1/testing/sites", json!({"name": format!("采样点{i}")})).await;
    }
    created(
        &admin,
        "/api/v1/policy",
        json!({"effective_from": ts(t + Duration::hours(1)), "params": {"codes": {"itinerary_days": 1}}, "note": "1天"}),
    )
    .await;
    for (i, code) in ["140105", "140106"].iter().enumerate() {
        created(
            &admin,
            "/api/v1/risk-areas",
            json!({"division": code, "level": if i == 0 { "high" } else { "low" }, "from": ts(t - Duration::days(3))}),
        )
        .await;
    }
    for i in 0..3 {
        app.store
            .db
            .execute(baton_store::q!(
                "INSERT INTO code_recomputes (id, cause, cause_ref, state, created_at) VALUES ($1, 'paging_test', $2, 'done', $3)",
                Uuid::now_v7(),
                i.to_string(),
                t
            ))
            .await
            .unwrap();
    }
    let mut persons = Vec::new();
    for i in 0..4 {
        let p =
            created(&admin, "/api/v1/persons", json!({"name": format!("居民{i}"), "document_number": id_number(i), "division": "140427100"})).await;
        persons.push(p["id"].as_str().unwrap().to_string());
    }
    let keep = persons[0].clone();
    for dup in &persons[2..] {
        created(&admin, &format!("/api/v1/persons/{keep}/merges"), json!({"duplicate": dup})).await;
    }
    for kind in ["companion", "test_required"] {
        created(&admin, &format!("/api/v1/persons/{keep}/controls"), json!({"kind": kind})).await;
    }
    let venue = walk(&admin, "/api/v1/venues", "venues", 1000).await[0]["id"].as_str().unwrap().to_string();
    for p in &persons[..2] {
        let token = baton_store::person_codes::sign_token(&app.store.vault, p.parse().unwrap(), Colour::Green, t + Duration::minutes(10)).unwrap();
        created(&venue_staff, &format!("/api/v1/venues/{venue}/scan"), json!({"token": token})).await;
    }
    // A positive pool of five (re-test orders), another tube, two batches.
    let members: Vec<Value> = (10..15).map(|i| json!({"name": format!("居民{i}"), "document_number": id_number(i)})).collect();
    created(&sampler, "/api/v1/testing/tubes", json!({"barcode": "PG-0001", "pool_size": 5, "members": members})).await;
    created(&sampler, "/api/v1/testing/tubes", json!({"barcode": "PG-0002", "members": [{"name": "居民12", "document_number": id_number(12)}]}))
        .await;
    created(&sampler, "/api/v1/testing/batches", json!({"lab_id": lab_id, "barcodes": ["PG-0001"]})).await;
    created(&sampler, "/api/v1/testing/batches", json!({"lab_id": lab_id, "barcodes": ["PG-0002"]})).await;
    created(&lab, "/api/v1/testing/results", json!({"results": [{"barcode": "PG-0001", "result": "positive", "ct": 30.0}]})).await;
    // The reported trucks never come: an alert each.
    app.clock.advance(Duration::hours(2));
    baton_store::alerts::sweep(&app.store, now(&app)).await.unwrap();
    let rounds = walk(&admin, "/api/v1/testing/rounds", "rounds", 1000).await;
    let round = rounds[0]["id"].as_str().unwrap().to_string();

    let lists: Vec<(String, &str, usize)> = vec![
        ("/api/v1/units".into(), "units", 2),
        ("/api/v1/users".into(), "users", 2),
        ("/api/v1/roles".into(), "roles", 2),
        ("/api/v1/tokens".into(), "tokens", 2),
        ("/api/v1/audit".into(), "entries", 2),
        ("/api/v1/policy".into(), "versions", 2),
        ("/api/v1/grids".into(), "grids", 2),
        ("/api/v1/codes/recomputes".into(), "runs", 2),
        (format!("/api/v1/persons/{keep}/code/history"), "history", 2),
        (format!("/api/v1/persons/{keep}/merges"), "merges", 2),
        ("/api/v1/trips".into(), "trips", 2),
        ("/api/v1/alerts".into(), "alerts", 2),
        ("/api/v1/persons".into(), "persons", 2),
        ("/api/v1/risk-areas".into(), "areas", 2),
        ("/api/v1/risk-areas/history".into(), "areas", 2),
        ("/api/v1/testing/rounds".into(), "rounds", 2),
        (format!("/api/v1/testing/rounds/{round}/missing"), "missing", 2),
        ("/api/v1/sites".into(), "sites", 1),
        ("/api/v1/testing/sites".into(), "sites", 2),
        ("/api/v1/testing/tubes".into(), "tubes", 2),
        ("/api/v1/testing/batches".into(), "batches", 2),
        ("/api/v1/testing/rechecks".into(), "orders", 2),
        ("/api/v1/venues".into(), "venues", 2),
        (format!("/api/v1/venues/{venue}/visits"), "visits", 2),
        ("/api/v1/whitelist".into(), "entries", 2),
        // Filters and paging together.
        ("/api/v1/units?kind=township".into(), "units", 2),
        ("/api/v1/alerts?open=true&kind=not_checked_in".into(), "alerts", 2),
    ];
    for (path, name, at_least) in &lists {
        let (whole, next) = page(&admin, path, name, 1000, None).await;
        assert_eq!(next, None, "{path}: one page holds it all");
        assert!(whole.len() >= *at_least, "{path}: {} rows", whole.len());
        // Page by page, every row once and in the same order.
        let paged = walk(&admin, path, name, 1).await;
        assert_eq!(paged, whole, "{path}: paged one by one");
        if whole.len() > 2 {
            assert_eq!(walk(&admin, path, name, 2).await, whole, "{path}: paged two by two");
        }
    }
    app.stop().await;
}
both!(every_list_pages_through_each_row_once_in_order, every_list_pages);

async fn cursors(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.login("admin").await;
    let cp = app.login("checkpoint").await;
    let (_, v) = admin.get("/api/v1/units?q=壶关县太行钢材贸易有限公司").await;
    let dest = v["units"][0]["id"].as_str().unwrap().to_string();
    let check_in = |plate: String| {
        let cp = &cp;
        let dest = dest.clone();
        let app = &app;
        async move {
            let body = json!({"plate": plate, "destination_id": dest, "eta": ts(now(app) + Duration::minutes(10)), "risk": "none", "landing_tube": format!("LT-{}", &plate[plate.len() - 5..]),
                              "crew": [{"name": "张师傅", "id_number": "11010519491231002X", "health_code": "green"}], "test_taken_at": ts(now(app) - Duration::hours(10))});
            created(cp, "/api/v1/trips/check-in", body).await;
        }
    };
    // More alerts than one page: seven trucks miss their arrival.
    for i in 0..7 {
        check_in(format!("晋D7100{i}")).await;
    }
    app.clock.advance(Duration::hours(2));
    assert_eq!(baton_store::alerts::sweep(&app.store, now(&app)).await.unwrap().raised, 7);
    let (whole, _) = page(&admin, "/api/v1/alerts", "alerts", 1000, None).await;
    assert_eq!(whole.len(), 7);
    let key = |a: &Value| (a["raised_at"].as_str().unwrap().to_string(), a["id"].as_str().unwrap().to_string());
    assert!(whole.windows(2).all(|w| key(&w[0]) > key(&w[1])), "newest first, by id among equals");
    // A cursor holds while rows are added: new alerts come before it, and paging on from it gives
    // the rest of the rows it was taken from, each once.
    let (first, next) = page(&admin, "/api/v1/alerts", "alerts", 3, None).await;
    for i in 0..3 {
        check_in(format!("晋D7200{i}")).await;
    }
    app.clock.advance(Duration::hours(2));
    assert_eq!(baton_store::alerts::sweep(&app.store, now(&app)).await.unwrap().raised, 3);
    let mut seen = first.clone();
    let mut cursor = next;
    while let Some(c) = cursor {
        let (rows, n) = page(&admin, "/api/v1/alerts", "alerts", 3, Some(&c)).await;
        seen.extend(rows);
        cursor = n;
    }
    // (They climbed the ladder meanwhile: the same alerts, not the same values.)
    let ids = |rows: &[Value]| rows.iter().map(|a| a["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(ids(&seen), ids(&whole), "the seven of before, once each, in order");
    assert_eq!(walk(&admin, "/api/v1/alerts", "alerts", 4).await.len(), 10);
    // In a list ordered by name, a row added after the cursor's place is met on the way; none is given twice.
    let (first, next) = page(&admin, "/api/v1/units", "units", 5, None).await;
    created(&admin, "/api/v1/units", json!({"name": "龙泉镇新建单位", "kind": "department", "division_code": "140427100"})).await;
    let mut ids: Vec<String> = first.iter().map(|u| u["id"].as_str().unwrap().to_string()).collect();
    let mut cursor = next;
    while let Some(c) = cursor {
        let (rows, n) = page(&admin, "/api/v1/units", "units", 5, Some(&c)).await;
        ids.extend(rows.iter().map(|u| u["id"].as_str().unwrap().to_string()));
        cursor = n;
    }
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "no unit twice");
    assert_eq!(total, walk(&admin, "/api/v1/units", "units", 1000).await.len(), "the new unit was met on the way");
    // A bad cursor, another list's cursor, a bad limit: field errors in both languages, on both databases.
    let (_, units_next) = page(&admin, "/api/v1/units", "units", 1, None).await;
    let foreign = units_next.unwrap();
    for (query, field) in [
        ("cursor=not-a-cursor".to_string(), "cursor"),
        (format!("cursor={foreign}"), "cursor"),
        ("cursor=eyJhIjoxfQ".to_string(), "cursor"),
        ("limit=0".to_string(), "limit"),
        ("limit=1001".to_string(), "limit"),
        ("limit=many".to_string(), "limit"),
    ] {
        let (st, e) = admin.get(&format!("/api/v1/alerts?{query}")).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {e}");
        let f = &e["fields"][field];
        assert_eq!(f["code"], if field == "cursor" { "cursor_invalid" } else { "out_of_range" }, "{query}: {e}");
        assert!(f["zh"].as_str().is_some_and(|s| !s.is_empty()) && f["en"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
    }
    app.stop().await;
}
both!(a_cursor_holds_while_rows_are_added_and_a_bad_one_is_a_field_error, cursors);
