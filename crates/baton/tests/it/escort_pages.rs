//! The escort roster page as a browser sends it: the fallback roster in order with add, reorder
//! and remove, each receiver's escort unit; CSRF, scope and permissions as the API's; field
//! errors in Chinese and English that change nothing; retries and stale pages that change nothing.
use crate::freight_ops::unit;
use crate::pages::{Ui, cells, field_error, section};
use baton_testkit::{Backend, Session, both, spawn_app};
use reqwest::StatusCode;
use serde_json::Value;

/// The fallback roster's unit names in order, through the API.
async fn fallback(s: &Session) -> Vec<String> {
    let (_, r) = s.get("/api/v1/escorts").await;
    r["fallback"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_string()).collect()
}

async fn receiver_escort(s: &Session, receiver: &str) -> Option<String> {
    let (_, r) = s.get("/api/v1/escorts").await;
    r["receivers"].as_array().unwrap().iter().find(|x| x["receiver_id"] == receiver).map(|x| x["escort_name"].as_str().unwrap().to_string())
}

async fn roster_audits(s: &Session, action: &str) -> Vec<Value> {
    let (_, a) = s.get(&format!("/api/v1/audit?action={action}")).await;
    a["entries"].as_array().unwrap().clone()
}

/// The value of the hidden `roster` field of a form on the page.
fn roster_field(html: &str, form: &str) -> String {
    let f = section(html, form);
    let at = f.find("name=\"roster\"").unwrap_or_else(|| panic!("no roster field in #{form}"));
    let v = &f[at..];
    let v = &v[v.find("value=\"").unwrap() + 7..];
    v[..v.find('"').unwrap()].to_string()
}

async fn roster_page(b: Backend) {
    let app = spawn_app(b).await;
    let api = app.login("commander").await;
    let cmd = Ui::of(&app, "commander", "zh").await;
    let police = unit(&api, "壶关县公安局").await;
    let transport = unit(&api, "壶关县交通运输局").await;
    let market = unit(&api, "壶关县市场监督管理局").await;
    let checkpoint = unit(&api, "龙泉高速出口卡口").await;
    let steel = unit(&api, "壶关县太行钢材贸易有限公司").await;
    let food = unit(&api, "壶关县龙泉农产品批发有限公司").await;
    let build = unit(&api, "壶关县百尺建材有限公司").await;

    // The demo roster in order, and every receiver with its escort or none.
    let page = cmd.get("/freight/escorts").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("href=\"/freight/escorts\" aria-current=\"page\""), "in the commander's menu");
    assert_eq!(
        cells(&page.html, "escort-fallback"),
        ["1", "壶关县公安局", "140427 山西省长治市壶关县", "2", "壶关县交通运输局", "140427 山西省长治市壶关县"]
    );
    let receivers = cells(&page.html, "escort-receivers");
    let row = |name: &str| receivers.chunks(3).find(|r| r[0].starts_with(name)).unwrap_or_else(|| panic!("no {name} in {receivers:?}")).to_vec();
    assert_eq!(row("壶关县太行钢材贸易有限公司")[2], "壶关县交通运输局");
    assert_eq!(row("壶关县龙泉农产品批发有限公司")[2], "未指定 · 由兜底名单接返");
    let shown = roster_field(&page.html, "fallback-add-form");
    assert_eq!(shown, format!("{police},{transport}"));
    let offered = section(&page.html, "fallback-add-form");
    assert!(offered.contains(&format!("<option value=\"{market}\"")), "a department not listed is offered");
    assert!(!offered.contains(&format!("<option value=\"{police}\"")), "a listed unit is not offered again");

    // Without the session's CSRF token nothing changes.
    let forged = Ui { csrf: "forged".into(), ..Ui::of(&app, "commander", "zh").await };
    let a = forged.post("/freight/escorts/fallback/add", &[("roster", &shown), ("unit", &market)]).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(fallback(&api).await, ["壶关县公安局", "壶关县交通运输局"]);

    // Add: to the end of the roster, audited as the commander's; a retry of the same form changes nothing.
    let a = cmd.post("/freight/escorts/fallback/add", &[("roster", &shown), ("unit", &market)]).await;
    assert_eq!((a.status, a.location.as_str()), (StatusCode::SEE_OTHER, "/freight/escorts?saved=1"), "{}", a.html);
    assert_eq!(fallback(&api).await, ["壶关县公安局", "壶关县交通运输局", "壶关县市场监督管理局"]);
    let a = cmd.post("/freight/escorts/fallback/add", &[("roster", &shown), ("unit", &market)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(fallback(&api).await, ["壶关县公安局", "壶关县交通运输局", "壶关县市场监督管理局"]);
    let audits = roster_audits(&api, "escort.fallback_roster").await;
    assert_eq!(audits.len(), 2, "the demo's roster and the one change: {audits:?}");
    assert_eq!(audits[0]["actor_name"], "commander");
    let detail: Value = serde_json::from_str(audits[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["units"], serde_json::json!([police, transport, market]));
    let page = cmd.get("/freight/escorts?saved=1").await;
    assert!(page.html.contains("<p class=\"flash\">已保存</p>"));
    let shown = roster_field(&page.html, "fallback-change-form");

    // Reorder: the market bureau up one place; moving the first up changes nothing.
    let a = cmd.post("/freight/escorts/fallback/change", &[("roster", &shown), ("entry", &market), ("step", "up")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.html);
    assert_eq!(fallback(&api).await, ["壶关县公安局", "壶关县市场监督管理局", "壶关县交通运输局"]);
    let now = format!("{police},{market},{transport}");
    let a = cmd.post("/freight/escorts/fallback/change", &[("roster", &now), ("entry", &police), ("step", "up")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(roster_audits(&api, "escort.fallback_roster").await.len(), 3, "nothing written for a move past the top");

    // A page shown before that change: refused with the roster as it is now, nothing changed.
    let a = cmd.post("/freight/escorts/fallback/change", &[("roster", &shown), ("entry", &transport), ("step", "remove")]).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.html);
    assert!(a.html.contains("兜底名单刚被他人修改"), "{}", a.html);
    assert_eq!(cells(&a.html, "escort-fallback")[4], "壶关县市场监督管理局");
    assert_eq!(fallback(&api).await, ["壶关县公安局", "壶关县市场监督管理局", "壶关县交通运输局"]);

    // Field errors at the field, in both languages, and nothing changes: not a department, not listed, nothing chosen.
    let a = cmd.post("/freight/escorts/fallback/add", &[("roster", &now), ("unit", &checkpoint)]).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.html);
    assert_eq!(field_error(&a.html, "unit").as_deref(), Some("兜底接返单位应为公安、交通等部门"));
    let en = Ui::of(&app, "commander", "en").await;
    let a = en.post("/freight/escorts/fallback/add", &[("roster", &now), ("unit", &checkpoint)]).await;
    assert_eq!(field_error(&a.html, "unit").as_deref(), Some("a fallback escort must be a department (police, transport)"));
    assert!(a.html.contains("Fallback roster (police, transport)"));
    let a = cmd.post("/freight/escorts/fallback/change", &[("roster", &now), ("entry", &checkpoint), ("step", "down")]).await;
    assert_eq!((a.status, field_error(&a.html, "entry").as_deref()), (StatusCode::UNPROCESSABLE_ENTITY, Some("该单位不在兜底名单中")));
    let a = cmd.post("/freight/escorts/fallback/change", &[("roster", &now), ("entry", ""), ("step", "down")]).await;
    assert_eq!((a.status, field_error(&a.html, "entry").as_deref()), (StatusCode::UNPROCESSABLE_ENTITY, Some("请选择单位")));
    assert_eq!(fallback(&api).await, ["壶关县公安局", "壶关县市场监督管理局", "壶关县交通运输局"]);

    // Remove, and the roster is the demo's again.
    let a = cmd.post("/freight/escorts/fallback/change", &[("roster", &now), ("entry", &market), ("step", "remove")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(fallback(&api).await, ["壶关县公安局", "壶关县交通运输局"]);

    // A receiver's escort: set by the command office, removed again; an unknown unit at its field.
    let a = cmd.post("/freight/escorts/receiver", &[("receiver", &food), ("escort_id", &police)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.html);
    assert_eq!(receiver_escort(&api, &food).await.as_deref(), Some("壶关县公安局"));
    let page = cmd.get("/freight/escorts").await;
    assert_eq!(
        cells(&page.html, "escort-receivers").chunks(3).find(|r| r[0].starts_with("壶关县龙泉农产品批发有限公司")).unwrap()[2],
        "壶关县公安局"
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    let a = cmd.post("/freight/escorts/receiver", &[("receiver", &food), ("escort_id", &unknown)]).await;
    assert_eq!((a.status, field_error(&a.html, "escort_id").as_deref()), (StatusCode::UNPROCESSABLE_ENTITY, Some("单位不存在")));
    let a = cmd.post("/freight/escorts/receiver", &[("receiver", &food), ("escort_id", "")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(receiver_escort(&api, &food).await, None);
    let set = roster_audits(&api, "escort.receiver_escort").await;
    assert_eq!(set.iter().filter(|e| e["object_id"] == food).count(), 2, "set and removed, each audited");

    // The cargo owner's liaison sets only its own receiver's escort, and does not see the fallback forms.
    let ent = Ui::of(&app, "enterprise", "zh").await;
    let page = ent.get("/freight/escorts").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.html.contains("href=\"/freight/escorts\""), "not in the liaison's menu");
    assert!(!page.html.contains("fallback-add-form") && !page.html.contains("fallback-change-form"));
    assert_eq!(cells(&page.html, "escort-receivers").len(), 3, "its own receiver only");
    let a = ent.post("/freight/escorts/receiver", &[("receiver", &steel), ("escort_id", &police)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.html);
    assert_eq!(receiver_escort(&api, &steel).await.as_deref(), Some("壶关县公安局"));
    let a = ent.post("/freight/escorts/receiver", &[("receiver", &build), ("escort_id", &police)]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(receiver_escort(&api, &build).await, None);
    let a = ent.post("/freight/escorts/fallback/add", &[("roster", ""), ("unit", &market)]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);

    // The escort sees the roster as its scope allows (its own unit), read only.
    let escort = Ui::of(&app, "escort", "zh").await;
    let page = escort.get("/freight/escorts").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(cells(&page.html, "escort-fallback"), ["2", "壶关县交通运输局", "140427 山西省长治市壶关县"], "its place on the whole roster");
    assert!(!page.html.contains("<form method=\"post\" action=\"/freight/escorts"));
    let a = escort.post("/freight/escorts/fallback/change", &[("roster", &transport), ("entry", &transport), ("step", "remove")]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(fallback(&api).await, ["壶关县公安局", "壶关县交通运输局"]);
    app.stop().await;
}
both!(the_escort_roster_page_adds_reorders_removes_and_sets_receivers_escorts, roster_page);
