use baton_testkit::{Backend, both, spawn_app};
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::json;

async fn login_logout_and_sessions(b: Backend) {
    let app = spawn_app(b).await;
    // Wrong password: 401, no cookie.
    let (s, body) = app.login_with("commander", "wrong-password-1A!").await.err().unwrap();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "login_failed");
    assert!(body["message_zh"].as_str().unwrap().contains("密码"));
    let c = app.login("commander").await;
    let (s, me) = c.get("/api/v1/me").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["username"], "commander");
    assert_eq!(me["scope"]["code"], "140427");
    // A cookie-authenticated write without the CSRF header is refused.
    let no_csrf = reqwest::Client::new()
        .post(app.url("/api/v1/grids"))
        .header("cookie", &c.cookie)
        .header("x-csrf-token", "nope")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), StatusCode::CONFLICT);
    assert_eq!(no_csrf.json::<serde_json::Value>().await.unwrap()["error"], "csrf_failed");
    // Logout revokes the session server-side.
    let (s, _) = c.post("/api/v1/auth/logout", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = c.get("/api/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthenticated");
    // Sessions expire on the clock.
    let c2 = app.login("commander").await;
    app.clock.advance(Duration::hours(11));
    assert_eq!(c2.get("/api/v1/me").await.0, StatusCode::OK);
    app.clock.advance(Duration::hours(2));
    assert_eq!(c2.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    app.stop().await;
}
both!(login_logout_and_sessions_work, login_logout_and_sessions);

async fn throttling(b: Backend) {
    let app = spawn_app(b).await;
    for _ in 0..5 {
        assert_eq!(app.login_with("leader", "Wrong-password-1").await.err().unwrap().0, StatusCode::UNAUTHORIZED);
    }
    // The sixth attempt is throttled even with the right password.
    let (s, body) = app.login_with("leader", baton::demo::DEMO_PASSWORD).await.err().unwrap();
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"], "rate_limited");
    let r =
        app.anonymous().raw(reqwest::Method::POST, "/api/v1/auth/login").json(&json!({"username": "leader", "password": "x"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "60");
    // Another user is unaffected; after the window the user may sign in again.
    app.login("commander").await;
    app.clock.advance(Duration::minutes(16));
    app.login("leader").await;
    app.stop().await;
}
both!(login_is_throttled_per_user, throttling);

async fn disabling_and_password_reset_end_sessions(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.login("admin").await;
    let victim = app.login("escort").await;
    let (_, users) = admin.get("/api/v1/users?q=escort").await;
    let id = users["users"][0]["id"].as_str().unwrap().to_string();
    let (s, body) = admin.post(&format!("/api/v1/users/{id}/password"), json!({"password": "short"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["fields"]["password"]["code"], "password_length");
    let (s, _) = admin.post(&format!("/api/v1/users/{id}/password"), json!({"password": "New-password-2022"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(victim.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    assert!(app.login_with("escort", baton::demo::DEMO_PASSWORD).await.is_err());
    let again = app.login_with("escort", "New-password-2022").await.unwrap();
    let (s, _) = admin.post(&format!("/api/v1/users/{id}/revoke-sessions"), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    app.stop().await;
}
both!(password_reset_and_revocation_end_sessions, disabling_and_password_reset_end_sessions);

async fn no_takeover_of_stronger_accounts(b: Backend) {
    let app = spawn_app(b).await;
    // The commander may manage users, but not an administrator who holds more rights.
    let cmd = app.login("commander").await;
    let (_, v) = cmd.get("/api/v1/users?q=admin").await;
    let admin = v["users"].as_array().unwrap().iter().find(|u| u["username"] == "admin").unwrap()["id"].as_str().unwrap().to_string();
    let unit = v["users"][0]["unit_id"].as_str().unwrap().to_string();
    assert_eq!(cmd.post(&format!("/api/v1/users/{admin}/password"), json!({"password": "Taken-over-123"})).await.0, StatusCode::FORBIDDEN);
    assert_eq!(cmd.post(&format!("/api/v1/users/{admin}/revoke-sessions"), json!({})).await.0, StatusCode::FORBIDDEN);
    let demote = json!({"username": "admin", "display_name": "x", "unit_id": unit, "role": "leader", "scope_kind": "unit", "disabled": true});
    assert_eq!(cmd.put(&format!("/api/v1/users/{admin}"), demote).await.0, StatusCode::FORBIDDEN);
    assert!(app.login_with("admin", baton::demo::DEMO_PASSWORD).await.is_ok());
    app.stop().await;
}
both!(no_one_takes_over_a_stronger_account, no_takeover_of_stronger_accounts);

async fn api_tokens(b: Backend) {
    let app = spawn_app(b).await;
    let cmd = app.login("commander").await;
    let unit = cmd.body["user"]["unit_id"].as_str().unwrap().to_string();
    // Commander lacks tokens.write; admin has it.
    let (s, _) = cmd.post("/api/v1/tokens", json!({"name": "lab", "unit_id": unit, "permissions": ["units.read"], "scope_kind": "unit"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let admin = app.login("admin").await;
    let (s, t) = admin.post("/api/v1/tokens", json!({"name": "LIS", "unit_id": unit, "permissions": ["units.read"], "scope_kind": "division", "scope_code": "140427", "expires_in_days": 30})).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let secret = t["secret"].as_str().unwrap();
    assert!(secret.starts_with("bt_"));
    let bot = admin.with_bearer(secret);
    let (s, units) = bot.get("/api/v1/units").await;
    assert_eq!(s, StatusCode::OK);
    assert!(units["units"].as_array().unwrap().len() > 10);
    // Limited permissions: no writes, no users.
    assert_eq!(bot.get("/api/v1/users").await.0, StatusCode::FORBIDDEN);
    assert_eq!(bot.post("/api/v1/units", json!({"name": "x", "kind": "lab", "division_code": "140427"})).await.0, StatusCode::FORBIDDEN);
    // The secret is stored only as a hash.
    let (_, list) = admin.get("/api/v1/tokens").await;
    assert!(!list.to_string().contains(secret));
    // Expiry on the clock, and revocation.
    let id = t["token"]["id"].as_str().unwrap();
    let (s, _) = admin.post(&format!("/api/v1/tokens/{id}/revoke"), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(bot.get("/api/v1/units").await.0, StatusCode::UNAUTHORIZED);
    let (_, t2) = admin
        .post("/api/v1/tokens", json!({"name": "short", "unit_id": unit, "permissions": ["units.read"], "scope_kind": "unit", "expires_in_days": 1}))
        .await;
    let bot2 = admin.with_bearer(t2["secret"].as_str().unwrap());
    assert_eq!(bot2.get("/api/v1/units").await.0, StatusCode::OK);
    app.clock.advance(Duration::days(2));
    assert_eq!(bot2.get("/api/v1/units").await.0, StatusCode::UNAUTHORIZED);
    // A token never exceeds its creator: township staff cannot mint a token outside their township.
    app.stop().await;
}
both!(api_tokens_have_limited_permissions_and_expire, api_tokens);

async fn ui_requires_login_and_csrf(b: Backend) {
    let app = spawn_app(b).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(app.url("/admin/units")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login?next=/admin/units");
    // Security headers on every response.
    let r = http.get(app.url("/login")).send().await.unwrap();
    let h = r.headers();
    assert!(h["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(h.contains_key("x-request-id"));
    let pre = h["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    // Login form without the matching pre-session token is refused.
    let r = http
        .post(app.url("/login"))
        .header("cookie", &pre)
        .form(&[("csrf", "forged"), ("username", "commander"), ("password", baton::demo::DEMO_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let token = pre.split_once('=').unwrap().1;
    let r = http
        .post(app.url("/login"))
        .header("cookie", &pre)
        .form(&[("csrf", token), ("username", "commander"), ("password", baton::demo::DEMO_PASSWORD), ("next", "//evil.example")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/", "an off-site next is never followed");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    let session = cookie.split(';').next().unwrap().to_string();
    let home = http.get(app.url("/")).header("cookie", &session).send().await.unwrap().text().await.unwrap();
    assert!(home.contains("data-role=\"commander\""));
    // A form post without the session's CSRF token changes nothing.
    let r = http
        .post(app.url("/admin/units/new"))
        .header("cookie", &session)
        .form(&[("name", "未经CSRF的单位"), ("kind", "lab"), ("division_code", "140427")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let c = app.login("commander").await;
    let (_, units) = c.get("/api/v1/units?q=未经CSRF").await;
    assert_eq!(units["units"].as_array().unwrap().len(), 0);
    app.stop().await;
}
both!(ui_requires_login_and_csrf_and_sends_security_headers, ui_requires_login_and_csrf);

async fn login_form_csrf(b: Backend) {
    let app = spawn_app(b).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(app.url("/login")).send().await.unwrap();
    let pre = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let token = pre.split_once('=').unwrap().1.to_string();
    assert!(!token.is_empty());
    let creds = [("username", "commander"), ("password", baton::demo::DEMO_PASSWORD)];
    // A login form posted from elsewhere: without the pre-session cookie, without the field,
    // or with both empty (which compare equal) — refused, and no session is made.
    let cases: [(Option<String>, Option<&str>); 5] =
        [(None, None), (Some(pre.clone()), None), (None, Some(token.as_str())), (Some("baton_pre=".into()), Some("")), (None, Some(""))];
    for (cookie, field) in cases {
        let mut form: Vec<(&str, &str)> = creds.to_vec();
        if let Some(f) = field {
            form.push(("csrf", f));
        }
        let mut req = http.post(app.url("/login")).form(&form);
        if let Some(c) = &cookie {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CONFLICT, "cookie {cookie:?}, field {field:?}");
        assert!(!r.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("baton_session=")), "{cookie:?} {field:?}");
    }
    let (_, a) = app.login("commander").await.get("/api/v1/audit?action=session.login&actor=commander").await;
    assert_eq!(a["entries"].as_array().unwrap().len(), 1, "only the sign-in just made: {a}");
    // The real form, with the page's token in both places, signs in.
    let mut form: Vec<(&str, &str)> = creds.to_vec();
    form.push(("csrf", &token));
    let r = http.post(app.url("/login")).header("cookie", &pre).form(&form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let session = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert!(session.starts_with("baton_session=") && session.len() > "baton_session=".len());
    let home = http.get(app.url("/")).header("cookie", &session).send().await.unwrap().text().await.unwrap();
    assert!(home.contains("data-role=\"commander\""));
    app.stop().await;
}
both!(the_login_form_needs_a_matching_non_empty_csrf_token, login_form_csrf);

async fn token_of_disabled_creator(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.login("admin").await;
    let unit = admin.body["user"]["unit_id"].as_str().unwrap().to_string();
    // A second administrator makes a token, then is disabled.
    let user = |disabled: bool| json!({"username": "admin2", "display_name": "二号管理员", "unit_id": unit, "role": "admin", "scope_kind": "division", "scope_code": "140427", "password": "Second-admin-12", "disabled": disabled});
    let (s, u) = admin.post("/api/v1/users", user(false)).await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    let id = u["id"].as_str().unwrap().to_string();
    let admin2 = app.login_with("admin2", "Second-admin-12").await.unwrap();
    let (s, t) = admin2
        .post(
            "/api/v1/tokens",
            json!({"name": "LIS", "unit_id": unit, "permissions": ["units.read"], "scope_kind": "division", "scope_code": "140427"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let bot = admin.with_bearer(t["secret"].as_str().unwrap());
    // Used just now, so remembered by the principal cache: the disable must reach it at once.
    assert_eq!(bot.get("/api/v1/units").await.0, StatusCode::OK);
    let (s, v) = admin.put(&format!("/api/v1/users/{id}"), user(true)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, e) = bot.get("/api/v1/units").await;
    assert_eq!((s, e["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthenticated")));
    // The token is suspended with its creator, not revoked: re-enabling the creator restores it.
    let (_, list) = admin.get("/api/v1/tokens").await;
    assert!(list["tokens"][0]["revoked_at"].is_null(), "{list}");
    assert_eq!(admin.put(&format!("/api/v1/users/{id}"), user(false)).await.0, StatusCode::OK);
    assert_eq!(bot.get("/api/v1/units").await.0, StatusCode::OK);
    app.stop().await;
}
both!(an_api_token_stops_when_its_creator_is_disabled, token_of_disabled_creator);
