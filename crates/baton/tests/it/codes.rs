//! Person codes, venues and exposure on SQLite and PostgreSQL: each rule of the default policy
//! through the API (control orders, stays in risk areas, results from the testing module, missed
//! tests on the manual clock), the person's link and signed tokens (forged, truncated, expired,
//! unknown person), recompute after a risk-area change touching only the affected persons and
//! resuming after a restart, scans with the door's answer and replays, batch ingest with bad rows
//! listed, and the exposure search at the window's edges with its xlsx export; companions
//! cleared by two negative tests 24 h apart within 3 days; trucks that shared a service site
//! in the exposure search; companions marked from the search page; residents scanning a
//! venue poster with the phone that opened their code link; a code decided from older facts
//! not landing over a newer one; codes written before the history blocks read after the upgrade;
//! codes recomputed at their `until` through the marks their write left.
use crate::pages::{Ui, cells, section, tag};
use baton_domain::clock::Clock;
use baton_domain::code::Colour;
use baton_domain::ident::IdNumber;
use baton_store::person_codes;
use baton_testkit::{Backend, Session, TestApp, both, spawn_app};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

fn id_number(seq: u32) -> String {
    let first17 = format!("140427{}{:02}{:02}{:03}", 1960 + seq % 40, 1 + seq % 12, 1 + seq % 28, seq % 1000);
    let c = IdNumber::check_char(first17.as_bytes()) as char;
    format!("{first17}{c}")
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// base64url without padding, decoded by hand: a scanner needs nothing from us but the keys.
fn b64url(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        _ => 63,
    };
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        bits = (bits << 6) | u32::from(val(c));
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn person(s: &Session, seq: u32) -> String {
    let (st, v) = s.post("/api/v1/persons", json!({"name": format!("居民{seq}"), "document_number": id_number(seq)})).await;
    assert!(st.is_success(), "{st} {v}");
    v["id"].as_str().unwrap().to_string()
}

async fn code(s: &Session, id: &str) -> Value {
    let (st, v) = s.get(&format!("/api/v1/persons/{id}/code")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

fn reasons(v: &Value) -> Vec<String> {
    v["reasons"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap().to_string()).collect()
}

async fn control(s: &Session, id: &str, body: Value) -> Value {
    let (st, v) = s.post(&format!("/api/v1/persons/{id}/controls"), body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

async fn sweep(app: &TestApp) -> baton_store::recompute::SweepReport {
    baton_store::recompute::sweep(&app.store, usize::MAX).await.unwrap()
}

async fn unit_of(app: &TestApp, user: &str) -> String {
    app.login(user).await.body["user"]["unit_id"].as_str().unwrap().to_string()
}

async fn rules_of_the_default_policy(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let now = app.clock.now();

    // Nothing known: green, for ever, under policy version 1, with its inputs on record.
    let p = person(&c, 1).await;
    let v = code(&c, &p).await;
    assert_eq!((v["colour"].as_str(), v["until"].is_null(), v["policy_version"].as_i64()), (Some("green"), true, Some(1)), "{v}");

    // Control orders: red while in force, green at their end.
    for (seq, kind, colour) in [(2, "central_quarantine", "red"), (3, "confirmed_case", "red"), (4, "home_isolation", "yellow")] {
        let id = person(&c, seq).await;
        let v = control(&c, &id, json!({"kind": kind, "to": ts(now + Duration::days(5))})).await;
        assert_eq!((v["colour"].as_str(), reasons(&v)), (Some(colour), vec![kind.to_string()]), "{kind}");
        assert_eq!(v["reasons"][0]["colour"], colour);
    }
    // A companion: yellow.
    let comp = person(&c, 5).await;
    assert_eq!(reasons(&control(&c, &comp, json!({"kind": "companion"})).await), ["companion"]);
    // A test requirement: green until 72 h without a sample, then yellow (the watcher recomputes at `until`).
    let req = person(&c, 6).await;
    let v = control(&c, &req, json!({"kind": "test_required"})).await;
    assert_eq!(
        (v["colour"].as_str(), v["until"].as_str().map(|u| u.parse::<DateTime<Utc>>().unwrap())),
        (Some("green"), Some(now + Duration::hours(72)))
    );
    app.clock.advance(Duration::hours(72));
    let r = sweep(&app).await;
    assert!(r.expired >= 1, "{r:?}");
    // Sessions last 12 h: sign in again after the days passed.
    let c = app.login("commander").await;
    let v = code(&c, &req).await;
    assert_eq!((v["colour"].as_str(), reasons(&v)), (Some("yellow"), vec!["missed_test".to_string()]));
    // The quarantine ended after 5 days: at that `until` the code turns green again.
    app.clock.advance(Duration::hours(48));
    sweep(&app).await;
    let c = app.login("commander").await;
    assert_eq!(code(&c, &person(&c, 2).await).await["colour"], "green");

    // Stays: an exact stay in a high-risk area is red; a low-risk one yellow.
    let now = app.clock.now();
    let (st, _) = c.post("/api/v1/risk-areas", json!({"division": "140105", "level": "high", "from": ts(now - Duration::days(3))})).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = c.post("/api/v1/risk-areas", json!({"division": "140106", "level": "low", "from": ts(now - Duration::days(3))})).await;
    assert_eq!(st, StatusCode::CREATED);
    for (seq, place, colour, reason) in [(7, "140105", "red", "high_risk_stay"), (8, "140106", "yellow", "risk_area_stay")] {
        let id = person(&c, seq).await;
        let (st, v) = c
            .post(
                &format!("/api/v1/persons/{id}/stays"),
                json!({"stays": [{"place": place, "from": ts(now - Duration::days(2)), "to": ts(now - Duration::days(1))}]}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!((v["colour"].as_str(), reasons(&v)), (Some(colour), vec![reason.to_string()]), "{v}");
        assert_eq!(v["reasons"][0]["detail"], place);
        assert_eq!(v["inputs"]["hits"][0]["division_code"], place);
    }
    // A pass-through (4 h or less) does not count.
    let short = person(&c, 9).await;
    let (_, v) = c
        .post(
            &format!("/api/v1/persons/{short}/stays"),
            json!({"stays": [{"place": "140105", "from": ts(now - Duration::hours(10)), "to": ts(now - Duration::hours(6))}]}),
        )
        .await;
    assert_eq!(v["colour"], "green", "{v}");

    // Results from the testing module: a positive single tube is red; a positive pool's members pending re-check (yellow).
    let sampler = app.login("sampler").await;
    let lab = app.login("lab").await;
    let (_, units) = c.get("/api/v1/units?q=壶关县人民医院核酸检测实验室").await;
    let lab_id = units["units"][0]["id"].as_str().unwrap().to_string();
    let mk = |seq: u32| json!({"name": format!("居民{seq}"), "document_number": id_number(seq)});
    let (st, single) = sampler.post("/api/v1/testing/tubes", json!({"barcode": "HG-C0001", "pool_size": 1, "members": [mk(20)]})).await;
    assert_eq!(st, StatusCode::CREATED, "{single}");
    let (st, pool) = sampler.post("/api/v1/testing/tubes", json!({"barcode": "HG-C0002", "pool_size": 5, "members": [mk(21), mk(22)]})).await;
    assert_eq!(st, StatusCode::CREATED, "{pool}");
    // A full single tube seals itself; the pool is sealed part-full.
    let (st, v) = sampler.post(&format!("/api/v1/testing/tubes/{}/seal", pool["id"].as_str().unwrap()), json!({})).await;
    assert!(st.is_success(), "{v}");
    let (st, batch) = sampler.post("/api/v1/testing/batches", json!({"lab_id": lab_id, "barcodes": ["HG-C0001", "HG-C0002"]})).await;
    assert_eq!(st, StatusCode::CREATED, "{batch}");
    let (st, v) =
        lab.post(&format!("/api/v1/testing/batches/{}/receive", batch["id"].as_str().unwrap()), json!({"barcodes": ["HG-C0001", "HG-C0002"]})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = lab
        .post(
            "/api/v1/testing/results",
            json!({"results": [{"barcode": "HG-C0001", "result": "positive"}, {"barcode": "HG-C0002", "result": "positive"}]}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let r = sweep(&app).await;
    assert!(r.results >= 3, "{r:?}");
    let pos = single["member_list"][0]["person_id"].as_str().unwrap();
    assert_eq!(reasons(&code(&c, pos).await), ["positive"]);
    let member = pool["member_list"][1]["person_id"].as_str().unwrap();
    let v = code(&c, member).await;
    assert_eq!((v["colour"].as_str(), reasons(&v)), (Some("yellow"), vec!["pending_recheck".to_string()]));

    // History: each change with its cause and policy version; the first code is rev 1.
    let (_, h) = c.get(&format!("/api/v1/persons/{req}/code/history")).await;
    let h = h["history"].as_array().unwrap();
    let causes: Vec<&str> = h.iter().map(|e| e["cause"].as_str().unwrap()).collect();
    assert_eq!(causes.first(), Some(&"expiry"), "{causes:?}");
    assert_eq!(h.last().unwrap()["rev"], 1);
    assert!(h.iter().all(|e| e["policy_version"] == 1));

    // Bad input: unknown kind, end before start, bad stay; another person's scope sees nothing.
    let (st, e) = c.post(&format!("/api/v1/persons/{p}/controls"), json!({"kind": "vacation", "from": "2022-11-10", "to": "2022-11-09"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let fields: Vec<&str> = e["fields"].as_object().unwrap().keys().map(String::as_str).collect();
    assert!(fields.contains(&"kind") && fields.contains(&"to"), "{e}");
    let (st, e) = c.post(&format!("/api/v1/persons/{p}/stays"), json!({"stays": [{"place": "火星", "from": "x", "to": "2022-11-09"}]})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (st, _) = c.get(&format!("/api/v1/persons/{}/code", Uuid::now_v7())).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let venue = app.login("venue").await;
    let (st, _) = venue.get(&format!("/api/v1/persons/{p}/code")).await;
    assert!(st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND, "{st}");
    app.stop().await;
}
both!(rules_of_the_default_policy, rules_of_the_default_policy);

/// Person `seq` gives a single-tube sample now, which the lab results as `outcome`.
async fn single_tube(app: &TestApp, barcode: &str, seq: u32, outcome: &str) {
    let sampler = app.login("sampler").await;
    let lab = app.login("lab").await;
    let (_, units) = lab.get("/api/v1/units?q=壶关县人民医院核酸检测实验室").await;
    let lab_id = units["units"][0]["id"].as_str().unwrap().to_string();
    let member = json!({"name": format!("居民{seq}"), "document_number": id_number(seq)});
    let (st, v) = sampler.post("/api/v1/testing/tubes", json!({"barcode": barcode, "pool_size": 1, "members": [member]})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, batch) = sampler.post("/api/v1/testing/batches", json!({"lab_id": lab_id, "barcodes": [barcode]})).await;
    assert_eq!(st, StatusCode::CREATED, "{batch}");
    let (st, v) = lab.post(&format!("/api/v1/testing/batches/{}/receive", batch["id"].as_str().unwrap()), json!({"barcodes": [barcode]})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = lab.post("/api/v1/testing/results", json!({"results": [{"barcode": barcode, "result": outcome}]})).await;
    assert!(st.is_success(), "{v}");
}

async fn companions_clear_after_two_negative_tests(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    // Three companions flagged now; each gives a negative sample at once.
    let once = person(&c, 80).await;
    let daily = person(&c, 81).await;
    let slow = person(&c, 82).await;
    for p in [&once, &daily, &slow] {
        assert_eq!(control(&c, p, json!({"kind": "companion"})).await["colour"], "yellow");
    }
    for (seq, barcode) in [(80, "HG-N0080"), (81, "HG-N0081"), (82, "HG-N0082")] {
        single_tube(&app, barcode, seq, "negative").await;
    }
    sweep(&app).await;
    // One negative is not enough.
    for p in [&once, &daily, &slow] {
        let v = code(&c, p).await;
        assert_eq!((v["colour"].as_str(), reasons(&v)), (Some("yellow"), vec!["companion".to_string()]), "{v}");
    }
    // 23 h later a second test is too soon; 24 h after the first, one more clears the code.
    app.clock.advance(Duration::hours(23));
    single_tube(&app, "HG-N1081", 81, "negative").await;
    sweep(&app).await;
    let c = app.login("commander").await;
    assert_eq!(code(&c, &daily).await["colour"], "yellow");
    app.clock.advance(Duration::hours(1));
    single_tube(&app, "HG-N2081", 81, "negative").await;
    sweep(&app).await;
    let v = code(&c, &daily).await;
    assert_eq!((v["colour"].as_str(), v["reasons"].as_array().map(Vec::len)), (Some("green"), Some(0)), "{v}");
    assert_eq!(v["inputs"]["negatives"].as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(code(&c, &once).await["colour"], "yellow");
    // Two negatives 73 h apart are not within 3 days; one more a day later makes a pair that is.
    app.clock.advance(Duration::hours(49));
    single_tube(&app, "HG-N1082", 82, "negative").await;
    sweep(&app).await;
    let c = app.login("commander").await;
    assert_eq!(code(&c, &slow).await["colour"], "yellow");
    app.clock.advance(Duration::hours(24));
    single_tube(&app, "HG-N2082", 82, "negative").await;
    sweep(&app).await;
    let c = app.login("commander").await;
    assert_eq!(code(&c, &slow).await["colour"], "green");
    // The one who tested once is still a companion.
    let v = code(&c, &once).await;
    assert_eq!((v["colour"].as_str(), reasons(&v)), (Some("yellow"), vec!["companion".to_string()]), "{v}");
    app.stop().await;
}
both!(companions_clear_after_two_negative_tests, companions_clear_after_two_negative_tests);

async fn links_and_signed_tokens(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let p = person(&c, 30).await;
    control(&c, &p, json!({"kind": "home_isolation"})).await;
    let (st, l) = c.post(&format!("/api/v1/persons/{p}/code/link"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{l}");
    let link = l["link"].as_str().unwrap();
    assert_eq!(l["path"].as_str().unwrap(), format!("/c/{link}"));

    // Without an account: the code and a fresh token; no personal data but the family name.
    let anon = app.anonymous();
    let (st, shown) = anon.get(&format!("/api/v1/codes/show/{link}")).await;
    assert_eq!(st, StatusCode::OK, "{shown}");
    assert_eq!((shown["colour"].as_str(), shown["name_masked"].as_str()), (Some("yellow"), Some("居***")));
    assert!(!shown.to_string().contains(&id_number(30)[6..14]));
    let token = shown["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 120);

    // The public keys verify it offline, exactly as a scanner would.
    let (_, keys) = anon.get("/api/v1/codes/keys").await;
    let key = &keys["keys"][0];
    assert_eq!((key["active"].as_bool(), key["key_id"].as_str()), (Some(true), shown["public_key_id"].as_str()));
    let published: Vec<([u8; 4], [u8; 32])> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let id: [u8; 4] = hex_bytes(k["key_id"].as_str().unwrap()).try_into().unwrap();
            let pk: [u8; 32] = b64url(k["public_key"].as_str().unwrap()).try_into().unwrap();
            (id, pk)
        })
        .collect();
    let offline = person_codes::verify_offline(&person_codes::VerifyKeys::new(&published), &token, app.clock.now()).unwrap();
    assert_eq!((offline.person_ref.to_string(), offline.colour), (p.clone(), Some(Colour::Yellow)));
    let (st, v) = anon.post("/api/v1/codes/verify", json!({"token": token})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!((v["colour"].as_str(), v["admission"].as_str(), v["person_ref"].as_str()), (Some("yellow"), Some("restricted"), Some(p.as_str())));

    // Forged (one character changed), truncated, a link shown as a code, another county's.
    let mut forged: Vec<u8> = token.clone().into_bytes();
    forged[40] = if forged[40] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let other = baton_store::Vault::new(&baton_store::Keyring::generate()).unwrap();
    let foreign = person_codes::sign_token(&other, Uuid::parse_str(&p).unwrap(), Colour::Green, app.clock.now() + Duration::minutes(5)).unwrap();
    for (t, code) in
        [(forged.as_str(), "code_forged"), (&token[..100], "code_malformed"), (link, "code_malformed"), (foreign.as_str(), "code_unknown_key")]
    {
        let (st, e) = anon.post("/api/v1/codes/verify", json!({"token": t})).await;
        assert_eq!((st, e["error"].as_str()), (StatusCode::CONFLICT, Some(code)), "{e}");
    }
    // Expired: the token lives `token_minutes` (10).
    app.clock.advance(Duration::minutes(10));
    let (st, e) = anon.post("/api/v1/codes/verify", json!({"token": token})).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::CONFLICT, Some("code_expired")), "{e}");
    // The link gives a new one.
    let (_, again) = anon.get(&format!("/api/v1/codes/show/{link}")).await;
    assert_ne!(again["token"], token.as_str());
    // A bad link is refused, never a 5xx.
    let (st, _) = anon.get("/api/v1/codes/show/garbage").await;
    assert_eq!(st, StatusCode::CONFLICT);

    // Keys rotate: after a restart with a new signing key, the old key still verifies what it signed.
    let old_key = key["key_id"].as_str().unwrap().to_string();
    let (_, before) = anon.get(&format!("/api/v1/codes/show/{link}")).await;
    let mut ring = baton_store::Keyring::load(&app.config.key_file).unwrap();
    let new_key = ring.rotate_signing().unwrap();
    ring.save(&app.config.key_file).unwrap();
    let mut app = app;
    app.restart().await;
    let anon = app.anonymous();
    let (_, keys) = anon.get("/api/v1/codes/keys").await;
    let ids: Vec<&str> = keys["keys"].as_array().unwrap().iter().map(|k| k["key_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [new_key.as_str(), old_key.as_str()]);
    let (st, v) = anon.post("/api/v1/codes/verify", json!({"token": before["token"]})).await;
    assert_eq!((st, v["key_id"].as_str()), (StatusCode::OK, Some(old_key.as_str())), "{v}");
    let (_, after) = anon.get(&format!("/api/v1/codes/show/{link}")).await;
    let (_, v) = anon.post("/api/v1/codes/verify", json!({"token": after["token"]})).await;
    assert_eq!(v["key_id"].as_str(), Some(new_key.as_str()));
    app.stop().await;
}
both!(links_and_signed_tokens, links_and_signed_tokens);

async fn stays_in(c: &Session, id: &str, place: &str, now: DateTime<Utc>) {
    let (st, v) = c
        .post(
            &format!("/api/v1/persons/{id}/stays"),
            json!({"stays": [{"place": place, "from": ts(now - Duration::days(2)), "to": ts(now - Duration::days(1))}]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

async fn recompute_after_a_risk_area_change(b: Backend) {
    let mut app = spawn_app(b).await;
    let c = app.login("commander").await;
    let now = app.clock.now();
    let a = person(&c, 40).await;
    let bb = person(&c, 41).await;
    let cc = person(&c, 42).await;
    let d = person(&c, 43).await;
    stays_in(&c, &a, "140105", now).await;
    stays_in(&c, &bb, "140427", now).await;
    // `d` recorded only the city: an area inside it is a possible hit.
    stays_in(&c, &d, "1401", now).await;
    code(&c, &cc).await;
    sweep(&app).await;
    let revs = |v: &Value| v["rev"].as_i64().unwrap();
    let before: Vec<i64> = [&a, &bb, &cc, &d].iter().map(|_| 0).collect();
    let mut rev_before = before.clone();
    for (i, id) in [&a, &bb, &cc, &d].iter().enumerate() {
        rev_before[i] = revs(&code(&c, id).await);
    }

    let (st, _) = c.post("/api/v1/risk-areas", json!({"division": "140105", "level": "high", "from": ts(now - Duration::days(3))})).await;
    assert_eq!(st, StatusCode::CREATED);
    // Stored codes do not change until the background run.
    assert_eq!(code(&c, &a).await["colour"], "green");
    let r = sweep(&app).await;
    assert_eq!((r.queued, r.processed, r.changed), (1, 2, 2), "{r:?}");
    assert_eq!(reasons(&code(&c, &a).await), ["high_risk_stay"]);
    assert_eq!(reasons(&code(&c, &d).await), ["risk_area_stay"]);
    // Only the affected persons were touched.
    assert_eq!(revs(&code(&c, &bb).await), rev_before[1]);
    assert_eq!(revs(&code(&c, &cc).await), rev_before[2]);
    let (_, runs) = c.get("/api/v1/codes/recomputes").await;
    let run = &runs["runs"][0];
    assert_eq!(
        (run["cause"].as_str(), run["state"].as_str(), run["total"].as_i64(), run["processed"].as_i64(), run["changed"].as_i64()),
        (Some("risk_areas"), Some("done"), Some(2), Some(2), Some(2)),
        "{runs}"
    );
    // Nothing new: nothing queued.
    assert_eq!(sweep(&app).await.queued, 0);

    // A change queued, then the server restarts before the run: it resumes and finishes.
    let (st, _) = c.post("/api/v1/risk-areas", json!({"division": "140427", "level": "low", "from": ts(now - Duration::days(3))})).await;
    assert_eq!(st, StatusCode::CREATED);
    let r = baton_store::recompute::sweep(&app.store, 0).await.unwrap();
    assert_eq!((r.queued, r.processed), (1, 0));
    app.restart().await;
    let c = app.login("commander").await;
    let r = sweep(&app).await;
    assert_eq!((r.queued, r.processed, r.changed), (0, 1, 1), "{r:?}");
    assert_eq!(reasons(&code(&c, &bb).await), ["risk_area_stay"]);
    assert_eq!(revs(&code(&c, &a).await), rev_before[0] + 1);

    // A new policy version is a run over everyone: codes carry the new version.
    let (st, v) =
        c.post("/api/v1/policy", json!({"effective_from": ts(app.clock.now()), "params": {"codes": {"itinerary_days": 1}}, "note": "1天"})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let r = sweep(&app).await;
    assert!(r.processed >= 4, "{r:?}");
    let v = code(&c, &a).await;
    assert_eq!((v["policy_version"].as_i64(), v["colour"].as_str()), (Some(2), Some("green")), "stays a day old fall out of a 1-day look-back: {v}");
    app.stop().await;
}
both!(recompute_after_a_risk_area_change, recompute_after_a_risk_area_change);

fn token_for(app: &TestApp, person: &str, colour: Colour, valid_until: DateTime<Utc>) -> String {
    person_codes::sign_token(&app.store.vault, Uuid::parse_str(person).unwrap(), colour, valid_until).unwrap()
}

async fn venues_scans_and_exposure(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let staff = app.login("venue").await;
    let market_unit = unit_of(&app, "venue").await;
    let (st, market) =
        c.post("/api/v1/venues", json!({"name": "龙泉农贸市场", "kind": "market", "unit_id": market_unit, "division": "140427100"})).await;
    assert_eq!(st, StatusCode::CREATED, "{market}");
    let (st, hotel) = c.post("/api/v1/venues", json!({"name": "太行宾馆", "kind": "hotel", "division": "140427100"})).await;
    assert_eq!(st, StatusCode::CREATED, "{hotel}");
    let (st, e) = c.post("/api/v1/venues", json!({"name": "", "kind": "spaceport"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let m = market["id"].as_str().unwrap().to_string();
    let h = hotel["id"].as_str().unwrap().to_string();
    // The venue's staff see their own venue only.
    let (_, mine) = staff.get("/api/v1/venues").await;
    assert_eq!(mine["venues"].as_array().unwrap().len(), 1);

    // The door's answer by the current code: green passes, yellow restricted, red barred.
    let green = person(&c, 50).await;
    let yellow = person(&c, 51).await;
    let red = person(&c, 52).await;
    control(&c, &yellow, json!({"kind": "companion"})).await;
    control(&c, &red, json!({"kind": "central_quarantine"})).await;
    let now = app.clock.now();
    for (p, admission) in [(&green, "pass"), (&yellow, "restricted"), (&red, "barred")] {
        // A token showing green: the online answer follows the code as it is now.
        let t = token_for(&app, p, Colour::Green, now + Duration::minutes(10));
        let (st, v) = staff.post(&format!("/api/v1/venues/{m}/scan"), json!({"token": t})).await;
        assert_eq!((st, v["admission"].as_str(), v["replayed"].as_bool()), (StatusCode::OK, Some(admission), Some(false)), "{v}");
        // Replayed at the same door: the first answer, nothing added.
        let (_, again) = staff.post(&format!("/api/v1/venues/{m}/scan"), json!({"token": t})).await;
        assert_eq!((again["replayed"].as_bool(), again["scan_id"].clone()), (Some(true), v["scan_id"].clone()));
    }
    let (_, log) = staff.get(&format!("/api/v1/venues/{m}/visits")).await;
    let log = log["visits"].as_array().unwrap();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|v| v["name_masked"].as_str().unwrap().ends_with('*')));
    // Another venue's door is not this staff's; unknown persons, forged and expired tokens are refused.
    let t = token_for(&app, &green, Colour::Green, now + Duration::minutes(10));
    let (st, _) = staff.post(&format!("/api/v1/venues/{h}/scan"), json!({"token": t})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let ghost = token_for(&app, &Uuid::now_v7().to_string(), Colour::Green, now + Duration::minutes(10));
    let (st, e) = staff.post(&format!("/api/v1/venues/{m}/scan"), json!({"token": ghost})).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::CONFLICT, Some("person_unknown")));
    let old = token_for(&app, &green, Colour::Green, now);
    let (_, e) = staff.post(&format!("/api/v1/venues/{m}/scan"), json!({"token": old})).await;
    assert_eq!(e["error"], "code_expired");

    // Exposure: the case at the hotel at T; others at T ± just under the 30-minute window (in),
    // exactly the window (out), and at another venue at T (out).
    let t0 = now - Duration::hours(3);
    let w = Duration::minutes(30);
    let case = person(&c, 60).await;
    let before = person(&c, 61).await;
    let after = person(&c, 62).await;
    let edge = person(&c, 63).await;
    let elsewhere = person(&c, 64).await;
    let edge_before = person(&c, 65).await;
    let rows = [
        (h.clone(), &case, t0),
        (h.clone(), &before, t0 - w + Duration::seconds(1)),
        (h.clone(), &after, t0 + w - Duration::seconds(1)),
        (h.clone(), &edge, t0 + w),
        (h.clone(), &edge_before, t0 - w),
        (m.clone(), &elsewhere, t0),
    ];
    let mut scans: Vec<Value> = rows
        .iter()
        .map(|(v, p, at)| json!({"venue_id": v, "token": token_for(&app, p, Colour::Green, *at + Duration::minutes(10)), "at": ts(*at)}))
        .collect();
    // Bad rows are listed by index and do not stop the good ones.
    scans.push(json!({"venue_id": Uuid::now_v7(), "token": token_for(&app, &case, Colour::Green, now + Duration::minutes(10)), "at": ts(now)}));
    scans.push(json!({"venue_id": h, "token": "forged", "at": ts(now)}));
    scans.push(json!({"venue_id": h, "token": ghost, "at": ts(now)}));
    scans.push(json!({"venue_id": h, "token": token_for(&app, &case, Colour::Green, t0), "at": ts(t0 + Duration::minutes(1))}));
    // Well formed, one character of its signature changed: checked with the good ones, refused alone.
    let mut forged = token_for(&app, &elsewhere, Colour::Green, now + Duration::minutes(10)).into_bytes();
    forged[60] = if forged[60] == b'A' { b'B' } else { b'A' };
    scans.push(json!({"venue_id": h, "token": String::from_utf8(forged).unwrap(), "at": ts(now)}));
    let (st, rep) = c.post("/api/v1/scans/batch", json!({"scans": scans})).await;
    assert_eq!(st, StatusCode::OK, "{rep}");
    assert_eq!(rep["accepted"], 6, "{rep}");
    let bad: Vec<(String, String)> = rep["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["field"].as_str().unwrap().to_string(), f["code"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        bad,
        [
            ("scans[6].venue_id".to_string(), "venue_unknown".to_string()),
            ("scans[7].token".into(), "code_malformed".into()),
            ("scans[8].token".into(), "person_unknown".into()),
            ("scans[9].token".into(), "code_expired".into()),
            ("scans[10].token".into(), "code_forged".into())
        ]
    );
    // The same upload again: duplicates, nothing added.
    let (_, rep) = c.post("/api/v1/scans/batch", json!({"scans": scans[..6]})).await;
    assert_eq!((rep["accepted"].as_i64(), rep["duplicates"].as_i64()), (Some(0), Some(6)), "{rep}");

    let (st, x) = c.get(&format!("/api/v1/persons/{case}/exposure")).await;
    assert_eq!(st, StatusCode::OK, "{x}");
    let found: Vec<(&str, f64)> =
        x["contacts"].as_array().unwrap().iter().map(|k| (k["person_id"].as_str().unwrap(), k["overlap_minutes"].as_f64().unwrap())).collect();
    let mut ids: Vec<&str> = found.iter().map(|f| f.0).collect();
    ids.sort();
    let mut want = vec![before.as_str(), after.as_str()];
    want.sort();
    assert_eq!(ids, want, "{x}");
    assert!(found.iter().all(|f| (f.1 - 1.0 / 60.0).abs() < 1e-6), "{found:?}");
    assert_eq!(x["contacts"][0]["venue_name"], "太行宾馆");
    // A wider window takes in the edge cases; bad windows are field errors.
    let (_, x) = c.get(&format!("/api/v1/persons/{case}/exposure?window_minutes=31")).await;
    assert_eq!(x["contacts"].as_array().unwrap().len(), 4, "{x}");
    let (st, e) = c.get(&format!("/api/v1/persons/{case}/exposure?window_minutes=0")).await;
    assert_eq!((st, e["fields"]["window_minutes"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("out_of_range")), "{e}");
    // The tracing request as xlsx.
    let r = c.raw(reqwest::Method::GET, &format!("/api/v1/persons/{case}/exposure.xlsx")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], baton_store::sheet::XLSX_MIME);
    let bytes = r.bytes().await.unwrap();
    let rows = baton_store::sheet::read_sheet(&bytes).unwrap();
    assert_eq!(rows.len(), 3, "header and two contacts");
    // Audited under the case's jurisdiction, for the case's township to read, not every reader.
    let (_, p) = c.get(&format!("/api/v1/persons/{case}")).await;
    let (_, a) = c.get(&format!("/api/v1/audit?action=exposure.export&object_id={case}")).await;
    assert_eq!(a["entries"][0]["jurisdiction"], p["jurisdiction"], "{a} {p}");
    assert!(!p["jurisdiction"].as_str().unwrap().is_empty());
    // Venue staff may not search.
    let (st, _) = staff.get(&format!("/api/v1/persons/{case}/exposure")).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    app.stop().await;
}
both!(venues_scans_and_exposure, venues_scans_and_exposure);

async fn merging_duplicates(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let now = app.clock.now();
    // One man registered twice: by ID card, and by passport at a venue desk.
    let keep = person(&c, 70).await;
    let (st, dup) = c.post("/api/v1/persons", json!({"name": "居民70", "document_kind": "passport", "document_number": "E12345678"})).await;
    assert_eq!(st, StatusCode::CREATED, "{dup}");
    let dup = dup["id"].as_str().unwrap().to_string();
    let (st, _) = c.post("/api/v1/risk-areas", json!({"division": "140105", "level": "high", "from": ts(now - Duration::days(3))})).await;
    assert_eq!(st, StatusCode::CREATED);
    stays_in(&c, &dup, "140105", now).await;
    assert_eq!(code(&c, &keep).await["colour"], "green");
    assert_eq!(code(&c, &dup).await["colour"], "red");

    // Bad merges change nothing.
    let (st, e) = c.post(&format!("/api/v1/persons/{keep}/merges"), json!({"duplicate": keep})).await;
    assert_eq!((st, e["fields"]["duplicate"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("same_person")), "{e}");
    let (st, e) = c.post(&format!("/api/v1/persons/{keep}/merges"), json!({"duplicate": Uuid::now_v7()})).await;
    assert_eq!((st, e["fields"]["duplicate"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("person_unknown")), "{e}");

    let (st, m) = c.post(&format!("/api/v1/persons/{keep}/merges"), json!({"duplicate": dup, "note": "护照与身份证为同一人"})).await;
    assert_eq!(st, StatusCode::OK, "{m}");
    assert_eq!(m["moved"]["stays"], 1);
    // The stay moved: the survivor's code is red now, and the duplicate's code is the survivor's.
    let v = code(&c, &keep).await;
    assert_eq!((v["colour"].as_str(), reasons(&v)), (Some("red"), vec!["high_risk_stay".to_string()]));
    let (_, h) = c.get(&format!("/api/v1/persons/{keep}/code/history")).await;
    assert_eq!(h["history"][0]["cause"], "merge");
    assert_eq!(code(&c, &dup).await["person_id"].as_str(), Some(keep.as_str()));
    // The duplicate's own history stays readable: it ends at its red code.
    let (_, h) = c.get(&format!("/api/v1/persons/{dup}/code/history")).await;
    let h = h["history"].as_array().unwrap();
    assert_eq!((h[0]["colour"].as_str(), reasons(&h[0])), (Some("red"), vec!["high_risk_stay".to_string()]), "{h:?}");
    assert_eq!(h.last().unwrap()["rev"], 1);
    // The passport now finds the survivor; the duplicate is out of searches.
    let (st, again) = c.post("/api/v1/persons", json!({"name": "居民70", "document_kind": "passport", "document_number": "E12345678"})).await;
    assert_eq!((st, again["id"].as_str()), (StatusCode::OK, Some(keep.as_str())), "{again}");
    let (_, found) = c.get("/api/v1/persons?q=居民70").await;
    assert_eq!(found["persons"].as_array().unwrap().len(), 1, "{found}");
    // The history, and no second merge of the same record.
    let (_, hist) = c.get(&format!("/api/v1/persons/{keep}/merges")).await;
    let hist = hist["merges"].as_array().unwrap();
    assert_eq!((hist.len(), hist[0]["merged_id"].as_str(), hist[0]["note"].as_str()), (1, Some(dup.as_str()), Some("护照与身份证为同一人")));
    let (st, e) = c.post(&format!("/api/v1/persons/{keep}/merges"), json!({"duplicate": dup})).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::CONFLICT, Some("person_merged")), "{e}");
    // Outside the scope: the venue's staff may not merge.
    let staff = app.login("venue").await;
    let (st, _) = staff.post(&format!("/api/v1/persons/{keep}/merges"), json!({"duplicate": dup})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    app.stop().await;
}
both!(merging_duplicates, merging_duplicates);

async fn person_in(s: &Session, seq: u32, division: &str) -> String {
    let (st, v) = s.post("/api/v1/persons", json!({"name": format!("居民{seq}"), "document_number": id_number(seq), "division": division})).await;
    assert!(st.is_success(), "{st} {v}");
    v["id"].as_str().unwrap().to_string()
}

/// A truck checked in at the demo checkpoint with one crew member; its trip id.
async fn truck(app: &TestApp, cp: &Session, dest: &str, plate: &str, driver: &str, id: &str, tube: &str) -> String {
    let now = app.clock.now();
    let body = json!({"plate": plate, "destination_id": dest, "eta": ts(now + Duration::hours(2)), "landing_tube": tube,
                      "test_taken_at": ts(now - Duration::hours(10)),
                      "crew": [{"name": driver, "id_number": id, "phone": "13912345678", "health_code": "green"}]});
    let (st, v) = cp.post("/api/v1/trips/check-in", body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

async fn gate(site: &Session, site_id: &str, plate: &str) -> String {
    let (st, v) = site.post(&format!("/api/v1/sites/{site_id}/check-in"), json!({"plate": plate})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

async fn gate_out(site: &Session, site_id: &str, stay: &str) {
    let (st, v) = site.post(&format!("/api/v1/sites/{site_id}/stays/{stay}/check-out"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

async fn trucks_that_shared_a_service_site(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let cp = app.login("checkpoint").await;
    let site = app.login("site").await;
    let site_id = unit_of(&app, "site").await;
    let (_, u) = c.get("/api/v1/units?q=壶关县太行钢材贸易有限公司").await;
    let dest = u["units"][0]["id"].as_str().unwrap().to_string();
    // The case drives truck A; he is in the registry by the same ID card.
    let case = person(&c, 90).await;
    let a = truck(&app, &cp, &dest, "晋D50001", "居民90", &id_number(90), "LT-500001").await;
    let b2 = truck(&app, &cp, &dest, "晋D50002", "李师傅", &id_number(91), "LT-500002").await;
    truck(&app, &cp, &dest, "晋D50003", "王师傅", &id_number(92), "LT-500003").await;
    let d = truck(&app, &cp, &dest, "晋D50004", "赵师傅", &id_number(93), "LT-500004").await;
    // At the site: A from t0 to t0+60; B from t0+10 to t0+40; D from t0+50, still there;
    // C arrives at t0+60, the instant A leaves (no overlap).
    let t0 = app.clock.now();
    let sa = gate(&site, &site_id, "晋D50001").await;
    app.clock.advance(Duration::minutes(10));
    let sb = gate(&site, &site_id, "晋D50002").await;
    app.clock.advance(Duration::minutes(30));
    gate_out(&site, &site_id, &sb).await;
    app.clock.advance(Duration::minutes(10));
    gate(&site, &site_id, "晋D50004").await;
    app.clock.advance(Duration::minutes(10));
    gate_out(&site, &site_id, &sa).await;
    gate(&site, &site_id, "晋D50003").await;

    let (st, x) = c.get(&format!("/api/v1/persons/{case}/exposure")).await;
    assert_eq!(st, StatusCode::OK, "{x}");
    assert_eq!(x["case_stays"], 1, "{x}");
    let trips: Vec<(&str, f64)> =
        x["trips"].as_array().unwrap().iter().map(|t| (t["trip_id"].as_str().unwrap(), t["overlap_minutes"].as_f64().unwrap())).collect();
    assert_eq!(trips, [(b2.as_str(), 30.0), (d.as_str(), 10.0)], "{x}");
    let first = &x["trips"][0];
    assert_eq!(
        (first["plate"].as_str(), first["crew_masked"][0].as_str(), first["site_name"].as_str(), first["case_plate"].as_str()),
        (Some("晋D50002"), Some("李**"), Some("壶关县货车专用服务场地"), Some("晋D50001"))
    );
    assert_eq!(first["case_trip_id"].as_str(), Some(a.as_str()));
    let at = |v: &Value| v.as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    assert_eq!((at(&first["overlap_from"]), at(&first["overlap_to"])), (t0 + Duration::minutes(10), t0 + Duration::minutes(40)));
    assert_eq!((at(&x["trips"][1]["overlap_from"]), at(&x["trips"][1]["overlap_to"])), (t0 + Duration::minutes(50), t0 + Duration::minutes(60)));
    assert!(!x.to_string().contains("李师傅"), "crew names are masked: {x}");

    // The tracing request: persons on the first sheet, trucks on the second.
    let r = c.raw(reqwest::Method::GET, &format!("/api/v1/persons/{case}/exposure.xlsx")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let bytes = r.bytes().await.unwrap();
    let sheet = baton_store::sheet::read_sheet_at(&bytes, 1).unwrap();
    let plates: Vec<String> = sheet.iter().skip(1).map(|(_, row)| row[1].text()).collect();
    assert_eq!(plates, ["晋D50002", "晋D50004"]);
    assert_eq!((sheet[1].1[2].text(), sheet[1].1[7].text()), ("李**".to_string(), "30".to_string()));

    // The look-back includes a stay that ended exactly `days` ago, and not one a second older.
    app.clock.advance(Duration::days(1));
    let c = app.login("commander").await;
    let (_, x) = c.get(&format!("/api/v1/persons/{case}/exposure?days=1")).await;
    assert_eq!((x["case_stays"].as_i64(), x["trips"].as_array().map(Vec::len)), (Some(1), Some(2)), "{x}");
    app.clock.advance(Duration::seconds(1));
    let (_, x) = c.get(&format!("/api/v1/persons/{case}/exposure?days=1")).await;
    assert_eq!((x["case_stays"].as_i64(), x["trips"].as_array().map(Vec::len)), (Some(0), Some(0)), "{x}");
    // A record merged into the case brings its trips: D's driver's record, merged, makes D a
    // case trip, and C (at the site since D's stay, both still there) its contact.
    let dup = person(&c, 93).await;
    let (st, m) = c.post(&format!("/api/v1/persons/{case}/merges"), json!({"duplicate": dup})).await;
    assert_eq!(st, StatusCode::OK, "{m}");
    let (_, x) = c.get(&format!("/api/v1/persons/{case}/exposure?days=2")).await;
    let plates: Vec<&str> = x["trips"].as_array().unwrap().iter().map(|t| t["plate"].as_str().unwrap()).collect();
    assert_eq!((x["case_stays"].as_i64(), plates), (Some(2), vec!["晋D50003", "晋D50002"]), "{x}");
    assert_eq!(x["trips"][0]["case_plate"], "晋D50004", "{x}");
    // A township whose scope does not cover the case finds nothing.
    let (st, _) = app.login("baichi").await.get(&format!("/api/v1/persons/{case}/exposure")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    app.stop().await;
}
both!(trucks_that_shared_a_service_site, trucks_that_shared_a_service_site);

async fn marking_companions_from_the_search_page(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let (st, hotel) = c.post("/api/v1/venues", json!({"name": "龙泉宾馆", "kind": "hotel", "division": "140427100"})).await;
    assert_eq!(st, StatusCode::CREATED, "{hotel}");
    let h = hotel["id"].as_str().unwrap();
    // The case and three contacts in 龙泉镇, one contact living in 百尺镇; someone who was not there.
    let case = person_in(&c, 100, "140427100").await;
    let near = person_in(&c, 101, "140427100").await;
    let next = person_in(&c, 102, "140427100").await;
    let away = person_in(&c, 103, "140427101").await;
    let stranger = person_in(&c, 104, "140427100").await;
    let t0 = app.clock.now() - Duration::hours(2);
    let scans: Vec<Value> = [(&case, 0), (&near, 5), (&next, 10), (&away, 1)]
        .iter()
        .map(|(p, m)| {
            let at = t0 + Duration::minutes(*m);
            json!({"venue_id": h, "token": token_for(&app, p, Colour::Green, at + Duration::minutes(10)), "at": ts(at)})
        })
        .collect();
    let (_, rep) = c.post("/api/v1/scans/batch", json!({"scans": scans})).await;
    assert_eq!(rep["accepted"], 4, "{rep}");

    // The township's staff: all three contacts listed, the two in their township offered for marking.
    let ui = Ui::of(&app, "longquan", "zh").await;
    let page = ui.get(&format!("/exposure?person={case}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert_eq!(cells(&page.html, "exposure-persons").len(), 3 * 6, "{}", page.html);
    let form = section(&page.html, "companion-form");
    assert!(form.contains(&format!("value=\"{near}\"")) && form.contains(&format!("value=\"{next}\"")), "{form}");
    assert!(!form.contains(&away), "a contact outside the township is not offered: {form}");
    assert!(form.contains("name=\"csrf\""));
    assert!(section(&page.html, "exposure-trucks").contains("暂无记录"));

    // One ticked: marked, the code yellow from the time both were at the hotel.
    let mark = |persons: &[&str], all: bool| {
        let mut f: Vec<(&str, String)> = vec![("person", case.clone()), ("window_minutes", "30".into())];
        f.extend(persons.iter().map(|p| ("persons", p.to_string())));
        if all {
            f.push(("all", "on".into()));
        }
        f
    };
    let post = |f: Vec<(&'static str, String)>| {
        let ui = &ui;
        async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            ui.post("/exposure", &f).await
        }
    };
    let a = post(mark(&[&near], false)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.html);
    let shown = ui.get(&a.location).await;
    assert!(shown.html.contains("已标记 1 人为时空伴随人员；0 人此前已标记"), "{}", shown.html);
    let v = code(&c, &near).await;
    assert_eq!((v["colour"].as_str(), reasons(&v)), (Some("yellow"), vec!["companion".to_string()]), "{v}");
    let from = v["inputs"]["controls"][0]["from"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    assert_eq!(from, t0 + Duration::minutes(5));
    // The same post again adds nothing.
    let a = post(mark(&[&near], false)).await;
    assert!(ui.get(&a.location).await.html.contains("已标记 0 人为时空伴随人员；1 人此前已标记"));
    assert_eq!(code(&c, &near).await["inputs"]["controls"].as_array().map(Vec::len), Some(1));
    // "Mark all": the other contact in the township; the one marked before is not marked twice.
    let a = post(mark(&[], true)).await;
    assert!(ui.get(&a.location).await.html.contains("已标记 1 人为时空伴随人员；1 人此前已标记"));
    assert_eq!(code(&c, &next).await["colour"], "yellow");
    assert_eq!(code(&c, &away).await["colour"], "green");

    // Refused, nothing changed: outside the township, not a contact, nobody chosen, no CSRF token.
    for (persons, text) in [
        (vec![away.as_str()], "该人员不在您的辖区内"),
        (vec![stranger.as_str(), near.as_str()], "该人员不是本次排查找到的伴随人员"),
        (vec![], "请至少选择一名伴随人员"),
    ] {
        let a = post(mark(&persons, false)).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{persons:?}");
        assert!(a.html.contains(text), "{text}: {}", a.html);
    }
    let a = ui.post_raw("/exposure", &[("person", &case), ("persons", &stranger)]).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    for p in [&away, &stranger] {
        assert_eq!(code(&c, p).await["colour"], "green");
    }
    let en = Ui::of(&app, "longquan", "en").await;
    let a = en.post("/exposure", &[("person", &case), ("persons", &away)]).await;
    assert!(a.html.contains("outside your jurisdiction"), "{}", a.html);

    // Audited: each post that marked or found marked, not the refused ones.
    let (_, log) = c.get(&format!("/api/v1/audit?object_id={case}")).await;
    let marks = log["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "exposure.mark_companions").count();
    assert_eq!(marks, 3, "{log}");
    // The API does the same.
    let (st, m) = c.post(&format!("/api/v1/persons/{case}/exposure/companions"), json!({"persons": [near, away]})).await;
    assert_eq!(st, StatusCode::OK, "{m}");
    assert_eq!((m["marked"].as_array().map(Vec::len), m["already"][0].as_str()), (Some(1), Some(near.as_str())), "{m}");
    assert_eq!(code(&c, &away).await["colour"], "yellow");
    // Venue staff may not mark.
    let (st, _) = app.login("venue").await.post(&format!("/api/v1/persons/{case}/exposure/companions"), json!({"all": true})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    app.stop().await;
}
both!(marking_companions_from_the_search_page, marking_companions_from_the_search_page);

async fn visit_count(c: &Session, venue: &str) -> usize {
    c.get(&format!("/api/v1/venues/{venue}/visits")).await.1["visits"].as_array().unwrap().len()
}

async fn residents_scan_the_poster_with_their_own_phone(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let (st, hotel) = c.post("/api/v1/venues", json!({"name": "太行宾馆", "kind": "hotel", "division": "140427100"})).await;
    assert_eq!(st, StatusCode::CREATED, "{hotel}");
    let h = hotel["id"].as_str().unwrap().to_string();
    let p = person(&c, 110).await;
    control(&c, &p, json!({"kind": "home_isolation"})).await;
    let (_, l) = c.post(&format!("/api/v1/persons/{p}/code/link"), json!({})).await;
    let link = l["link"].as_str().unwrap();
    // The poster's QR opens the venue's public page.
    let poster = Ui::of(&app, "commander", "zh").await.get(&format!("/venues/{h}/poster")).await;
    assert!(poster.html.contains(&format!("/v/{h}")), "{}", poster.html);

    // A phone that never opened its link: told to open it first; nothing registered.
    let mut phone = Ui::anonymous(&app, "zh");
    let a = phone.get(&format!("/v/{h}")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.html.contains("id=\"venue-fallback\"") && !a.html.contains("scan-answer"), "{}", a.html);
    assert_eq!(visit_count(&c, &h).await, 0);

    // Opening the link remembers the person: an HttpOnly cookie for the venue pages holding the signed link only.
    let a = phone.get(l["path"].as_str().unwrap()).await;
    assert_eq!(a.status, StatusCode::OK);
    let cookie = a.cookies.iter().find(|k| k.starts_with("baton_me=")).unwrap_or_else(|| panic!("{:?}", a.cookies));
    let head = format!("baton_me={link}; Path=/v; HttpOnly; SameSite=Lax; Max-Age=");
    assert!(cookie.starts_with(&head), "{cookie}");
    assert!(cookie[head.len()..].parse::<i64>().unwrap() > 29 * 86_400, "{cookie}");
    assert!(a.html.contains("id=\"code-remembered\""));
    phone.cookie = format!("{}; baton_me={link}", phone.cookie);

    // The poster scanned: registered and answered at once by the code (yellow: restricted), family name only.
    let a = phone.get(&format!("/v/{h}")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.html);
    let answer = tag(&a.html, "scan-answer");
    assert!(answer.contains("data-admission=\"restricted\"") && answer.contains("data-colour=\"yellow\""), "{answer}");
    assert!(a.html.contains("居***") && !a.html.contains("居民110") && !a.html.contains(&id_number(110)[6..14]));
    assert_eq!(visit_count(&c, &h).await, 1);
    // Scanned again (or the page reloaded): the same visit, marked as a repeat.
    let a = phone.get(&format!("/v/{h}")).await;
    assert!(a.html.contains("重复扫码"), "{}", a.html);
    assert_eq!(visit_count(&c, &h).await, 1);
    // After `token_minutes` (10) it is a new visit.
    app.clock.advance(Duration::minutes(10));
    let a = phone.get(&format!("/v/{h}")).await;
    assert!(!a.html.contains("重复扫码"), "{}", a.html);
    assert_eq!(visit_count(&c, &h).await, 2);

    // Opened from another site: nothing registered until the resident confirms on the page.
    app.clock.advance(Duration::minutes(10));
    let a = phone.get_with(&format!("/v/{h}"), &[("sec-fetch-site", "cross-site")]).await;
    assert!(a.html.contains("id=\"visit-confirm-form\"") && !a.html.contains("scan-answer"), "{}", a.html);
    assert_eq!(visit_count(&c, &h).await, 2);
    let form = section(&a.html, "venue-public");
    let token = form.split("name=\"confirm\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let a = phone.post_raw(&format!("/v/{h}"), &[("confirm", "forged")]).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(visit_count(&c, &h).await, 2);
    let a = phone.post_raw(&format!("/v/{h}"), &[("confirm", &token)]).await;
    assert!(tag(&a.html, "scan-answer").contains("restricted"), "{}", a.html);
    assert_eq!(visit_count(&c, &h).await, 3);

    // The code turns red: the next scan is barred at once.
    control(&c, &p, json!({"kind": "central_quarantine"})).await;
    app.clock.advance(Duration::minutes(10));
    let a = phone.get(&format!("/v/{h}")).await;
    assert!(tag(&a.html, "scan-answer").contains("data-admission=\"barred\""), "{}", a.html);
    // An unknown venue is not found.
    assert_eq!(phone.get(&format!("/v/{}", Uuid::now_v7())).await.status, StatusCode::NOT_FOUND);
    // After `link_days` (30) the link no longer opens: refused and forgotten on the phone.
    app.clock.advance(Duration::days(30));
    let a = phone.get(&format!("/v/{h}")).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(a.html.contains("链接已失效") && a.html.contains("id=\"venue-fallback\""), "{}", a.html);
    assert!(a.cookies.iter().any(|k| k.starts_with("baton_me=; Path=/v;") && k.contains("Max-Age=0")), "{:?}", a.cookies);
    let c = app.login("commander").await;
    assert_eq!(visit_count(&c, &h).await, 4);
    app.stop().await;
}
both!(residents_scan_the_poster_with_their_own_phone, residents_scan_the_poster_with_their_own_phone);

fn sorted_reasons(v: &Value) -> Vec<String> {
    let mut r = reasons(v);
    r.sort();
    r
}

/// Two writers decide one person from the same revision (a risk-area run beside a control
/// order's recompute): the code written second is overtaken and does not land over the first;
/// `settle` decides it again from the facts as they are then. The history keeps one row per
/// revision.
async fn a_code_decided_from_older_facts_does_not_land(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let store = &app.store;
    let now = app.clock.now();
    let decide = |ctx: person_codes::Context, id: Uuid| async move {
        person_codes::decide(store, &ctx, &[id], "risk_areas", person_codes::Reads::Lists).await.unwrap()
    };
    let context = || async { person_codes::Context::load(store).await.unwrap() };
    let (p, q) = (person(&c, 60).await, person(&c, 61).await);
    let (pid, qid): (Uuid, Uuid) = (p.parse().unwrap(), q.parse().unwrap());
    stays_in(&c, &p, "140105", now).await;
    stays_in(&c, &q, "140105", now).await;
    let p0 = code(&c, &p).await["rev"].as_i64().unwrap();
    let v = control(&c, &q, json!({"kind": "home_isolation", "to": ts(now + Duration::hours(1))})).await;
    let q0 = v["rev"].as_i64().unwrap();
    let (st, _) = c.post("/api/v1/risk-areas", json!({"division": "140105", "level": "high", "from": ts(now - Duration::days(3))})).await;
    assert_eq!(st, StatusCode::CREATED);
    let both_reasons = vec!["high_risk_stay".to_string(), "home_isolation".into()];

    // The run decides p from the stay alone; a home-isolation order lands and its recompute
    // writes p's code first; the run's write then leaves that code alone.
    let run = decide(context().await, pid).await;
    let v = control(&c, &p, json!({"kind": "home_isolation"})).await;
    assert_eq!((v["rev"].as_i64(), sorted_reasons(&v)), (Some(p0 + 1), both_reasons.clone()));
    let mut tx = store.db.begin().await.unwrap();
    let w = person_codes::write_decided(&mut tx, &run).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(w, person_codes::Written { changed: 0, overtaken: 1 });
    let v = code(&c, &p).await;
    assert_eq!((v["rev"].as_i64(), sorted_reasons(&v)), (Some(p0 + 1), both_reasons.clone()));

    // The other way round: q's code decided while its order ran lands after the order ended,
    // and the code decided after the end is overtaken, decided again, and lands over it.
    let stale = decide(context().await, qid).await;
    app.clock.advance(Duration::hours(2));
    let fresh = decide(context().await, qid).await;
    let mut tx = store.db.begin().await.unwrap();
    assert_eq!(person_codes::write_decided(&mut tx, &stale).await.unwrap(), person_codes::Written { changed: 1, overtaken: 0 });
    tx.commit().await.unwrap();
    assert_eq!(person_codes::settle(store, &[qid], fresh, "risk_areas").await.unwrap(), 1);
    let v = code(&c, &q).await;
    assert_eq!((v["rev"].as_i64(), reasons(&v)), (Some(q0 + 2), vec!["high_risk_stay".to_string()]));
    let (_, h) = c.get(&format!("/api/v1/persons/{q}/code/history")).await;
    let h: Vec<(i64, Vec<String>)> = h["history"].as_array().unwrap().iter().map(|e| (e["rev"].as_i64().unwrap(), sorted_reasons(e))).collect();
    assert_eq!(h[..2], [(q0 + 2, vec!["high_risk_stay".to_string()]), (q0 + 1, both_reasons)], "{h:?}");
    app.stop().await;
}
both!(a_code_decided_from_older_facts_does_not_land, a_code_decided_from_older_facts_does_not_land);

/// A database as Baton left it before the history blocks (migration 0017): a person whose code
/// has two revisions, their reasons and inputs in `person_code_history`. After the upgrade the
/// code and its history read as they did, and new revisions go into blocks on top of them.
async fn codes_written_before_history_blocks_read_on(b: Backend) {
    let f = baton_testkit::fresh(b).await;
    let db = baton::app::open_db(&f.config).await.unwrap();
    db.migrate_to(Some(17)).await.unwrap();
    let id = Uuid::now_v7();
    let t = baton_testkit::t0() - Duration::hours(2);
    db.execute(baton_store::q!(
        "INSERT INTO persons (id, name, document_kind, document_enc, document_bidx, document_masked, jurisdiction, created_by, created_at, updated_at)
         VALUES ($1, '旧居民', 'id_card', $2, $3, '140427********0011', '140427', 'test', $4, $4)",
        id,
        vec![0u8; 8],
        id.as_bytes().to_vec(),
        t
    ))
    .await
    .unwrap();
    let stay = r#"[{"code":"risk_area_stay","colour":"yellow","until":null,"detail":"140105"}]"#;
    let inputs = r#"{"result":null,"hits":[],"controls":[]}"#;
    db.execute(baton_store::q!(
        "INSERT INTO person_codes (person_id, colour, reasons, valid_until, policy_version, jurisdiction, rev, computed_at, changed_at)
         VALUES ($1, 'yellow', $2, NULL, 1, '140427', 2, $3, $3)",
        id,
        stay,
        t
    ))
    .await
    .unwrap();
    for (rev, colour, reasons, cause) in [(1i64, "green", "[]", "on_demand"), (2, "yellow", stay, "risk_areas")] {
        db.execute(baton_store::q!(
            "INSERT INTO person_code_history (person_id, rev, colour, reasons, valid_until, policy_version, inputs, cause, at)
             VALUES ($1, $2, $3, $4, NULL, 1, $5, $6, $7)",
            id,
            rev,
            colour,
            reasons,
            inputs,
            cause,
            t
        ))
        .await
        .unwrap();
    }
    // The policy version's run was done by the older Baton.
    db.execute(baton_store::q!(
        "INSERT INTO code_recomputes (id, cause, cause_ref, state, created_at) VALUES ($1, 'policy', '1', 'done', $2)",
        Uuid::now_v7(),
        t
    ))
    .await
    .unwrap();
    db.close().await;

    let app = f.spawn().await;
    let c = app.login("commander").await;
    let p = id.to_string();
    let history = |h: Value| -> Vec<(i64, String, Vec<String>)> {
        h["history"].as_array().unwrap().iter().map(|e| (e["rev"].as_i64().unwrap(), e["cause"].as_str().unwrap().into(), reasons(e))).collect()
    };
    assert_eq!(sweep(&app).await.processed, 0);
    let v = code(&c, &p).await;
    assert_eq!((v["colour"].as_str(), v["rev"].as_i64(), reasons(&v)), (Some("yellow"), Some(2), vec!["risk_area_stay".to_string()]), "{v}");
    let (_, h) = c.get(&format!("/api/v1/persons/{p}/code/history")).await;
    assert_eq!(
        history(h),
        [(2, "risk_areas".into(), vec!["risk_area_stay".into()]), (1, "on_demand".into(), vec![])],
        "the revisions kept before the blocks"
    );

    // A stay is recorded (no risk area yet: green again), then its place becomes a high-risk
    // area: two revisions in blocks, the first naming no block before it.
    let now = app.clock.now();
    stays_in(&c, &p, "140105", now).await;
    let (st, _) = c.post("/api/v1/risk-areas", json!({"division": "140105", "level": "high", "from": ts(now - Duration::days(3))})).await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(sweep(&app).await.changed, 1);
    let v = code(&c, &p).await;
    assert_eq!((v["colour"].as_str(), v["rev"].as_i64()), (Some("red"), Some(4)), "{v}");
    assert_eq!(v["inputs"]["hits"][0]["division_code"], "140105", "the current revision's inputs, from its block: {v}");
    let (_, h) = c.get(&format!("/api/v1/persons/{p}/code/history")).await;
    let h = history(h);
    let revs: Vec<i64> = h.iter().map(|e| e.0).collect();
    assert_eq!(revs, [4, 3, 2, 1], "{h:?}");
    assert_eq!((h[0].2.clone(), h[1].2.clone(), h[2].2.clone()), (vec!["high_risk_stay".to_string()], vec![], vec!["risk_area_stay".to_string()]));
    assert!(h[0].1.starts_with("risk_areas:"), "{h:?}");
    app.stop().await;
}
both!(codes_written_before_history_blocks_read_on, codes_written_before_history_blocks_read_on);

/// Codes at their `until` are found through the marks their write left (`code_due`): one write
/// of three codes, two due in one hour and one three hours on, leaves a mark per hour; each
/// sweep at an `until` recomputes exactly the codes due by then (read from the table, not
/// through a page, which would recompute on demand), re-marks what is left of the hour, and
/// takes the marks it finished away.
async fn codes_are_recomputed_at_their_until_through_due_marks(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let store = &app.store;
    let now = app.clock.now();
    let hour = DateTime::from_timestamp((now.timestamp().div_euclid(3600) + 2) * 3600, 0).unwrap();
    let ends = [hour + Duration::minutes(10), hour + Duration::minutes(40), hour + Duration::hours(3)];
    let mut ids = Vec::new();
    for (seq, end) in (70..).zip(ends) {
        let id: Uuid = person(&c, seq).await.parse().unwrap();
        store
            .db
            .execute(baton_store::q!(
                "INSERT INTO person_controls (id, person_id, kind, valid_from, valid_to, note, created_by, created_at)
                 VALUES ($1, $2, 'home_isolation', $3, $4, '', 'test', $3)",
                Uuid::now_v7(),
                id,
                now,
                end
            ))
            .await
            .unwrap();
        ids.push(id);
    }
    assert_eq!(person_codes::recompute_ids(store, &ids, "test").await.unwrap(), 3);
    let colours = || async {
        let mut out = Vec::new();
        for id in &ids {
            let r = store.db.fetch_one(baton_store::q!("SELECT colour FROM person_codes WHERE person_id = $1", *id)).await.unwrap();
            out.push(r.get::<String>("colour").unwrap());
        }
        out
    };
    let marks = || async {
        let (lo, hi) = (*ids.iter().min().unwrap(), *ids.iter().max().unwrap());
        let rows = store.db.fetch_all(baton_store::q!("SELECT at FROM code_due WHERE lo >= $1 AND hi <= $2 ORDER BY at", lo, hi)).await.unwrap();
        rows.iter().map(|r| r.get::<DateTime<Utc>>("at").unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(colours().await, ["yellow", "yellow", "yellow"]);
    assert_eq!(marks().await, [ends[0], ends[2]], "a mark per hour, at its earliest until");

    // A second before the first end nothing is due.
    app.clock.advance(ends[0] - now - Duration::seconds(1));
    assert_eq!(sweep(&app).await.expired, 0);
    assert_eq!(colours().await, ["yellow", "yellow", "yellow"]);
    // At the first end: that code alone; the rest of its hour is marked at the second end.
    app.clock.advance(Duration::seconds(1));
    assert_eq!(sweep(&app).await.expired, 1);
    assert_eq!(colours().await, ["green", "yellow", "yellow"]);
    assert_eq!(marks().await, [ends[1], ends[2]]);
    app.clock.advance(ends[1] - ends[0]);
    assert_eq!(sweep(&app).await.expired, 1);
    assert_eq!(colours().await, ["green", "green", "yellow"]);
    assert_eq!(marks().await, [ends[2]]);
    app.clock.advance(ends[2] - ends[1]);
    assert_eq!(sweep(&app).await.expired, 1);
    assert_eq!(colours().await, ["green", "green", "green"]);
    assert!(marks().await.is_empty());
    let (_, h) = c.get(&format!("/api/v1/persons/{}/code/history", ids[2])).await;
    assert_eq!(h["history"][0]["cause"], "expiry", "{h}");
    app.stop().await;
}
both!(codes_are_recomputed_at_their_until_through_due_marks, codes_are_recomputed_at_their_until_through_due_marks);
