//! Divisions, policy versions, grids, operations endpoints, restart and the clock.
use baton_testkit::{Backend, both, spawn_app};
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::json;

async fn divisions(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("grid").await;
    for q in ["太原市小店区", "小店区", "140105"] {
        let (s, v) = c.get(&format!("/api/v1/divisions?q={q}")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["matches"][0]["code"], "140105", "{q}");
    }
    let (_, v) = c.get("/api/v1/divisions/140427").await;
    assert_eq!(v["name"], "壶关县");
    assert_eq!(v["children"].as_array().unwrap().len(), 11);
    assert_eq!(c.get("/api/v1/divisions/999999").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.anonymous().get("/api/v1/divisions?q=x").await.0, StatusCode::UNAUTHORIZED);
    app.stop().await;
}
both!(divisions_are_found_by_code_and_name, divisions);

async fn policy_versions(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let (_, cur) = c.get("/api/v1/policy/current").await;
    assert_eq!(cur["version"], 1);
    assert_eq!(cur["params"]["truck"]["closed_loop_limit_hours"], 6);
    let when = (baton_domain::clock::Clock::now(&*app.clock) + Duration::hours(2)).to_rfc3339();
    let (s, v) = c
        .post(
            "/api/v1/policy",
            json!({"effective_from": when, "params": {"truck": {"closed_loop_limit_hours": 30, "test_validity_hours": 36}}, "note": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"]["params.truck.closed_loop_limit_hours"]["code"], "out_of_range");
    assert_eq!(v["fields"]["params.truck.test_validity_hours"]["code"], "not_allowed");
    let (s, v) = c.post("/api/v1/policy", json!({"effective_from": when, "params": {"truck": {"no_such": 1}}, "note": "x"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"]["params"]["code"], "params_invalid");
    let past = (baton_domain::clock::Clock::now(&*app.clock) - Duration::hours(2)).to_rfc3339();
    let (s, v) = c.post("/api/v1/policy", json!({"effective_from": past, "params": {}, "note": "retroactive"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"]["effective_from"]["code"], "in_past");
    let (s, v) =
        c.post("/api/v1/policy", json!({"effective_from": when, "params": {"truck": {"closed_loop_limit_hours": 12}}, "note": "“二十条”"})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["version"], 2);
    // Not yet in force; in force once the clock passes its effective time.
    assert_eq!(c.get("/api/v1/policy/current").await.1["version"], 1);
    app.clock.advance(Duration::hours(3));
    let (_, cur) = c.get("/api/v1/policy/current").await;
    assert_eq!(cur["version"], 2);
    assert_eq!(cur["params"]["truck"]["closed_loop_limit_hours"], 12);
    assert_eq!(cur["params"]["truck"]["test_validity_hours"], 48);
    let (_, all) = c.get("/api/v1/policy").await;
    assert_eq!(all["versions"].as_array().unwrap().len(), 2);
    // Leaders read policy but cannot write it.
    let l = app.login("leader").await;
    assert_eq!(l.post("/api/v1/policy", json!({"effective_from": when, "params": {}, "note": "x"})).await.0, StatusCode::FORBIDDEN);
    app.stop().await;
}
both!(policy_versions_take_effect_on_the_clock, policy_versions);

async fn operations(b: Backend) {
    let mut app = spawn_app(b).await;
    let anon = app.anonymous();
    assert_eq!(anon.get("/healthz").await, (StatusCode::OK, serde_json::Value::String("ok".into())));
    assert_eq!(anon.get("/readyz").await.0, StatusCode::OK);
    let c = app.login("commander").await;
    c.get("/api/v1/units").await;
    assert_eq!(anon.get("/metrics").await.0, StatusCode::UNAUTHORIZED, "metrics need the token when one is configured");
    assert_eq!(anon.with_bearer("wrong").get("/metrics").await.0, StatusCode::UNAUTHORIZED);
    let (s, m) = app.anonymous().with_bearer(baton_testkit::METRICS_TOKEN).get("/metrics").await;
    assert_eq!(s, StatusCode::OK);
    let m = m.as_str().unwrap();
    assert!(m.contains("baton_http_requests_total{route=\"/api/v1/units\",status=\"200\"} 1"), "{m}");
    assert!(m.contains("baton_http_request_duration_seconds_bucket"));
    assert!(m.contains("baton_db_pool_connections"));
    assert!(m.contains("baton_jobs_pending"));
    // A restart loses nothing acknowledged: the unit and the session survive.
    let (s, u) = c.post("/api/v1/units", json!({"name": "重启前单位", "kind": "lab", "division_code": "140427"})).await;
    assert_eq!(s, StatusCode::CREATED);
    app.restart().await;
    let c2 = baton_testkit::Session { base: app.base.clone(), ..c };
    let (s, v) = c2.get(&format!("/api/v1/units/{}", u["id"].as_str().unwrap())).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["name"], "重启前单位");
    assert!(baton_store::audit::verify(&app.store.db, &app.store.vault).await.unwrap().ok());
    app.stop().await;
}
both!(health_metrics_and_restart, operations);

async fn grids_and_unit_hierarchy(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let (s, g1) = c.post("/api/v1/grids", json!({"village_code": "140427100200", "name": "第一网格"})).await;
    assert_eq!(s, StatusCode::CREATED, "{g1}");
    let (_, g2) = c.post("/api/v1/grids", json!({"village_code": "140427100200", "name": "第二网格"})).await;
    assert_eq!(g1["code"], "140427100200001");
    assert_eq!(g2["code"], "140427100200002");
    let (s, v) = c.post("/api/v1/grids", json!({"village_code": "140427100200", "name": "第一网格"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"]["name"]["code"], "name_taken");
    let (s, v) = c.post("/api/v1/grids", json!({"village_code": "140427100", "name": "乡镇不是村"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"]["village_code"]["code"], "division_level");
    // A unit cannot supervise its own supervisor.
    let (_, units) = c.get("/api/v1/units?kind=command_office").await;
    let cmd_id = units["units"][0]["id"].as_str().unwrap().to_string();
    let (_, tf) = c.get("/api/v1/units?q=交通物流专班").await;
    let tf_id = tf["units"][0]["id"].as_str().unwrap().to_string();
    let (s, v) = c
        .put(
            &format!("/api/v1/units/{cmd_id}"),
            json!({"name": "壶关县疫情防控指挥部办公室", "kind": "command_office", "division_code": "140427", "supervisor_id": tf_id}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"]["supervisor_id"]["code"], "supervisor_cycle");
    let chain = baton_store::units::supervisors(&app.store, uuid::Uuid::parse_str(&tf_id).unwrap()).await.unwrap();
    assert_eq!(chain, vec![uuid::Uuid::parse_str(&cmd_id).unwrap()]);
    app.stop().await;
}
both!(grids_nest_under_villages_and_supervision_has_no_cycles, grids_and_unit_hierarchy);

#[tokio::test]
async fn production_mode_refuses_the_manual_clock() {
    let dir = tempfile_dir();
    let cfg = baton::config::Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.clone(),
        database_url: None,
        key_file: dir.join("keys.json"),
        log_format: "text".into(),
        secure_cookies: false,
        max_connections: 2,
        mode: baton::config::Mode::Production,
        metrics_token: None,
    };
    let clock = std::sync::Arc::new(baton_domain::clock::ManualClock::new(baton_testkit::t0()));
    let err = baton::app::open_store(&cfg, clock).await.err().unwrap();
    assert!(err.to_string().contains("production mode refuses"), "{err}");
    assert!(baton::app::open_store(&cfg, std::sync::Arc::new(baton_domain::clock::SystemClock)).await.is_ok());
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("baton-it-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
