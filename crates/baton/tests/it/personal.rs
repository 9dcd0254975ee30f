//! Personal data: sealed at rest, found through the blind index, masked by default,
//! revealed only with the right, and every reveal audited.
use baton_testkit::{Backend, both, spawn_app};
use reqwest::StatusCode;
use serde_json::json;

async fn masked_revealed_audited(b: Backend) {
    let app = spawn_app(b).await;
    let cmd = app.login("commander").await;
    let (_, v) = cmd.get("/api/v1/users?q=baichi").await;
    let u = &v["users"][0];
    let id = u["id"].as_str().unwrap();
    assert_eq!(u["phone"], "139****1004");
    assert_eq!(u["id_number"].as_str().unwrap().len(), 18);
    assert!(u["id_number"].as_str().unwrap().contains("********"));
    // Found by full phone and by ID number through the blind index.
    let full_id = baton::demo::demo_personal_data()[8].clone();
    let (_, found) = cmd.get(&format!("/api/v1/users?id_number={full_id}")).await;
    assert_eq!(found["users"][0]["username"], "baichi");
    // Leaders may see users but not reveal.
    let leader = app.login("leader").await;
    assert_eq!(leader.post(&format!("/api/v1/users/{id}/reveal"), json!({"field": "phone"})).await.0, StatusCode::FORBIDDEN);
    let (s, r) = cmd.post(&format!("/api/v1/users/{id}/reveal"), json!({"field": "phone"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["value"], "13903551004");
    let (s, r) = cmd.post(&format!("/api/v1/users/{id}/reveal"), json!({"field": "id_number"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["value"], full_id);
    let (_, a) = cmd.get(&format!("/api/v1/audit?action=personal.reveal&object_id={id}")).await;
    let entries = a["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["actor_name"], "commander");
    assert!(entries[0]["detail"].as_str().unwrap().contains("id_number"));
    // The audit log itself never holds the revealed value.
    assert!(!a.to_string().contains("13903551004") && !a.to_string().contains(&full_id));
    app.stop().await;
}
both!(personal_data_is_masked_and_reveals_are_audited, masked_revealed_audited);

async fn nothing_plain_at_rest(b: Backend) {
    let app = spawn_app(b).await;
    let secrets = baton::demo::demo_personal_data();
    assert!(secrets.len() >= 28);
    match b {
        Backend::Sqlite => {
            // Every byte of the database, its WAL and shared memory.
            let mut bytes = Vec::new();
            for f in ["baton.db", "baton.db-wal", "baton.db-shm"] {
                if let Ok(b) = std::fs::read(app.config.data_dir.join(f)) {
                    bytes.extend(b);
                }
            }
            assert!(bytes.len() > 100_000);
            for s in &secrets {
                assert!(!bytes.windows(s.len()).any(|w| w == s.as_bytes()), "{s} is in the database file in plain text");
            }
            // Sanity: the scan would find a plain value if there were one.
            assert!(bytes.windows("龙泉镇".len()).any(|w| w == "龙泉镇".as_bytes()));
        }
        Backend::Postgres => {
            // Every column of every row of the users and audit tables, as text.
            let rows = app
                .store
                .db
                .fetch_all(baton_store::q!("SELECT CAST(u AS TEXT) AS t FROM users u UNION ALL SELECT CAST(a AS TEXT) AS t FROM audit_log a"))
                .await
                .unwrap();
            let all: String = rows.iter().map(|r| r.get::<String>("t").unwrap()).collect();
            for s in &secrets {
                assert!(!all.contains(s.as_str()), "{s} is stored in plain text");
            }
            assert!(all.contains("baichi"));
        }
    }
    app.stop().await;
}
both!(no_demo_id_number_or_phone_is_stored_in_plain_text, nothing_plain_at_rest);

async fn key_rotation(b: Backend) {
    let app = spawn_app(b).await;
    let mut ring = baton_store::Keyring::load(&app.config.key_file).unwrap();
    ring.rotate();
    ring.save(&app.config.key_file).unwrap();
    let store = baton::app::open_store(&app.config, app.clock.clone()).await.unwrap();
    let n = baton_store::users::reseal_all(&store).await.unwrap();
    assert_eq!(n, baton::demo::demo_personal_data().len() as u64, "each demo user's phone and ID number");
    assert_eq!(baton_store::users::reseal_all(&store).await.unwrap(), 0);
    let sys = baton_store::Principal::system("t");
    let u = baton_store::users::list(&store, &sys, &baton_store::users::UserFilter { q: Some("baichi".into()), ..Default::default() }).await.unwrap();
    assert_eq!(u[0].phone.as_deref(), Some("139****1004"));
    app.stop().await;
}
both!(keys_rotate_and_values_are_resealed, key_rotation);
