//! A township-scoped user can neither read nor change another township's records,
//! endpoint by endpoint. 龙泉镇 (140427100) staff against 百尺镇 (140427101) records.
use baton_testkit::{Backend, Session, TestApp, both, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn unit_id(s: &Session, name: &str) -> String {
    let (_, v) = s.get(&format!("/api/v1/units?q={name}")).await;
    v["units"].as_array().unwrap().iter().find(|u| u["name"] == name).unwrap_or_else(|| panic!("no unit {name}: {v}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn user_id(s: &Session, username: &str) -> String {
    let (_, v) = s.get(&format!("/api/v1/users?q={username}")).await;
    v["users"].as_array().unwrap().iter().find(|u| u["username"] == username).unwrap()["id"].as_str().unwrap().to_string()
}

fn names(v: &Value, list: &str, field: &str) -> Vec<String> {
    v[list].as_array().unwrap().iter().map(|x| x[field].as_str().unwrap_or("").to_string()).collect()
}

async fn township_scope(b: Backend) {
    let app = spawn_app(b).await;
    let cmd = app.login("commander").await;
    let admin = app.login("admin").await;
    let lq = app.login("longquan").await;

    // Records of 百尺镇 made by the county.
    let baichi_team = unit_id(&cmd, "百尺镇核酸采样队").await;
    let baichi_user = user_id(&cmd, "baichi").await;
    let (s, grid) = cmd.post("/api/v1/grids", json!({"village_code": "140427101200", "name": "百尺一网格"})).await;
    assert_eq!(s, StatusCode::CREATED, "{grid}");
    let baichi_unit = unit_id(&cmd, "百尺镇人民政府").await;
    let (s, tok) =
        admin.post("/api/v1/tokens", json!({"name": "百尺设备", "unit_id": baichi_unit, "permissions": ["units.read"], "scope_kind": "unit"})).await;
    assert_eq!(s, StatusCode::CREATED, "{tok}");
    let baichi_token = tok["token"]["id"].as_str().unwrap().to_string();
    let lq_unit = unit_id(&cmd, "龙泉镇人民政府").await;

    // A township-scoped administrator, to try every write.
    let (s, r) = admin.post("/api/v1/roles", json!({"name": "township_admin", "label_zh": "乡镇管理员", "label_en": "Township admin", "permissions": ["tokens.write", "units.read", "units.write", "users.read", "users.write", "audit.read", "grids.write", "personal.reveal"]})).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let (s, u) = admin.post("/api/v1/users", json!({"username": "lq_admin", "display_name": "龙泉管理员", "unit_id": lq_unit, "role": "township_admin", "scope_kind": "division", "scope_code": "140427100", "password": "Longquan-admin-1"})).await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    let la = app.login_with("lq_admin", "Longquan-admin-1").await.unwrap();
    // Units: list, read, change, create.
    let (s, v) = lq.get("/api/v1/units").await;
    assert_eq!(s, StatusCode::OK);
    let listed = names(&v, "units", "name");
    assert!(listed.contains(&"龙泉镇核酸采样队".to_string()), "{listed:?}");
    assert!(!listed.iter().any(|n| n.contains("百尺")), "{listed:?}");
    assert!(!listed.contains(&"壶关县疫情防控指挥部办公室".to_string()), "county units are outside a township scope");
    assert_eq!(lq.get(&format!("/api/v1/units/{baichi_team}")).await.0, StatusCode::NOT_FOUND);
    let change = json!({"name": "被改名", "kind": "sampling_team", "division_code": "140427101"});
    assert_eq!(lq.put(&format!("/api/v1/units/{baichi_team}"), change.clone()).await.0, StatusCode::FORBIDDEN, "township staff may not write units");
    assert_eq!(la.put(&format!("/api/v1/units/{baichi_team}"), change.clone()).await.0, StatusCode::NOT_FOUND);
    let (s, e) = la.post("/api/v1/units", json!({"name": "越权单位", "kind": "lab", "division_code": "140427101"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["fields"]["division_code"]["code"], "outside_scope");
    // A supervisor in another township is answered as unknown (no probing, no hanging a unit
    // under it); one above the township (the county's testing task force) is accepted.
    let (s, e) = la
        .post("/api/v1/units", json!({"name": "龙泉新队", "kind": "sampling_team", "division_code": "140427100", "supervisor_id": baichi_team}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["fields"]["supervisor_id"]["code"], "unit_unknown");
    let county_tf = unit_id(&cmd, "核酸检测专班").await;
    let (s, e) = la
        .post("/api/v1/units", json!({"name": "龙泉新队", "kind": "sampling_team", "division_code": "140427100", "supervisor_id": county_tf}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    // Moving one's own unit into another township is refused too.
    let own = unit_id(&lq, "龙泉镇核酸采样队").await;
    let (s, e) =
        la.put(&format!("/api/v1/units/{own}"), json!({"name": "龙泉镇核酸采样队", "kind": "sampling_team", "division_code": "140427101"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["fields"]["division_code"]["code"], "outside_scope");
    assert_eq!(la.post(&format!("/api/v1/users/{baichi_user}/reveal"), json!({"field": "id_number"})).await.0, StatusCode::NOT_FOUND);

    // Users: list, read, change, reveal, reset, revoke, create.
    let (_, v) = lq.get("/api/v1/users").await;
    let listed = names(&v, "users", "username");
    assert!(listed.contains(&"longquan".to_string()) && !listed.contains(&"baichi".to_string()), "{listed:?}");
    assert_eq!(lq.get(&format!("/api/v1/users/{baichi_user}")).await.0, StatusCode::NOT_FOUND);
    let upd = json!({"username": "baichi", "display_name": "x", "unit_id": baichi_unit, "role": "township_staff", "scope_kind": "unit"});
    assert_eq!(lq.put(&format!("/api/v1/users/{baichi_user}"), upd).await.0, StatusCode::FORBIDDEN, "township staff may not write users at all");
    assert_eq!(lq.post(&format!("/api/v1/users/{baichi_user}/reveal"), json!({"field": "phone"})).await.0, StatusCode::NOT_FOUND);
    // Listing by phone cannot find someone outside the scope either.
    let (_, v) = lq.get("/api/v1/users?phone=13903551004").await;
    assert_eq!(v["users"].as_array().unwrap().len(), 0, "baichi's phone is not findable from 龙泉镇");
    let (_, v) = cmd.get("/api/v1/users?phone=13903551004").await;
    assert_eq!(names(&v, "users", "username"), ["baichi"]);

    // Grids: list and create.
    let (_, v) = lq.get("/api/v1/grids").await;
    assert!(!names(&v, "grids", "name").contains(&"百尺一网格".to_string()));
    let (s, e) = lq.post("/api/v1/grids", json!({"village_code": "140427101200", "name": "越权网格"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["fields"]["village_code"]["code"], "outside_scope");
    let (s, g) = lq.post("/api/v1/grids", json!({"village_code": "140427100200", "name": "龙泉一网格"})).await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    assert!(g["code"].as_str().unwrap().starts_with("140427100200"));

    // Audit: 百尺镇 entries are invisible to 龙泉镇 (township staff have no audit.read at all).
    assert_eq!(lq.get("/api/v1/audit").await.0, StatusCode::FORBIDDEN);
    let (_, all) = cmd.get("/api/v1/audit?object_type=grid").await;
    assert_eq!(all["entries"].as_array().unwrap().len(), 2);

    // Policy: a township cannot make county policy.
    let (s, _) = lq.post("/api/v1/policy", json!({"effective_from": "2030-01-01T00:00:00Z", "params": {}, "note": "x"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Tokens: a township-scoped administrator sees and revokes only its own tokens.
    let (_, t) = la.get("/api/v1/tokens").await;
    assert!(!names(&t, "tokens", "name").contains(&"百尺设备".to_string()));
    assert_eq!(la.post(&format!("/api/v1/tokens/{baichi_token}/revoke"), json!({})).await.0, StatusCode::NOT_FOUND);
    let (s, e) =
        la.post("/api/v1/tokens", json!({"name": "越权", "unit_id": baichi_unit, "permissions": ["units.read"], "scope_kind": "unit"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["fields"]["unit_id"]["code"], "unit_unknown");
    let (s, e) = la
        .post(
            "/api/v1/tokens",
            json!({"name": "大范围", "unit_id": lq_unit, "permissions": ["units.read"], "scope_kind": "division", "scope_code": "140427"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["fields"]["scope_code"]["code"], "outside_scope");
    // …and cannot touch 百尺镇's users, nor create users outside the township or with more rights.
    assert_eq!(la.get(&format!("/api/v1/users/{baichi_user}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(la.post(&format!("/api/v1/users/{baichi_user}/password"), json!({"password": "Another-pass-1"})).await.0, StatusCode::NOT_FOUND);
    assert_eq!(la.post(&format!("/api/v1/users/{baichi_user}/revoke-sessions"), json!({})).await.0, StatusCode::NOT_FOUND);
    let upd = json!({"username": "baichi", "display_name": "x", "unit_id": lq_unit, "role": "township_staff", "scope_kind": "unit"});
    assert_eq!(la.put(&format!("/api/v1/users/{baichi_user}"), upd).await.0, StatusCode::NOT_FOUND);
    let (s, e) = la.post("/api/v1/users", json!({"username": "sneaky", "display_name": "x", "unit_id": baichi_unit, "role": "grid_member", "scope_kind": "unit", "password": "Sneaky-pass-12"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["fields"]["unit_id"]["code"], "unit_unknown");
    let (s, e) = la.post("/api/v1/users", json!({"username": "boss", "display_name": "x", "unit_id": lq_unit, "role": "admin", "scope_kind": "division", "scope_code": "140427", "password": "Boss-pass-1234"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["fields"]["role"]["code"], "exceeds_own");
    assert_eq!(e["fields"]["scope_code"]["code"], "outside_scope");
    let (_, a) = la.get("/api/v1/audit").await;
    let objs: Vec<String> = a["entries"].as_array().unwrap().iter().map(|x| x["jurisdiction"].as_str().unwrap().to_string()).collect();
    assert!(objs.iter().any(|j| j.starts_with("140427100")), "{objs:?}");
    // Only the township's own entries: the county's (here the new role, made by the county's
    // administrator) and the system's are not a township's to read.
    assert!(objs.iter().all(|j| j.starts_with("140427100")), "{objs:?}");

    // Nothing of 百尺镇 changed.
    let (_, team) = cmd.get(&format!("/api/v1/units/{baichi_team}")).await;
    assert_eq!(team["name"], "百尺镇核酸采样队");
    assert!(app.login_with("baichi", baton::demo::DEMO_PASSWORD).await.is_ok());
    app.stop().await;
}
both!(a_township_user_cannot_read_or_change_another_township, township_scope);

async fn unit_scope(b: Backend) {
    let app = spawn_app(b).await;
    // A checkpoint worker (own-unit scope) sees only their own unit.
    let cp = app.login("checkpoint").await;
    let (_, v) = cp.get("/api/v1/units").await;
    assert_eq!(names(&v, "units", "name"), ["龙泉高速出口卡口"]);
    let cmd = app.login("commander").await;
    let other = unit_id(&cmd, "集店高速出口卡口").await;
    assert_eq!(cp.get(&format!("/api/v1/units/{other}")).await.0, StatusCode::NOT_FOUND);
    app.stop().await;
}
both!(a_unit_scoped_user_sees_only_their_unit, unit_scope);

/// 龙泉镇's administrator, signed in: a role of `perms` (made by the county's administrator),
/// scoped to the township.
async fn township_admin(app: &TestApp, admin: &Session, perms: &[&str]) -> Session {
    let (s, r) = admin
        .post("/api/v1/roles", json!({"name": "township_admin", "label_zh": "乡镇管理员", "label_en": "Township admin", "permissions": perms}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let lq_unit = unit_id(admin, "龙泉镇人民政府").await;
    let (s, u) = admin.post("/api/v1/users", json!({"username": "lq_admin", "display_name": "龙泉管理员", "unit_id": lq_unit, "role": "township_admin", "scope_kind": "division", "scope_code": "140427100", "password": "Longquan-admin-1"})).await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    app.login_with("lq_admin", "Longquan-admin-1").await.unwrap()
}

/// A user made by the county's administrator in the county hospital's lab (a unit in 龙泉镇),
/// with a role and a division scope; returns their id.
async fn lab_user(admin: &Session, username: &str, role: &str, scope_code: &str) -> String {
    let lab = unit_id(admin, "壶关县人民医院核酸检测实验室").await;
    let (s, u) = admin
        .post(
            "/api/v1/users",
            json!({"username": username, "display_name": username, "unit_id": lab, "role": role, "scope_kind": "division",
                   "scope_code": scope_code, "password": "Lab-password-12", "phone": "13903559999"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    u["id"].as_str().unwrap().to_string()
}

async fn role(admin: &Session, name: &str, perms: &[&str]) {
    let (s, r) = admin.post("/api/v1/roles", json!({"name": name, "label_zh": name, "label_en": name, "permissions": perms})).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
}

async fn township_admin_and_county_user(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.login("admin").await;
    let la = township_admin(&app, &admin, &["units.read", "users.read", "users.write", "personal.reveal", "tokens.write"]).await;
    role(&admin, "viewer", &["units.read"]).await;
    // A county-scoped user whose unit lies in 龙泉镇: the township's administrator sees them…
    let county = lab_user(&admin, "county_lab", "viewer", "140427").await;
    let signed_in = app.login_with("county_lab", "Lab-password-12").await.unwrap();
    assert_eq!(la.get(&format!("/api/v1/users/{county}")).await.0, StatusCode::OK);
    // …but may not reset their password, sign them out, reveal their data, disable or change them:
    // a role within the administrator's, a scope beyond it.
    let lab = unit_id(&admin, "壶关县人民医院核酸检测实验室").await;
    let edit = |disabled: bool| json!({"username": "county_lab", "display_name": "改", "unit_id": lab, "role": "viewer", "scope_kind": "unit", "disabled": disabled});
    for (path, body) in [("password", json!({"password": "Taken-over-123"})), ("revoke-sessions", json!({})), ("reveal", json!({"field": "phone"}))] {
        let (s, e) = la.post(&format!("/api/v1/users/{county}/{path}"), body).await;
        assert_eq!((s, e["error"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{path}: {e}");
        assert!(e["message_zh"].is_string() && e["message_en"].is_string(), "{e}");
    }
    for disabled in [true, false] {
        assert_eq!(la.put(&format!("/api/v1/users/{county}"), edit(disabled)).await.0, StatusCode::FORBIDDEN);
    }
    // Nothing changed: still signed in, the password still theirs, the scope still the county.
    assert_eq!(signed_in.get("/api/v1/me").await.0, StatusCode::OK);
    assert!(app.login_with("county_lab", "Lab-password-12").await.is_ok());
    let (_, u) = admin.get(&format!("/api/v1/users/{county}")).await;
    assert_eq!((u["scope"]["code"].as_str(), u["display_name"].as_str(), u["disabled"].as_bool()), (Some("140427"), Some("county_lab"), Some(false)));
    let (_, a) = admin.get(&format!("/api/v1/audit?object_id={county}&action=personal.reveal")).await;
    assert_eq!(a["entries"].as_array().unwrap().len(), 0);
    // Likewise a county-wide API token of the lab: listed (its unit is in the township), not
    // the township's to revoke; one scoped to the township is.
    let token = |scope: &str| json!({"name": scope, "unit_id": lab, "permissions": ["units.read"], "scope_kind": "division", "scope_code": scope});
    let (_, t) = admin.post("/api/v1/tokens", token("140427")).await;
    let (_, own_t) = admin.post("/api/v1/tokens", token("140427100")).await;
    let bot = admin.with_bearer(t["secret"].as_str().unwrap());
    let path = |t: &Value| format!("/api/v1/tokens/{}/revoke", t["token"]["id"].as_str().unwrap());
    assert_eq!(la.post(&path(&t), json!({})).await.0, StatusCode::FORBIDDEN);
    assert_eq!(bot.get("/api/v1/units").await.0, StatusCode::OK);
    assert_eq!(la.post(&path(&own_t), json!({})).await.0, StatusCode::OK);

    // The same role, scoped to the township: the administrator's to manage.
    let own = lab_user(&admin, "lq_lab", "viewer", "140427100").await;
    assert_eq!(la.post(&format!("/api/v1/users/{own}/reveal"), json!({"field": "phone"})).await.0, StatusCode::OK);
    assert_eq!(la.post(&format!("/api/v1/users/{own}/password"), json!({"password": "Reset-by-town-1"})).await.0, StatusCode::OK);
    assert_eq!(la.post(&format!("/api/v1/users/{own}/revoke-sessions"), json!({})).await.0, StatusCode::OK);
    let (s, u) = la
        .put(
            &format!("/api/v1/users/{own}"),
            json!({"username": "lq_lab", "display_name": "龙泉检测", "unit_id": lab, "role": "viewer", "scope_kind": "unit", "disabled": true}),
        )
        .await;
    assert_eq!((s, u["disabled"].as_bool()), (StatusCode::OK, Some(true)), "{u}");
    app.stop().await;
}
both!(a_township_admin_cannot_act_on_a_county_user_whose_unit_is_in_the_township, township_admin_and_county_user);

async fn role_of(s: &Session, name: &str) -> Value {
    let (_, v) = s.get("/api/v1/roles").await;
    v["roles"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap().clone()
}

async fn roles_within_reach(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.login("admin").await;
    let la = township_admin(&app, &admin, &["units.read", "users.read", "users.write", "roles.write", "personal.reveal"]).await;
    let save = |name: &str, perms: &[&str]| json!({"name": name, "label_zh": name, "label_en": name, "permissions": perms});

    // Built-in roles are read-only, for everyone.
    for (who, name) in [(&la, "grid_member"), (&admin, "grid_member"), (&admin, "admin")] {
        let (s, e) = who.post("/api/v1/roles", save(name, &["units.read"])).await;
        assert_eq!((s, e["error"].as_str()), (StatusCode::CONFLICT, Some("role_builtin")), "{e}");
    }
    assert_eq!(role_of(&admin, "grid_member").await["permissions"].as_array().unwrap().len(), 4);

    // A role held by a county-scoped user is out of the township administrator's reach,
    // even to add a permission the administrator holds.
    role(&admin, "viewer", &["units.read"]).await;
    lab_user(&admin, "county_lab", "viewer", "140427").await;
    let (s, e) = la.post("/api/v1/roles", save("viewer", &["units.read", "personal.reveal"])).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["fields"]["name"]["code"], "role_held_outside_scope");
    assert!(e["fields"]["name"]["zh"].is_string() && e["fields"]["name"]["en"].is_string(), "{e}");
    assert_eq!(role_of(&admin, "viewer").await["permissions"], json!(["units.read"]));
    // The county's administrator, whose scope covers every holder, may.
    assert_eq!(admin.post("/api/v1/roles", save("viewer", &["units.read", "personal.reveal"])).await.0, StatusCode::OK);

    // A role held only inside the township is the administrator's to change, within their own permissions.
    role(&admin, "lq_viewer", &["units.read"]).await;
    lab_user(&admin, "lq_lab", "lq_viewer", "140427100").await;
    let (s, r) = la.post("/api/v1/roles", save("lq_viewer", &["units.read", "users.read"])).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, e) = la.post("/api/v1/roles", save("lq_viewer", &["units.read", "policy.write"])).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["fields"]["permissions"]["code"], "exceeds_own");
    // Nor may they create a role above their own, nor change one that holds more than they do
    // (held by no one: it is the permissions, not the holders, that put it out of reach).
    let (s, e) = la.post("/api/v1/roles", save("lq_planner", &["policy.write"])).await;
    assert_eq!((s, e["fields"]["permissions"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("exceeds_own")), "{e}");
    role(&admin, "planner", &["policy.read", "policy.write"]).await;
    let (s, e) = la.post("/api/v1/roles", save("planner", &["units.read"])).await;
    assert_eq!((s, e["fields"]["name"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("role_exceeds_own")), "{e}");
    assert_eq!(role_of(&admin, "planner").await["permissions"], json!(["policy.read", "policy.write"]));
    let (_, v) = la.get("/api/v1/roles").await;
    assert!(v["roles"].as_array().unwrap().iter().all(|r| r["name"] != "lq_planner"));
    app.stop().await;
}
both!(a_role_is_changed_only_by_someone_whose_scope_and_permissions_cover_it, roles_within_reach);

async fn upload(s: &Session, query: &str, csv: &str) -> (StatusCode, Value) {
    let r = s
        .raw(reqwest::Method::POST, &format!("/api/v1/risk-areas/import{query}"))
        .header("content-type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .unwrap();
    let st = r.status();
    (st, r.json().await.unwrap())
}

async fn county_wide_writes(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.login("admin").await;
    let cmd = app.login("commander").await;
    let lq = app.login("longquan").await;
    // 龙泉镇 staff with the rights the county's staff use for county-wide writes.
    let perms = ["units.read", "persons.read", "policy.read", "policy.write", "risk_areas.write", "venues.write", "audit.read"];
    let ops = township_admin(&app, &admin, &perms).await;

    // Risk areas: in another township, over the county, elsewhere in the country — refused;
    // inside the township — allowed.
    for division in ["140427101", "140427", "140105"] {
        let (s, e) = ops.post("/api/v1/risk-areas", json!({"division": division, "level": "high", "from": "2022-11-10"})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{division}: {e}");
        assert_eq!(e["fields"]["division"]["code"], "outside_scope", "{e}");
    }
    let (s, own) = ops.post("/api/v1/risk-areas", json!({"division": "140427100", "level": "medium", "from": "2022-11-10"})).await;
    assert_eq!(s, StatusCode::CREATED, "{own}");
    let (s, baichi) = cmd.post("/api/v1/risk-areas", json!({"division": "140427101", "level": "high", "from": "2022-11-10"})).await;
    assert_eq!(s, StatusCode::CREATED, "{baichi}");
    let (s, e) = ops.post(&format!("/api/v1/risk-areas/{}/lift", baichi["id"].as_str().unwrap()), json!({})).await;
    assert_eq!((s, e["error"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{e}");
    let (s, l) = ops.post(&format!("/api/v1/risk-areas/{}/lift", own["id"].as_str().unwrap()), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{l}");
    // A file: every row outside the township is named; replacing the whole list is the county's.
    let (s, e) = upload(&ops, "", "division,level,from\n140427100,low,2022-11-10\n140427101,low,2022-11-10\n140427,low,2022-11-10\n").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let fields: Vec<&String> = e["fields"].as_object().unwrap().keys().collect();
    assert_eq!(fields, ["rows[3].division", "rows[4].division"], "{e}");
    assert_eq!(e["fields"]["rows[3].division"]["code"], "outside_scope");
    let (s, e) = upload(&ops, "?replace=true", "division,level,from\n140427100,low,2022-11-10\n").await;
    assert_eq!((s, e["fields"]["replace"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("county_wide_only")), "{e}");
    let (_, areas) = cmd.get("/api/v1/risk-areas").await;
    let codes: Vec<&str> = areas["areas"].as_array().unwrap().iter().map(|a| a["division_code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["140427101"], "only the county's area is in force");

    // Recomputing every code is the county's; runs are county-wide, so a township sees none.
    let (s, e) = ops.post("/api/v1/codes/recomputes", json!({"note": "全县重算"})).await;
    assert_eq!((s, e["error"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{e}");
    let (s, run) = cmd.post("/api/v1/codes/recomputes", json!({"note": "全县重算"})).await;
    assert_eq!(s, StatusCode::OK, "{run}");
    baton_store::recompute::sweep(&app.store, usize::MAX).await.unwrap();
    let (_, runs) = cmd.get("/api/v1/codes/recomputes").await;
    assert!(runs["runs"].as_array().unwrap().iter().any(|r| r["id"] == run["id"]), "{runs}");
    for township in [&lq, &ops] {
        let (s, runs) = township.get("/api/v1/codes/recomputes").await;
        assert_eq!((s, runs["runs"].as_array().unwrap().len()), (StatusCode::OK, 0), "{runs}");
    }

    // Venues: run by one of the township's units, in the township; another township's unit is
    // answered as unknown, like an id that does not exist.
    let baichi_team = unit_id(&cmd, "百尺镇核酸采样队").await;
    for unit in [baichi_team.as_str(), "0190a5f4-0000-7000-8000-000000000000"] {
        let (s, e) = ops.post("/api/v1/venues", json!({"name": "越权场所", "kind": "market", "unit_id": unit})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert_eq!(e["fields"]["unit_id"]["code"], "unit_unknown", "{e}");
    }
    let (s, e) = ops.post("/api/v1/venues", json!({"name": "越权场所", "kind": "market", "division": "140427101"})).await;
    assert_eq!((s, e["fields"]["division"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("outside_scope")), "{e}");
    let lq_team = unit_id(&cmd, "龙泉镇核酸采样队").await;
    let (s, v) = ops.post("/api/v1/venues", json!({"name": "龙泉采样点", "kind": "other", "unit_id": lq_team})).await;
    assert_eq!((s, v["unit_id"].as_str()), (StatusCode::CREATED, Some(lq_team.as_str())), "{v}");
    let (_, vs) = cmd.get("/api/v1/venues").await;
    assert!(!names(&vs, "venues", "name").contains(&"越权场所".to_string()), "{vs}");

    // Audit: a sign-in (with its address) belongs to the user's jurisdiction — a unit-scoped
    // user's is their unit's — and the system's own entries (the recompute) only county-wide
    // readers see. 百尺镇's auditor sees neither 龙泉镇's sign-ins nor the system's entries.
    app.login("checkpoint").await;
    let baichi_unit = unit_id(&cmd, "百尺镇人民政府").await;
    role(&admin, "auditor", &["units.read", "audit.read"]).await;
    let (s, u) = admin.post("/api/v1/users", json!({"username": "bc_audit", "display_name": "百尺审计", "unit_id": baichi_unit, "role": "auditor", "scope_kind": "division", "scope_code": "140427101", "password": "Baichi-audit-1"})).await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    let bc = app.login_with("bc_audit", "Baichi-audit-1").await.unwrap();
    let (_, a) = bc.get("/api/v1/audit?limit=1000").await;
    let seen = a["entries"].as_array().unwrap();
    assert!(!seen.is_empty());
    for e in seen {
        assert!(e["jurisdiction"].as_str().unwrap().starts_with("140427101"), "{e}");
    }
    let logins = |a: &Value, actor: &str| {
        a["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "session.login" && e["actor_name"] == actor).cloned().collect::<Vec<_>>()
    };
    let (_, a) = ops.get("/api/v1/audit?limit=1000&action=session.login").await;
    let cp = logins(&a, "checkpoint");
    assert_eq!(cp.len(), 1, "{a}");
    assert_eq!(cp[0]["jurisdiction"], "140427100");
    let (_, a) = ops.get("/api/v1/audit?limit=1000").await;
    assert!(a["entries"].as_array().unwrap().iter().all(|e| e["jurisdiction"].as_str().unwrap().starts_with("140427100")), "{a}");
    let (_, a) = cmd.get("/api/v1/audit?limit=1000&action=code.recompute_queued").await;
    let queued = a["entries"].as_array().unwrap();
    assert!(queued.iter().any(|e| e["actor_name"] == "system" && e["jurisdiction"] == ""), "{a}");
    assert!(queued.iter().any(|e| e["actor_name"] == "commander" && e["jurisdiction"] == "140427"), "{a}");
    app.stop().await;
}
both!(township_users_cannot_make_county_wide_writes_or_read_county_wide_records, county_wide_writes);
