//! Issue 17, item 7: every id a request names is checked against the caller's scope, not only the
//! record it acts on. Staff of 龙泉镇 (140427100) name records of 百尺镇 (140427101) — persons,
//! rounds, trips, units, tubes, batches, sites, venues, users — in every write that takes an id;
//! each answer must be the very answer to an id nobody registered (no oracle), and nothing changes.
use baton_domain::ident::IdNumber;
use baton_testkit::{Backend, Session, TestApp, both, spawn_app};
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn unit_id(s: &Session, name: &str) -> String {
    let (_, v) = s.get(&format!("/api/v1/units?q={name}")).await;
    v["units"].as_array().unwrap().iter().find(|u| u["name"] == name).unwrap_or_else(|| panic!("no unit {name}: {v}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn id_number(seq: u32) -> String {
    let first17 = format!("140427{}{:02}{:02}{:03}", 1955 + seq % 40, 1 + seq % 12, 1 + seq % 28, 700 + seq % 200);
    let c = IdNumber::check_char(first17.as_bytes()) as char;
    format!("{first17}{c}")
}

fn now(app: &TestApp) -> chrono::DateTime<chrono::Utc> {
    baton_domain::clock::Clock::now(&*app.clock)
}

fn created(s: StatusCode, v: &Value) -> String {
    assert!(s.is_success(), "{s} {v}");
    v["id"].as_str().unwrap_or_else(|| panic!("no id: {v}")).to_string()
}

/// The answer without what differs per request.
fn answer((s, mut v): (StatusCode, Value)) -> (StatusCode, Value) {
    if let Some(o) = v.as_object_mut() {
        o.remove("request_id");
    }
    (s, v)
}

/// Rows in the tables a refused write could have touched, and the trips' revisions.
async fn footprint(app: &TestApp) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for t in [
        "audit_log",
        "persons",
        "person_results",
        "tubes",
        "tube_members",
        "test_batches",
        "alerts",
        "trips",
        "trip_parties",
        "trip_confirmations",
        "scans",
        "grids",
        "idempotency",
        "retest_orders",
    ] {
        let sql: &'static str = format!("SELECT COUNT(*) AS n FROM {t}").leak();
        let r = app.store.db.fetch_one(baton_store::q!(sql)).await.unwrap();
        out.push((t.to_string(), r.get::<i64>("n").unwrap()));
    }
    let r = app.store.db.fetch_one(baton_store::q!("SELECT CAST(COALESCE(SUM(rev), 0) AS BIGINT) AS n FROM trips")).await.unwrap();
    out.push(("trips.rev".into(), r.get::<i64>("n").unwrap()));
    out
}

/// The path and body of a request naming a given id.
type Request<'a> = Box<dyn Fn(&str) -> (String, Value) + 'a>;

/// One write naming an id: who sends it, and the request for a given id.
struct Probe<'a> {
    what: &'static str,
    by: &'a Session,
    request: Request<'a>,
    /// The id of a record out of the caller's reach; the unknown one is made up.
    foreign: String,
    unknown: String,
}

async fn ids_checked(b: Backend) {
    let app = spawn_app(b).await;
    let cmd = app.login("commander").await;
    let admin = app.login("admin").await;
    let sampler = app.login("sampler").await;
    let checkpoint = app.login("checkpoint").await;
    let longquan = app.login("longquan").await;
    let lab = app.login("lab").await;
    let venue = app.login("venue").await;
    let enterprise = app.login("enterprise").await;
    let lab_id = unit_id(&cmd, "壶关县人民医院核酸检测实验室").await;
    let other_lab = unit_id(&cmd, "长治市第三方医学检验实验室壶关分部").await;

    // 百尺镇's records, made by the county and by 百尺镇's own sampling team.
    let (s, v) = admin
        .post(
            "/api/v1/users",
            json!({"username": "bc_sampler", "display_name": "百尺采样", "unit_id": unit_id(&cmd, "百尺镇核酸采样队").await, "role": "sampler",
                   "scope_kind": "unit", "password": baton::demo::DEMO_PASSWORD}),
        )
        .await;
    created(s, &v);
    let bc_sampler = app.login("bc_sampler").await;
    let (s, v) = cmd.post("/api/v1/persons", json!({"name": "百尺居民", "document_number": id_number(1), "division": "140427101"})).await;
    let bc_person = created(s, &v);
    let (s, v) = cmd.post("/api/v1/testing/rounds", json!({"name": "百尺镇第一轮", "area": "140427101"})).await;
    let bc_round = created(s, &v);
    let build = unit_id(&cmd, "壶关县百尺建材有限公司").await;
    let (s, v) = enterprise
        .post(
            "/api/v1/trips",
            json!({"plate": "晋D90001", "destination_id": build, "expected_at": (now(&app) + Duration::hours(2)).to_rfc3339(),
                   "crew": [{"name": "张师傅", "id_number": "11010519491231002X", "health_code": "green"}]}),
        )
        .await;
    let bc_trip = created(s, &v);
    let (s, v) = bc_sampler
        .post("/api/v1/testing/tubes", json!({"barcode": "BC-0001", "members": [{"name": "百尺居民二", "document_number": id_number(2)}]}))
        .await;
    let bc_tube = created(s, &v);
    let (s, v) = bc_sampler.post("/api/v1/testing/batches", json!({"lab_id": other_lab, "barcodes": ["BC-0001"]})).await;
    let bc_batch = created(s, &v);
    let (_, v) = bc_sampler.get("/api/v1/testing/sites").await;
    let bc_site = v["sites"][0]["id"].as_str().unwrap().to_string();
    let bc_unit = unit_id(&cmd, "百尺镇人民政府").await;
    let (_, v) = cmd.get("/api/v1/users?q=baichi").await;
    let bc_user = v["users"].as_array().unwrap().iter().find(|u| u["username"] == "baichi").unwrap()["id"].as_str().unwrap().to_string();
    let (s, v) = cmd.post("/api/v1/venues", json!({"name": "百尺集市", "kind": "market", "division": "140427101"})).await;
    let bc_venue = created(s, &v);

    // 龙泉镇's own: an open tube of its sampling team and a resident registered by the township.
    let (s, v) = sampler
        .post(
            "/api/v1/testing/tubes",
            json!({"barcode": "LQ-0001", "pool_size": 5, "members": [{"name": "龙泉居民", "document_number": id_number(3)}]}),
        )
        .await;
    let lq_tube = created(s, &v);
    let (s, v) = longquan.post("/api/v1/persons", json!({"name": "龙泉居民二", "document_number": id_number(4), "division": "140427100"})).await;
    let lq_person = created(s, &v);
    let dest = unit_id(&cmd, "壶关县太行钢材贸易有限公司").await;
    let eta = (now(&app) + Duration::hours(2)).to_rfc3339();

    let unknown = || uuid::Uuid::now_v7().to_string();
    let probes: Vec<Probe> = vec![
        Probe {
            what: "a person put into a new tube by id",
            by: &sampler,
            request: Box::new(|id| ("/api/v1/testing/tubes".into(), json!({"barcode": "PR-0001", "members": [{"person_id": id}]}))),
            foreign: bc_person.clone(),
            unknown: unknown(),
        },
        Probe {
            what: "a person added to an open tube by id",
            by: &sampler,
            request: Box::new(|id| (format!("/api/v1/testing/tubes/{lq_tube}/members"), json!({"members": [{"person_id": id}]}))),
            foreign: bc_person.clone(),
            unknown: unknown(),
        },
        Probe {
            what: "a screening round a tube is sampled for",
            by: &sampler,
            request: Box::new(|id| ("/api/v1/testing/tubes".into(), json!({"barcode": "PR-0002", "round_id": id}))),
            foreign: bc_round.clone(),
            unknown: unknown(),
        },
        Probe {
            what: "the trip a landing tube is for",
            by: &checkpoint,
            request: Box::new(|id| ("/api/v1/testing/tubes".into(), json!({"barcode": "PR-0003", "trip_id": id}))),
            foreign: bc_trip.clone(),
            unknown: unknown(),
        },
        Probe {
            what: "the sampling site of a tube",
            by: &sampler,
            request: Box::new(|id| ("/api/v1/testing/tubes".into(), json!({"barcode": "PR-0004", "site_id": id}))),
            foreign: bc_site.clone(),
            unknown: unknown(),
        },
        Probe {
            what: "the pre-report picked at check-in (another truck stands there)",
            by: &checkpoint,
            request: Box::new(|id| {
                (
                    "/api/v1/trips/check-in".into(),
                    json!({"plate": "晋D90009", "trip_id": id, "destination_id": dest, "eta": eta,
                           "crew": [{"name": "李师傅", "id_number": "110105194912310038", "health_code": "green"}], "landing_tube": "PR-LT-0001"}),
                )
            }),
            foreign: bc_trip.clone(),
            unknown: unknown(),
        },
        Probe {
            what: "the unit a person is registered for",
            by: &longquan,
            request: Box::new(|id| ("/api/v1/persons".into(), json!({"name": "新居民", "document_number": id_number(5), "unit_id": id}))),
            foreign: bc_unit.clone(),
            unknown: unknown(),
        },
        Probe {
            what: "a duplicate merged into a person",
            by: &longquan,
            request: Box::new(|id| (format!("/api/v1/persons/{lq_person}/merges"), json!({"duplicate": id}))),
            foreign: bc_person.clone(),
            unknown: unknown(),
        },
        Probe {
            what: "a barcode the lab posts a result for",
            by: &lab,
            request: Box::new(|b| ("/api/v1/testing/results".into(), json!({"results": [{"barcode": b, "result": "negative"}]}))),
            foreign: "BC-0001".into(),
            unknown: "ZZ-0404".into(),
        },
        Probe {
            what: "a barcode shipped in a batch",
            by: &sampler,
            request: Box::new(|b| ("/api/v1/testing/batches".into(), json!({"lab_id": lab_id, "barcodes": [b]}))),
            foreign: "BC-0001".into(),
            unknown: "ZZ-0404".into(),
        },
        Probe {
            what: "a batch received",
            by: &lab,
            request: Box::new(|id| (format!("/api/v1/testing/batches/{id}/receive"), json!({"barcodes": ["BC-0001"]}))),
            foreign: bc_batch.clone(),
            unknown: unknown(),
        },
        Probe {
            what: "a tube sealed",
            by: &sampler,
            request: Box::new(|id| (format!("/api/v1/testing/tubes/{id}/seal"), json!({}))),
            foreign: bc_tube.clone(),
            unknown: unknown(),
        },
        Probe {
            what: "a trip acted on",
            by: &checkpoint,
            request: Box::new(|id| (format!("/api/v1/trips/{id}/actions"), json!({"action": "exit_scan"}))),
            foreign: bc_trip.clone(),
            unknown: unknown(),
        },
        Probe {
            what: "a trip's duty confirmed",
            by: &longquan,
            request: Box::new(|id| (format!("/api/v1/trips/{id}/confirm"), json!({"party": "township"}))),
            foreign: bc_trip.clone(),
            unknown: unknown(),
        },
        Probe {
            what: "a grid's member",
            by: &longquan,
            request: Box::new(|id| ("/api/v1/grids".into(), json!({"village_code": "140427100200", "name": "龙泉探测网格", "member_id": id}))),
            foreign: bc_user.clone(),
            unknown: unknown(),
        },
        Probe {
            what: "a venue scanned at",
            by: &venue,
            request: Box::new(|id| (format!("/api/v1/venues/{id}/scan"), json!({"token": "x"}))),
            foreign: bc_venue.clone(),
            unknown: unknown(),
        },
    ];

    let before = footprint(&app).await;
    for p in &probes {
        let send = |id: &str| {
            let (path, body) = (p.request)(id);
            async move { answer(p.by.post(&path, body).await) }
        };
        let foreign = send(&p.foreign).await;
        let unknown = send(&p.unknown).await;
        assert!(foreign.0.is_client_error(), "{}: {foreign:?}", p.what);
        assert_eq!(foreign, unknown, "{}: a foreign id is answered unlike an unknown one", p.what);
    }
    assert_eq!(footprint(&app).await, before, "a refused request changed something");
    let (_, t) = cmd.get(&format!("/api/v1/trips/{bc_trip}")).await;
    assert_eq!(t["state"], "reported", "{t}");
    let (_, l) = cmd.get(&format!("/api/v1/trips/{bc_trip}/ledger")).await;
    assert_eq!(l["breaches"].as_array().unwrap().len(), 0, "no breach raised on another township's trip: {l}");

    // What is in reach is still named: 龙泉镇's resident by id into 龙泉镇's tube, the pre-report's
    // id with its own plate (no more than the plate finds), a unit of the township itself.
    let (s, v) = sampler.post(&format!("/api/v1/testing/tubes/{lq_tube}/members"), json!({"members": [{"person_id": lq_person}]})).await;
    assert_eq!((s, v["members"].as_i64()), (StatusCode::OK, Some(2)), "{v}");
    let (s, v) =
        checkpoint.post("/api/v1/trips/check-in", json!({"plate": "晋D90001", "trip_id": bc_trip, "eta": eta, "landing_tube": "PR-LT-0002"})).await;
    assert_eq!((s, v["id"].as_str(), v["state"].as_str()), (StatusCode::CREATED, Some(bc_trip.as_str()), Some("checked_in")), "{v}");
    let (s, v) = longquan
        .post("/api/v1/persons", json!({"name": "新居民", "document_number": id_number(5), "unit_id": unit_id(&cmd, "龙泉镇人民政府").await}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    app.stop().await;
}
both!(every_id_a_request_names_is_checked_against_the_callers_scope, ids_checked);
