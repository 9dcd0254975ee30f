//! The binary's own commands, run as a county IT officer would: demo, migrate, user, keys, audit.
use baton_store::{Principal, units, users};
use std::process::Command;

fn baton(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_baton"));
    c.arg("--data-dir").arg(dir).env_remove("BATON_DATABASE_URL").env_remove("BATON_CONFIG").env("BATON_LOG", "warn");
    c
}

fn run(c: &mut Command) -> (bool, String) {
    let out = c.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

async fn open(dir: &std::path::Path) -> baton_store::Store {
    let cfg = baton::config::Overrides { data_dir: Some(dir.to_path_buf()), ..Default::default() }.resolve().unwrap();
    baton::app::open_store(&cfg, std::sync::Arc::new(baton_domain::clock::SystemClock)).await.unwrap()
}

#[tokio::test]
async fn demo_builds_huguan_with_every_township_and_village() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run(baton(dir.path()).args(["demo", "--no-serve"]));
    assert!(ok, "{out}");
    assert!(out.contains("commander") && out.contains(baton::demo::DEMO_PASSWORD), "{out}");
    let store = open(dir.path()).await;
    let sys = Principal::system("t");
    let count = |kind: &str| {
        let store = store.clone();
        let sys = sys.clone();
        let kind = kind.to_string();
        async move { units::list(&store, &sys, &units::UnitFilter { kind: Some(kind), q: None }).await.unwrap().len() }
    };
    assert_eq!(count("township").await, 11);
    assert_eq!(count("village").await, 283);
    assert_eq!(count("command_office").await, 1);
    for kind in [
        "task_force",
        "department",
        "checkpoint",
        "truck_service_site",
        "cargo_owner",
        "logistics_park",
        "school",
        "key_venue",
        "lab",
        "sampling_team",
        "quarantine_hotel",
    ] {
        assert!(count(kind).await >= 1, "no {kind}");
    }
    let roles: Vec<String> = users::list(&store, &sys, &Default::default()).await.unwrap().into_iter().map(|u| u.role).collect();
    for r in baton_domain::role::BUILTIN_ROLES {
        assert!(roles.iter().any(|x| x == r.name), "no demo user for role {}", r.name);
    }
    store.db.close().await;
    // Running it again keeps the county as it is.
    let (ok, out) = run(baton(dir.path()).args(["demo", "--no-serve"]));
    assert!(ok, "{out}");
    let store = open(dir.path()).await;
    assert_eq!(units::list(&store, &sys, &units::UnitFilter { kind: Some("township".into()), q: None }).await.unwrap().len(), 11);
}

#[tokio::test]
async fn user_keys_and_audit_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run(baton(dir.path()).arg("migrate"));
    assert!(ok, "{out}");
    // A weak password is refused with the field's message, and nothing is created.
    let (ok, out) =
        run(baton(dir.path()).args(["user", "create", "--username", "chief", "--display-name", "主任"]).env("BATON_NEW_PASSWORD", "weak"));
    assert!(!ok && out.contains("password"), "{out}");
    let (ok, out) = run(baton(dir.path())
        .args(["user", "create", "--username", "chief", "--display-name", "主任"])
        .env("BATON_NEW_PASSWORD", "Chief-password-1"));
    assert!(ok, "{out}");
    let (ok, out) = run(baton(dir.path()).args(["user", "reset-password", "--username", "chief"]).env("BATON_NEW_PASSWORD", "Chief-password-2"));
    assert!(ok, "{out}");
    let store = open(dir.path()).await;
    let sys = Principal::system("t");
    let ok_login = baton_store::auth::login(&store, "chief", "Chief-password-2", "127.0.0.1", "", "zh", "t").await;
    assert!(ok_login.is_ok());
    store.db.close().await;
    let (ok, out) = run(baton(dir.path()).args(["user", "disable", "--username", "chief"]));
    assert!(ok, "{out}");
    let store = open(dir.path()).await;
    let u = users::list(&store, &sys, &Default::default()).await.unwrap();
    assert!(u.iter().find(|x| x.username == "chief").unwrap().disabled);
    store.db.close().await;
    let (ok, out) = run(baton(dir.path()).args(["keys", "show"]));
    assert!(ok && out.contains("active key: k1"), "{out}");
    let (ok, out) = run(baton(dir.path()).args(["keys", "rotate"]));
    assert!(ok && out.contains("new active key k2"), "{out}");
    let (ok, out) = run(baton(dir.path()).args(["audit", "verify"]));
    assert!(ok && out.contains("intact"), "{out}");
    // The key file never shows up in output.
    let keys = std::fs::read_to_string(dir.path().join("keys.json")).unwrap();
    let ring: serde_json::Value = serde_json::from_str(&keys).unwrap();
    assert!(!out.contains(ring["index_key"].as_str().unwrap()));
}
