//! Bad input gets a 4xx with a stable code and field messages in both languages, changes
//! nothing, and never a 5xx. Retries with the same idempotency key do not create twice.
use baton_testkit::{Backend, both, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn count_units(s: &baton_testkit::Session) -> usize {
    s.get("/api/v1/units").await.1["units"].as_array().unwrap().len()
}

async fn bad_input(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let before = count_units(&c).await;
    let (_, audit_before) = c.get("/api/v1/audit?limit=1000").await;

    let send = |body: &'static [u8], ct: &'static str| c.raw(reqwest::Method::POST, "/api/v1/units").header("content-type", ct).body(body).send();
    // Malformed JSON.
    let r = send(b"{\"name\": ", "application/json").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "malformed_json");
    assert!(v["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    // Wrong content type.
    let r = send(b"name=x", "application/x-www-form-urlencoded").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Wrong types, unknown fields, missing fields: field-level, both languages.
    let (s, v) = c.post("/api/v1/units", json!({"name": 5, "kind": "lab", "division_code": "140427"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"]["name"]["code"], "invalid_type");
    let (s, v) = c.post("/api/v1/units", json!({"name": "a", "kind": "lab", "division_code": "140427", "colour": "red"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"]["colour"]["code"], "unknown_field");
    let (s, v) = c.post("/api/v1/units", json!({"name": "a", "kind": "lab"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"]["division_code"]["code"], "required");
    // Several bad fields at once are all reported.
    let (s, v) = c.post("/api/v1/units", json!({"name": "", "kind": "spaceship", "division_code": "999999"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"], "invalid_input");
    assert_eq!(v["fields"]["name"]["code"], "required");
    assert_eq!(v["fields"]["kind"]["code"], "unit_kind_unknown");
    assert_eq!(v["fields"]["division_code"]["code"], "division_code_unknown");
    assert!(v["fields"]["kind"]["zh"].as_str().unwrap().contains("未知单位类型"));
    assert!(v["fields"]["kind"]["en"].as_str().unwrap().contains("unknown unit kind"));
    // English messages when asked for.
    let r = c
        .raw(reqwest::Method::POST, "/api/v1/units")
        .header("accept-language", "en-US")
        .json(&json!({"name": "", "kind": "lab", "division_code": "140427"}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"], "Some fields are invalid");
    assert_eq!(v["fields"]["name"]["message"], "is required");
    // Oversized body.
    let big = json!({"name": "x".repeat(2 << 20), "kind": "lab", "division_code": "140427"});
    let r = c.raw(reqwest::Method::POST, "/api/v1/units").json(&big).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The unread body stays on the wire, so the server closes the connection and says so;
    // without this a client's next request on the same connection failed now and then.
    assert_eq!(r.headers()["connection"], "close");
    // Invalid ID numbers, phones, division codes on users.
    let unit = c.body["user"]["unit_id"].as_str().unwrap();
    let (s, v) = c.post("/api/v1/users", json!({"username": "newbie", "display_name": "新人", "unit_id": unit, "role": "leader", "scope_kind": "unit", "password": "Strong-pass-123", "phone": "12345", "id_number": "140427198001011234"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"]["phone"]["code"], "phone_format");
    assert_eq!(v["fields"]["id_number"]["code"], "id_number_check");
    let (s, v) = c.post("/api/v1/users", json!({"username": "newbie", "display_name": "新人", "unit_id": unit, "role": "leader", "scope_kind": "division", "scope_code": "14042", "password": "weak"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"]["scope_code"]["code"], "division_code_unknown");
    assert_eq!(v["fields"]["password"]["code"], "password_length");
    // Bad path parameters and unknown routes are 4xx in the same shape.
    let (s, v) = c.get("/api/v1/units/not-a-uuid").await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{v}");
    let (s, v) = c.get("/api/v1/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "not_found");
    let (s, v) = c.get("/api/v1/audit?before=abc").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"]["query"]["code"], "invalid_query");
    let (s, v) = c.get("/api/v1/units?colour=red").await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_input")), "{v}");
    let r = c.raw(reqwest::Method::DELETE, "/api/v1/units").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "method_not_allowed");
    // Nothing changed: no unit, no user, no audit entry.
    assert_eq!(count_units(&c).await, before);
    assert_eq!(c.get("/api/v1/users?q=newbie").await.1["users"].as_array().unwrap().len(), 0);
    let (_, audit_after) = c.get("/api/v1/audit?limit=1000").await;
    let writes = |v: &Value| v["entries"].as_array().unwrap().iter().filter(|e| e["action"] != "session.login").count();
    assert_eq!(writes(&audit_after), writes(&audit_before));
    app.stop().await;
}
both!(bad_input_is_refused_field_by_field_and_changes_nothing, bad_input);

async fn idempotency(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let body = json!({"name": "壶关县第二中学", "kind": "school", "division_code": "140427100"});
    let post = |key: &'static str, body: Value| c.raw(reqwest::Method::POST, "/api/v1/units").header("idempotency-key", key).json(&body).send();
    let r1 = post("k-1", body.clone()).await.unwrap();
    assert_eq!(r1.status(), StatusCode::CREATED);
    let v1: Value = r1.json().await.unwrap();
    let r2 = post("k-1", body.clone()).await.unwrap();
    assert_eq!(r2.status(), StatusCode::CREATED);
    assert_eq!(r2.headers()["idempotent-replay"], "true");
    let v2: Value = r2.json().await.unwrap();
    assert_eq!(v1["id"], v2["id"]);
    let (_, list) = c.get("/api/v1/units?q=第二中学").await;
    assert_eq!(list["units"].as_array().unwrap().len(), 1);
    // The same key with another body is refused.
    let r3 = post("k-1", json!({"name": "别的", "kind": "school", "division_code": "140427100"})).await.unwrap();
    assert_eq!(r3.status(), StatusCode::CONFLICT);
    assert_eq!(r3.json::<Value>().await.unwrap()["error"], "idempotency_key_reused");
    // A refused request is replayed as refused, and without a key a duplicate name is a field error.
    let r4 = post("k-2", json!({"name": "", "kind": "school", "division_code": "140427100"})).await.unwrap();
    assert_eq!(r4.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r5 = post("k-2", json!({"name": "", "kind": "school", "division_code": "140427100"})).await.unwrap();
    assert_eq!(r5.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (s, v) = c.post("/api/v1/units", body.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"]["name"]["code"], "name_taken");
    // A key belongs to one route and one caller: the same key and body elsewhere is not a replay.
    let r = c
        .raw(reqwest::Method::POST, "/api/v1/grids")
        .header("idempotency-key", "k-1")
        .json(&json!({"village_code": "140427100200", "name": "网格"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "idempotency_key_reused");
    let other = app.login("admin").await;
    let r = other
        .raw(reqwest::Method::POST, "/api/v1/units")
        .header("idempotency-key", "k-1")
        .json(&json!({"name": "壶关县第三中学", "kind": "school", "division_code": "140427100"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().get("idempotent-replay").is_none());
    app.stop().await;
}
both!(a_retried_create_does_not_create_twice, idempotency);

/// How many rows of `table` have `col = value`, straight from the database.
async fn count(app: &baton_testkit::TestApp, sql: &'static str, value: &str) -> i64 {
    app.store.db.fetch_one(baton_store::q!(sql, value)).await.unwrap().get::<i64>("n").unwrap()
}

/// A keyed create whose server dies between writing the record and storing its answer, or
/// after both but before the client hears: the retry with the same key, on the restarted
/// server, creates exactly once and tells the client the record's id. (The key used to be
/// claimed, the record written and the answer stored in three commits: a crash after the
/// second left the key "in progress" and the record without an answer, and the retry got 409,
/// then a second venue, or a 422 for a trip or a tube.)
async fn keyed_create_survives_a_crash(b: Backend) {
    let mut app = spawn_app(b).await;
    let logins = [app.login("commander").await, app.login("enterprise").await, app.login("sampler").await];
    let (_, v) = logins[0].get("/api/v1/units?q=壶关县太行钢材贸易有限公司").await;
    let dest = v["units"][0]["id"].as_str().unwrap().to_string();
    let expected_at = (baton_domain::clock::Clock::now(&*app.clock) + chrono::Duration::hours(2)).to_rfc3339();
    let creates = |n: usize| {
        [
            (
                "/api/v1/venues",
                json!({"name": format!("崩溃场所{n}"), "kind": "market", "division": "140427100"}),
                "SELECT COUNT(*) AS n FROM venues WHERE name = $1",
                format!("崩溃场所{n}"),
            ),
            (
                "/api/v1/trips",
                json!({"plate": format!("晋D7000{n}"), "destination_id": dest, "expected_at": expected_at,
                                    "crew": [{"name": "张师傅", "id_number": "11010519491231002X", "phone": "13912345678", "health_code": "green"}]}),
                "SELECT COUNT(*) AS n FROM trips WHERE plate = $1",
                format!("晋D7000{n}"),
            ),
            (
                "/api/v1/testing/tubes",
                json!({"barcode": format!("HG-CRASH-{n}"), "pool_size": 1,
                                            "members": [{"name": "居民甲", "document_number": "11010519491231002X"}]}),
                "SELECT COUNT(*) AS n FROM tubes WHERE barcode = $1",
                format!("HG-CRASH-{n}"),
            ),
        ]
    };
    for (n, fault) in [baton_store::Fault::CrashAfterRecord, baton_store::Fault::CrashAfterAnswer].into_iter().enumerate() {
        for (who, (path, body, sql, value)) in creates(n).into_iter().enumerate() {
            let key = format!("crash-{n}-{who}");
            app.store.faults.arm(fault);
            let s = baton_testkit::Session { base: app.base.clone(), ..logins[who].clone() };
            let r = s.raw(reqwest::Method::POST, path).header("idempotency-key", &key).json(&body).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR, "{fault:?} {path}: the simulated crash");
            app.restart().await;
            let s = baton_testkit::Session { base: app.base.clone(), ..logins[who].clone() };
            let r = s.raw(reqwest::Method::POST, path).header("idempotency-key", &key).json(&body).send().await.unwrap();
            let replayed = r.headers().get("idempotent-replay").is_some();
            let (status, v) = (r.status(), r.json::<Value>().await.unwrap());
            assert_eq!(status, StatusCode::CREATED, "{fault:?} {path}: the retry learns the record: {v}");
            assert!(v["id"].is_string(), "{v}");
            assert_eq!(replayed, fault == baton_store::Fault::CrashAfterAnswer, "{fault:?} {path}: replayed only once the answer was stored");
            assert_eq!(count(&app, sql, &value).await, 1, "{fault:?} {path}: exactly one record");
            // And the next retry replays that same answer.
            let r = s.raw(reqwest::Method::POST, path).header("idempotency-key", &key).json(&body).send().await.unwrap();
            assert_eq!(r.headers()["idempotent-replay"], "true");
            assert_eq!(r.json::<Value>().await.unwrap()["id"], v["id"]);
            assert_eq!(count(&app, sql, &value).await, 1);
        }
    }
    app.stop().await;
}
both!(a_keyed_create_survives_a_crash_between_record_and_answer, keyed_create_survives_a_crash);

/// Retries racing each other with one key: one creates, every other is answered with its
/// answer, and nothing of theirs is kept.
async fn racing_retries(b: Backend) {
    let app = spawn_app(b).await;
    let c = std::sync::Arc::new(app.login("commander").await);
    let mut racing = Vec::new();
    for _ in 0..8 {
        let c = c.clone();
        racing.push(tokio::spawn(async move {
            let body = json!({"name": "同键场所", "kind": "market", "division": "140427100"});
            let r = c.raw(reqwest::Method::POST, "/api/v1/venues").header("idempotency-key", "race-1").json(&body).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap()["id"].clone())
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for r in racing {
        let (status, id) = r.await.unwrap();
        assert_eq!(status, StatusCode::CREATED);
        ids.insert(id.to_string());
    }
    assert_eq!(ids.len(), 1, "every retry answered with the one record: {ids:?}");
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM venues WHERE name = $1", "同键场所").await, 1);
    app.stop().await;
}
both!(racing_retries_with_one_key_create_once, racing_retries);

fn id_born(date: &str) -> String {
    let first17 = format!("140427{date}123");
    format!("{first17}{}", baton_domain::ident::IdNumber::check_char(first17.as_bytes()) as char)
}

/// Read one HTTP/1.1 answer (headers and a Content-Length body) from a kept-alive connection;
/// None when the server closed it instead.
async fn read_answer(s: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Some(head);
            }
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The edges of input: a JSON value followed by anything but whitespace is refused and writes
/// nothing; a body the handler never read (the caller was not signed in) leaves the kept-alive
/// connection answering the next request; an ID number born after today is refused; a grid
/// member reads back the resident they have just registered.
async fn input_edges(b: Backend) {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    for trailing in [
        r#"{"name": "尾随单位", "kind": "lab", "division_code": "140427"} {"name": "x"}"#,
        r#"{"name": "尾随单位", "kind": "lab", "division_code": "140427"}}"#,
    ] {
        let r = c.raw(reqwest::Method::POST, "/api/v1/units").header("content-type", "application/json").body(trailing).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{trailing}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "malformed_json");
    }
    let (_, v) = c.get("/api/v1/units?q=尾随单位").await;
    assert_eq!(v["units"].as_array().unwrap().len(), 0, "nothing written");

    let mut s = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    // A body of some size, sent after its headers, as a client uploading does.
    let body = json!({"name": "未登录单位", "kind": "lab", "division_code": "140427", "address": "长".repeat(100_000)}).to_string();
    let head = format!("POST /api/v1/units HTTP/1.1\r\nHost: baton\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    s.write_all(body.as_bytes()).await.unwrap();
    let head = read_answer(&mut s).await.expect("the refusal is answered");
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: baton\r\n\r\n").await.unwrap();
    let head = read_answer(&mut s).await.expect("the connection still answers the next request");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let grid = app.login("grid").await;
    let (s, e) = grid.post("/api/v1/persons", json!({"name": "未生", "document_number": id_born("20221111")})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "born tomorrow on the test clock (10 Nov 2022): {e}");
    assert_eq!(e["fields"]["document_number"]["code"], "id_number_birth_future");
    let enterprise = app.login("enterprise").await;
    let (_, v) = c.get("/api/v1/units?q=壶关县太行钢材贸易有限公司").await;
    let expected_at = (baton_domain::clock::Clock::now(&*app.clock) + chrono::Duration::hours(2)).to_rfc3339();
    let trip = json!({"plate": "晋D55555", "destination_id": v["units"][0]["id"], "expected_at": expected_at,
                      "crew": [{"name": "未生", "id_number": id_born("20230101"), "phone": "13912345678", "health_code": "green"}]});
    let (s, e) = enterprise.post("/api/v1/trips", trip).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["fields"]["crew[0].id_number"]["code"], "id_number_birth_future", "{e}");
    let (s, p) = grid.post("/api/v1/persons", json!({"name": "网格居民", "document_number": id_born("20221110")})).await;
    assert_eq!(s, StatusCode::CREATED, "born today is fine: {p}");
    let (s, back) = grid.get(&format!("/api/v1/persons/{}", p["id"].as_str().unwrap())).await;
    assert_eq!(s, StatusCode::OK, "the grid member reads back whom they registered: {back}");
    assert_eq!(back["name"], "网格居民");
    app.stop().await;
}
both!(input_edges_trailing_json_unread_bodies_future_births_grid_readback, input_edges);
