//! The person registry: find-or-create by document (ID card by GB 11643, passport, other), a
//! retry never makes a second record, search by name or whole document number, scope, masking,
//! sealed at rest, and reveal audited. Each runs on SQLite and PostgreSQL.
use baton_testkit::{Backend, both, spawn_app};
use reqwest::StatusCode;
use serde_json::json;

fn id_number(first17: &str) -> String {
    let c = baton_domain::ident::IdNumber::check_char(first17.as_bytes()) as char;
    format!("{first17}{c}")
}

async fn registry(b: Backend) {
    let app = spawn_app(b).await;
    let lq = app.login("longquan").await;
    let id = id_number("14042719800101123");
    let body = json!({"name": "王小明", "document_number": id, "phone": "13800134567", "division": "140427100"});
    let (s, first) = lq.post("/api/v1/persons", body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(first["document_masked"], format!("{}********{}", &id[..6], &id[14..]));
    assert_eq!(first["phone_masked"], "138****4567");
    assert_eq!(first["jurisdiction"], "140427100");
    // The same document again (typed in lower case by someone else) finds the same person.
    let (s, again) = lq.post("/api/v1/persons", json!({"name": "王晓明", "document_number": id.to_lowercase()})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["name"], "王小明", "a scan does not rename the person");
    // A passport with the same characters as nobody's ID number is another person.
    let (s, pp) = lq.post("/api/v1/persons", json!({"name": "John Smith", "document_kind": "passport", "document_number": "E12345678"})).await;
    assert_eq!(s, StatusCode::CREATED, "{pp}");
    assert_eq!(pp["jurisdiction"], "140427100", "no residence given: the registering user's division");
    // Bad input names each field and writes nothing.
    let (s, v) =
        lq.post("/api/v1/persons", json!({"name": "", "document_number": "140427198001011230", "phone": "12345", "division": "140427101"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"]["name"]["code"], "required");
    assert_eq!(v["fields"]["phone"]["code"], "phone_format");
    assert_eq!(v["fields"]["division"]["code"], "outside_scope");
    assert!(v["fields"]["document_number"]["code"].as_str().unwrap().starts_with("id_number"));
    let (s, v) = lq.post("/api/v1/persons", json!({"name": "x", "document_kind": "licence", "document_number": "E123"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"]["document_kind"]["code"], "document_kind_unknown");
    // Search by name prefix and by whole document number.
    let (_, v) = lq.get("/api/v1/persons?q=%E7%8E%8B").await;
    assert_eq!(v["persons"].as_array().unwrap().len(), 1);
    let (_, v) = lq.get(&format!("/api/v1/persons?q={id}")).await;
    assert_eq!(v["persons"][0]["id"], first["id"]);
    let (_, v) = lq.get("/api/v1/persons?q=%25").await;
    assert_eq!(v["persons"].as_array().unwrap().len(), 0, "% is a character, not a wildcard");
    // Another township sees neither the person nor the search hit.
    let bc = app.login("baichi").await;
    let pid = first["id"].as_str().unwrap();
    assert_eq!(bc.get(&format!("/api/v1/persons/{pid}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(bc.get(&format!("/api/v1/persons?q={id}")).await.1["persons"].as_array().unwrap().len(), 0);
    // The ID number and phone are sealed at rest: the row holds no plain digits.
    let row = app.store.db.fetch_one(baton_store::q!("SELECT document_enc, phone_enc FROM persons WHERE name = '王小明'")).await.unwrap();
    let enc: Vec<u8> = row.get("document_enc").unwrap();
    assert!(!enc.windows(id.len()).any(|w| w == id.as_bytes()));
    let enc: Vec<u8> = row.get("phone_enc").unwrap();
    assert!(!enc.windows(11).any(|w| w == b"13800134567"));
    // Revealing needs the right and leaves an audit entry.
    let grid = app.login("grid").await;
    assert_eq!(grid.post(&format!("/api/v1/persons/{pid}/reveal"), json!({"field": "id_number"})).await.0, StatusCode::FORBIDDEN);
    let (s, v) = lq.post(&format!("/api/v1/persons/{pid}/reveal"), json!({"field": "id_number"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["value"], id);
    let cmd = app.login("commander").await;
    let (_, audit) = cmd.get("/api/v1/audit?action=personal.reveal").await;
    assert!(audit.to_string().contains(pid), "{audit}");
    // A sampler (scoped to their team) registers at the desk and gets the record back.
    let sampler = app.login("sampler").await;
    let (s, v) = sampler.post("/api/v1/persons", json!({"name": "李四", "document_number": id_number("14042719900202234")})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = sampler.post("/api/v1/persons", json!({"name": "王小明", "document_number": id})).await;
    assert_eq!((s, &v["id"]), (StatusCode::OK, &first["id"]));
    app.stop().await;
}
both!(the_person_registry_finds_by_document_and_keeps_scope, registry);

async fn retries(b: Backend) {
    let app = spawn_app(b).await;
    let lq = app.login("longquan").await;
    let body = json!({"name": "赵六", "document_number": id_number("14042720000303345")});
    // Concurrent registrations of one document make one record.
    let (a, b2) = tokio::join!(lq.post("/api/v1/persons", body.clone()), lq.post("/api/v1/persons", body.clone()));
    assert!(a.0.is_success() && b2.0.is_success(), "{} {}", a.1, b2.1);
    assert_eq!(a.1["id"], b2.1["id"]);
    let n = app.store.db.fetch_one(baton_store::q!("SELECT COUNT(*) AS n FROM persons")).await.unwrap();
    assert_eq!(n.get::<i64>("n").unwrap(), 1);
    app.stop().await;
}
both!(registering_one_document_twice_at_once_makes_one_person, retries);
