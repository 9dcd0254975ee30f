//! Sampling and testing pages as a browser sends them (forms, redirects, a multipart upload),
//! on the manual clock: the sampling desk from barcode to batch, the lab's receipt, result and
//! LIS import, the dashboard's figures, and the pending re-check list by role and scope; field
//! errors at their fields in Chinese and English, with the focus on the field to fix.
use crate::pages::{Answer, Ui, cells, field_error, focused, section, tag};
use baton_domain::ident::IdNumber;
use baton_testkit::{Backend, TestApp, both, spawn_app};
use chrono::Duration;
use reqwest::StatusCode;

/// A valid resident ID number, distinct per `seq`.
fn id_number(seq: u32) -> String {
    let first17 = format!("140427{}{:02}{:02}{:03}", 1950 + seq % 50, 1 + seq % 12, 1 + seq % 28, 500 + seq % 400);
    let c = IdNumber::check_char(first17.as_bytes()) as char;
    format!("{first17}{c}")
}

async fn lab_id(app: &TestApp) -> String {
    let (_, v) = app.login("commander").await.get("/api/v1/units?kind=lab").await;
    v["units"].as_array().unwrap().iter().find(|u| u["name"] == "壶关县人民医院核酸检测实验室").unwrap()["id"].as_str().unwrap().to_string()
}

/// Open a tube at the desk and fill it with persons `first..first+n`; returns the tube's path.
async fn fill(ui: &Ui, barcode: &str, pool: &str, priority: &str, first: u32, n: u32) -> (String, Answer) {
    let a = ui.post("/testing/sample", &[("pool_size", pool), ("priority", priority), ("site_id", ""), ("barcode", barcode)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.html);
    let tube = a.location.clone();
    assert!(tube.starts_with("/testing/tubes/"), "{tube}");
    let mut last = a;
    for i in first..first + n {
        let name = format!("受检者{i}");
        last = ui.post(&format!("{tube}/add"), &[("document_kind", "id_card"), ("document_number", &id_number(i)), ("name", &name)]).await;
        assert_eq!(last.status, StatusCode::SEE_OTHER, "{}", last.html);
    }
    (tube, last)
}

async fn desk_to_recheck(b: Backend) {
    let app = spawn_app(b).await;
    let sampler = Ui::of(&app, "sampler", "zh").await;
    // The desk: sites of the sampler's own team, pool sizes from the policy, the barcode focused.
    let desk = sampler.get("/testing/sample").await;
    assert_eq!(desk.status, StatusCode::OK);
    assert!(desk.html.contains("龙泉镇政府广场采样点") && !desk.html.contains("百尺镇便民服务中心采样点"), "only the team's own sites");
    for k in ["单管", "5合1", "10合1", "20合1"] {
        assert!(desk.html.contains(k), "pool size {k} offered");
    }
    assert_eq!(focused(&desk.html), vec!["f-barcode"]);
    // A bad barcode is refused at its field, the focus back on it, nothing opened.
    let a = sampler.post("/testing/sample", &[("pool_size", "5"), ("priority", "routine"), ("site_id", ""), ("barcode", "管子")]).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_error(&a.html, "barcode").as_deref(), Some("条码应为 4 到 40 位字母、数字、- 或 _"));
    assert_eq!(focused(&a.html), vec!["f-barcode"]);
    assert!(a.html.contains("value=\"5\" selected"), "the chosen pool size is kept");
    // Open a 5-in-1 tube by barcode: the tube page, focus on the document number.
    let a = sampler.post("/testing/sample", &[("pool_size", "5"), ("priority", "routine"), ("site_id", ""), ("barcode", "hg-page-0001")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let tube = a.location.clone();
    // The same barcode again (scanned twice, or Enter pressed twice) returns to the open tube.
    let again = sampler.post("/testing/sample", &[("pool_size", "5"), ("priority", "routine"), ("site_id", ""), ("barcode", "HG-PAGE-0001")]).await;
    assert_eq!((again.status, again.location.as_str()), (StatusCode::SEE_OTHER, tube.as_str()));
    let page = sampler.get(&tube).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(tag(&page.html, "tube").contains("data-state=\"open\""));
    assert!(page.html.contains("HG-PAGE-0001"));
    assert_eq!(focused(&page.html), vec!["f-document_number"]);
    // A new person without a name: asked for the name, the number kept, the focus on the name.
    let a = sampler.post(&format!("{tube}/add"), &[("document_kind", "id_card"), ("document_number", &id_number(1)), ("name", "")]).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_error(&a.html, "name").as_deref(), Some("首次登记的人员请填写姓名"));
    assert_eq!(focused(&a.html), vec!["f-name"]);
    assert!(tag(&a.html, "f-document_number").contains(&format!("value=\"{}\"", id_number(1))));
    // A wrong check digit is refused at the number.
    let mut bad = id_number(1);
    let last = if bad.ends_with('0') { '1' } else { '0' };
    bad.pop();
    bad.push(last);
    let a = sampler.post(&format!("{tube}/add"), &[("document_kind", "id_card"), ("document_number", &bad), ("name", "甲")]).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_error(&a.html, "document_number").is_some(), "{}", a.html);
    assert_eq!(focused(&a.html), vec!["f-document_number"]);
    // The same in English.
    let en = Ui::of(&app, "sampler", "en").await;
    let a = en.post(&format!("{tube}/add"), &[("document_kind", "id_card"), ("document_number", &id_number(1)), ("name", "")]).await;
    assert_eq!(field_error(&a.html, "name").as_deref(), Some("a person registered for the first time needs a name"));
    assert!(a.html.contains("Please correct the marked fields"));
    // Four persons one after another: back on the tube each time, the last one named.
    for i in 1..5 {
        let a = sampler
            .post(&format!("{tube}/add"), &[("document_kind", "id_card"), ("document_number", &id_number(i)), ("name", &format!("受检者{i}"))])
            .await;
        assert_eq!((a.status, a.location.as_str()), (StatusCode::SEE_OTHER, format!("{tube}?added=1").as_str()));
        let p = sampler.get(&a.location).await;
        assert!(p.html.contains(&format!("已添加 受检者{i} ({i} / 5)")), "{}", p.html);
        assert_eq!(focused(&p.html), vec!["f-document_number"]);
    }
    // The same person twice is refused at the number.
    let a = sampler.post(&format!("{tube}/add"), &[("document_kind", "id_card"), ("document_number", &id_number(2)), ("name", "")]).await;
    assert_eq!(field_error(&a.html, "document_number").as_deref(), Some("此人已在该管中"));
    // The fifth fills the tube: it seals itself and the desk is ready for the next barcode.
    let a = sampler.post(&format!("{tube}/add"), &[("document_kind", "passport"), ("document_number", "E12345678"), ("name", "John Smith")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(a.location.starts_with("/testing/sample?pool_size=5&priority=routine"), "{}", a.location);
    let desk = sampler.get(&a.location).await;
    assert!(desk.html.contains("HG-PAGE-0001 已封管，人数 5 / 5"), "{}", desk.html);
    assert!(desk.html.contains("value=\"HG-PAGE-0001\" checked"), "the sealed tube is ticked for the batch");
    assert!(desk.html.contains("value=\"5\" selected"), "the pool size is kept for the next tube");
    assert!(sampler.get(&tube).await.html.contains("data-state=\"sealed\""));
    assert!(!sampler.get(&tube).await.html.contains("add-form"), "a sealed tube takes nobody");
    let a = sampler.post("/testing/sample", &[("pool_size", "5"), ("priority", "routine"), ("site_id", ""), ("barcode", "HG-PAGE-0001")]).await;
    assert_eq!((a.status, field_error(&a.html, "barcode").as_deref()), (StatusCode::UNPROCESSABLE_ENTITY, Some("该条码已被使用")));
    // Pack a batch: the lab must be chosen.
    let a = sampler.post("/testing/ship", &[("barcodes", "HG-PAGE-0001"), ("lab_id", "")]).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_error(&a.html, "lab_id").as_deref(), Some("请选择检测机构"));
    let lab = lab_id(&app).await;
    let a = sampler.post("/testing/ship", &[("barcodes", "HG-PAGE-0001"), ("barcodes", "HG-NOPE-9"), ("lab_id", &lab)]).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_error(&a.html, "barcodes").as_deref(), Some("HG-NOPE-9：条码未登记"));
    let a = sampler.post("/testing/ship", &[("barcodes", "HG-PAGE-0001"), ("lab_id", &lab)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.html);
    let batch = a.location.split('?').next().unwrap().to_string();
    let p = sampler.get(&a.location).await;
    assert!(p.html.contains("已移交待接收") && p.html.contains("壶关县人民医院核酸检测实验室") && !p.html.contains("receive-form"));

    // The lab: the batch awaits receipt; the receipt needs a scan; an extra tube is flagged.
    let lab_ui = Ui::of(&app, "lab", "zh").await;
    let desk = lab_ui.get("/testing/lab").await;
    assert_eq!(desk.status, StatusCode::OK);
    assert!(section(&desk.html, "awaiting-receipt").contains(&batch), "the batch is listed");
    assert_eq!(focused(&desk.html), vec!["f-barcode"]);
    let p = lab_ui.get(&batch).await;
    assert_eq!(focused(&p.html), vec!["f-barcodes"]);
    let a = lab_ui.post(&format!("{batch}/receive"), &[("barcodes", "  ")]).await;
    assert_eq!((a.status, field_error(&a.html, "barcodes").as_deref()), (StatusCode::UNPROCESSABLE_ENTITY, Some("请扫描箱内的采样管")));
    let a = lab_ui.post(&format!("{batch}/receive"), &[("barcodes", "hg-page-0001\r\nHG-EXTRA-01\r\n")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.html);
    let p = lab_ui.get(&batch).await;
    assert!(tag(&p.html, "batch").contains("data-state=\"received\""));
    assert!(p.html.contains("id=\"fact-extra\">HG-EXTRA-01<") && p.html.contains("id=\"fact-missing\">无<"), "{}", p.html);
    // The result: a choice is required, a Ct is a number; then a positive pool.
    app.clock.advance(Duration::minutes(90));
    let a = lab_ui.post("/testing/lab", &[("barcode", "HG-PAGE-0001"), ("ct", "")]).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_error(&a.html, "result").is_some(), "{}", a.html);
    assert_eq!(focused(&a.html), vec!["f-result"]);
    let a = lab_ui.post("/testing/lab", &[("barcode", "HG-PAGE-0001"), ("result", "positive"), ("ct", "abc")]).await;
    assert_eq!(field_error(&a.html, "ct").as_deref(), Some("Ct 值应为数字"));
    let a = Ui::of(&app, "lab", "en").await.post("/testing/lab", &[("barcode", "HG-PAGE-0001"), ("result", "positive"), ("ct", "60")]).await;
    assert_eq!(field_error(&a.html, "ct").as_deref(), Some("a Ct value is between 0 and 50"));
    let a = lab_ui.post("/testing/lab", &[("barcode", "HG-PAGE-0001"), ("result", "positive"), ("ct", "28.5")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.html);
    let p = lab_ui.get(&a.location).await;
    assert!(p.html.contains("HG-PAGE-0001 · 阳性 · 已回传 · 转待复核人数 5"), "{}", p.html);
    // Sent again: nothing changes.
    let a = lab_ui.post("/testing/lab", &[("barcode", "HG-PAGE-0001"), ("result", "阳性"), ("ct", "28.5")]).await;
    assert!(lab_ui.get(&a.location).await.html.contains("与已有结果相同，未改变"));
    // The tube page shows the result; members are pending re-check.
    let p = lab_ui.get(&tube).await;
    assert!(p.html.contains("id=\"fact-outcome\">阳性 · Ct 28.50<"), "{}", p.html);
    assert_eq!(cells(&p.html, "members").iter().filter(|c| *c == "待复核").count(), 5);

    // Pending re-check: the township of residence and the command office see all five; the
    // other township none; roles without testing see nothing at all.
    for user in ["longquan", "commander"] {
        let p = Ui::of(&app, user, "zh").await.get("/testing/rechecks").await;
        assert_eq!(p.status, StatusCode::OK, "{user}");
        assert_eq!(cells(&p.html, "rechecks").len(), 5 * 8, "{user}: five persons");
        for i in 1..5 {
            assert!(p.html.contains(&format!("受检者{i}")), "{user} sees 受检者{i}");
        }
        assert!(p.html.contains("John Smith") && p.html.contains("HG-PAGE-0001") && p.html.contains("待采样"), "{user}");
        assert!(!p.html.contains(&id_number(1)), "documents are masked");
    }
    let p = Ui::of(&app, "baichi", "zh").await.get("/testing/rechecks").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(!p.html.contains("受检者1") && p.html.contains("暂无记录"));
    for user in ["grid", "escort", "school"] {
        assert_eq!(Ui::of(&app, user, "zh").await.get("/testing/rechecks").await.status, StatusCode::FORBIDDEN, "{user}");
    }
    let p = Ui::of(&app, "longquan", "en").await.get("/testing/rechecks").await;
    assert!(p.html.contains("Pending re-check") && p.html.contains("Re-check") && p.html.contains("Not sampled yet"));
    // Past the re-test deadline (4 h), the order shows overdue and the filter finds it.
    app.clock.advance(Duration::hours(5));
    let p = Ui::of(&app, "longquan", "zh").await.get("/testing/rechecks?overdue=1").await;
    assert!(p.html.contains("受检者1") && p.html.matches(" · 已超时</td>").count() == 5, "{}", p.html);

    // Pages for the right roles only; others' tubes and batches are not found.
    let cp = Ui::of(&app, "checkpoint", "zh").await;
    assert_eq!(cp.get(&tube).await.status, StatusCode::NOT_FOUND);
    assert_eq!(cp.get(&batch).await.status, StatusCode::NOT_FOUND);
    assert_eq!(Ui::of(&app, "escort", "zh").await.get("/testing/sample").await.status, StatusCode::FORBIDDEN);
    assert_eq!(lab_ui.get("/testing/sample").await.status, StatusCode::FORBIDDEN);
    assert_eq!(sampler.get("/testing/lab").await.status, StatusCode::FORBIDDEN);
    assert_eq!(sampler.get("/testing/lab/import").await.status, StatusCode::FORBIDDEN);
    assert_eq!(Ui::of(&app, "escort", "zh").await.get("/testing/dashboard").await.status, StatusCode::FORBIDDEN);
    assert_eq!(cp.post(&format!("{tube}/add"), &[("document_number", &id_number(9)), ("name", "乙")]).await.status, StatusCode::NOT_FOUND);
    // A post without the CSRF token changes nothing.
    let r = reqwest::Client::new()
        .post(app.url("/testing/sample"))
        .header("cookie", &sampler.cookie)
        .form(&[("pool_size", "5"), ("priority", "routine"), ("barcode", "HG-CSRF-1")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    assert_eq!(app.login("sampler").await.get("/api/v1/testing/tubes/lookup?barcode=HG-CSRF-1").await.0, StatusCode::NOT_FOUND);
    // Nav and home: each role finds its pages.
    assert!(sampler.get("/").await.html.contains("href=\"/testing/sample\""));
    assert!(lab_ui.get("/").await.html.contains("href=\"/testing/lab\""));
    assert!(Ui::of(&app, "longquan", "zh").await.get("/").await.html.contains("href=\"/testing/rechecks\""));
    app.stop().await;
}
both!(sampling_desk_to_pending_recheck, desk_to_recheck);

/// The dashboard on the manual clock: tubes awaiting receipt, pending, overdue by priority, and
/// the turnaround percentiles; the lab sees its own tubes.
async fn dashboard(b: Backend) {
    let app = spawn_app(b).await;
    let sampler = Ui::of(&app, "sampler", "zh").await;
    let lab = lab_id(&app).await;
    // Three single expedited tubes and one routine 5-in-1, all handed to the lab.
    for (i, code) in ["HG-DX-1", "HG-DX-2", "HG-DX-3"].iter().enumerate() {
        let (_, a) = fill(&sampler, code, "1", "expedited", 100 + i as u32, 1).await;
        assert!(a.location.contains("sealed="), "a single tube seals with its person");
    }
    let (pool, _) = fill(&sampler, "HG-DR-1", "5", "routine", 200, 5).await;
    // Not shipped yet: not the lab's to see.
    assert_eq!(Ui::of(&app, "lab", "zh").await.get(&pool).await.status, StatusCode::NOT_FOUND);
    let a = sampler
        .post(
            "/testing/ship",
            &[("barcodes", "HG-DX-1"), ("barcodes", "HG-DX-2"), ("barcodes", "HG-DX-3"), ("barcodes", "HG-DR-1"), ("lab_id", &lab)],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.html);
    let lab_ui = Ui::of(&app, "lab", "zh").await;
    assert_eq!(lab_ui.get(&pool).await.status, StatusCode::OK, "shipped to the lab: now it may");
    let p = lab_ui.get("/testing/dashboard").await;
    assert_eq!(p.status, StatusCode::OK);
    // Routine: awaiting 1, received 0, pending 1, overdue 0, resulted 0, positive 0; expedited: 3 awaiting.
    assert_eq!(cells(&p.html, "by-priority"), ["常规", "1", "0", "1", "0", "0", "0", "加急", "3", "0", "3", "0", "0", "0"]);
    // Results 1 h, 2 h and 3 h after sampling.
    for code in ["HG-DX-1", "HG-DX-2", "HG-DX-3"] {
        app.clock.advance(Duration::hours(1));
        let a = lab_ui.post("/testing/lab", &[("barcode", code), ("result", "negative"), ("ct", "")]).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.html);
    }
    let p = lab_ui.get("/testing/dashboard").await;
    assert_eq!(cells(&p.html, "by-priority"), ["常规", "1", "0", "1", "0", "0", "0", "加急", "0", "3", "0", "0", "3", "0"]);
    // Turnaround of the expedited tubes: 60, 120, 180 min → p50 2 h, p90 and p99 3 h.
    assert_eq!(cells(&p.html, "turnaround")[5..10], ["加急", "3", "2 小时 00 分钟", "3 小时 00 分钟", "3 小时 00 分钟"]);
    assert_eq!(cells(&p.html, "turnaround")[..5], ["常规", "0", "—", "—", "—"]);
    // Past the pool's 24 h deadline without a result: overdue, also on the lab's desk.
    app.clock.advance(Duration::hours(23));
    // (A new sign-in: sessions do not last a day.)
    let lab_ui = Ui::of(&app, "lab", "zh").await;
    let p = lab_ui.get("/testing/dashboard").await;
    assert_eq!(cells(&p.html, "by-priority")[..7], ["常规", "1", "0", "1", "1", "0", "0"]);
    assert!(lab_ui.get("/testing/lab").await.html.contains("已超时"));
    // The last 24 hours hold two of the three results; the last 7 days all three.
    assert_eq!(cells(&p.html, "turnaround")[11], "2");
    let p = lab_ui.get("/testing/dashboard?hours=168").await;
    assert_eq!(cells(&p.html, "turnaround")[11], "3");
    // The command office sees the same county figures; in English the labels change.
    let p = Ui::of(&app, "commander", "en").await.get("/testing/dashboard").await;
    assert_eq!(cells(&p.html, "by-priority")[..5], ["Routine", "1", "0", "1", "1"]);
    assert!(p.html.contains("Turnaround, sampled to resulted"));
    app.stop().await;
}
both!(testing_dashboard_figures, dashboard);

/// The LIS upload: a bad file is refused row by row with nothing kept; a good one is applied.
async fn import(b: Backend) {
    let app = spawn_app(b).await;
    let sampler = Ui::of(&app, "sampler", "zh").await;
    fill(&sampler, "HG-IM-1", "5", "routine", 300, 5).await;
    fill(&sampler, "HG-IM-2", "1", "routine", 310, 1).await;
    let lab = lab_id(&app).await;
    let a = sampler.post("/testing/ship", &[("barcodes", "HG-IM-1"), ("barcodes", "HG-IM-2"), ("lab_id", &lab)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let lab_ui = Ui::of(&app, "lab", "zh").await;
    let page = lab_ui.get("/testing/lab/import").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(tag(&page.html, "import-form").contains("multipart/form-data"));
    // A bad row and an unknown tube: 422, each at its line, nothing applied.
    let bad = "条码,结果,Ct值\nHG-IM-1,阴性,\nHG-IM-9,阴性,\nHG-IM-2,也许,\n";
    let a = lab_ui.upload("/testing/lab/import", "lis.csv", bad.as_bytes(), &lab_ui.csrf).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.html.contains("id=\"import-errors\""));
    assert!(a.html.contains("<td data-label=\"行\">3</td>") && a.html.contains("条码未登记"), "{}", a.html);
    assert!(a.html.contains("<td data-label=\"行\">4</td>") && a.html.contains("结果应为阴性、阳性、无效或可疑"), "{}", a.html);
    let (_, t) = app.login("lab").await.get("/api/v1/testing/tubes/lookup?barcode=HG-IM-1").await;
    assert!(t["outcome"].is_null(), "nothing was applied");
    // In English the reasons are English.
    let en = Ui::of(&app, "lab", "en").await;
    let a = en.upload("/testing/lab/import", "lis.csv", bad.as_bytes(), &en.csrf).await;
    assert!(a.html.contains("no tube with this barcode was shipped to your lab") && a.html.contains("Errors by row"));
    // No file, or a forged form: refused.
    let a = lab_ui.upload("/testing/lab/import", "lis.csv", b"", &lab_ui.csrf).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.html.contains("请选择文件"));
    let a = lab_ui.upload("/testing/lab/import", "lis.csv", "条码,结果\nHG-IM-2,阴性\n".as_bytes(), "forged").await;
    assert!(a.status.is_client_error() && a.status != StatusCode::UNPROCESSABLE_ENTITY);
    assert!(app.login("lab").await.get("/api/v1/testing/tubes/lookup?barcode=HG-IM-2").await.1["outcome"].is_null());
    // A good GBK-free CSV: applied, the positive pool reported.
    let good = "条码,结果,Ct值\nHG-IM-1,阳性,31.2\nHG-IM-2,阴性,\n";
    let a = lab_ui.upload("/testing/lab/import", "lis.csv", good.as_bytes(), &lab_ui.csrf).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.html);
    assert!(
        a.html.contains("id=\"fact-applied\">2<") && a.html.contains("id=\"fact-positive\">HG-IM-1<") && a.html.contains("id=\"fact-recheck\">5<")
    );
    // Again: nothing changes.
    let a = lab_ui.upload("/testing/lab/import", "lis.csv", good.as_bytes(), &lab_ui.csrf).await;
    assert!(a.html.contains("id=\"fact-unchanged\">2<") && a.html.contains("id=\"fact-applied\">0<"));
    // The sampler cannot import.
    assert_eq!(sampler.upload("/testing/lab/import", "lis.csv", good.as_bytes(), &sampler.csrf).await.status, StatusCode::FORBIDDEN);
    app.stop().await;
}
both!(lis_file_upload_page, import);
