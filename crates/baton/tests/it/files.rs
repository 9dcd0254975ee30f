//! Files as labs, provinces and companies send them, through every import: CSV in GBK with
//! CR-LF line ends, a title row (merged across the columns in xlsx) above the header, a 序号
//! column, blank rows, a total line at the end, Excel date cells; errors reported at the rows a
//! person sees in Excel. Lab exports with the genes' Ct values apart, negatives without a Ct and
//! suspect (可疑) tubes; villages named as people name them; files of 100,000 rows, and error
//! reports that list the first thousand errors with the total.
use baton_domain::ident::IdNumber;
use baton_testkit::{Backend, Session, TestApp, both, spawn_app, t0};
use chrono::{DateTime, Duration, FixedOffset, Utc};
use reqwest::StatusCode;
use rust_xlsxwriter::{ExcelDateTime, Format as XFormat, Workbook, Worksheet};
use serde_json::{Value, json};

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

async fn upload(s: &Session, path: &str, ct: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let r = s.raw(reqwest::Method::POST, path).header("content-type", ct).body(body).send().await.unwrap();
    let st = r.status();
    let text = r.text().await.unwrap();
    (st, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn gbk(text: &str) -> Vec<u8> {
    let (b, _, bad) = encoding_rs::GBK.encode(text);
    assert!(!bad);
    b.into_owned()
}

/// Lines joined as Windows writes them.
fn crlf(lines: &[&str]) -> String {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n");
    s
}

fn china(t: DateTime<Utc>) -> String {
    t.with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap()).format("%Y/%m/%d %H:%M").to_string()
}

fn id_number(seq: u32) -> String {
    let first17 = format!("140427{}{:02}{:02}{:03}", 1960 + seq % 40, 1 + seq % 12, 1 + seq % 28, seq % 1000);
    format!("{first17}{}", IdNumber::check_char(first17.as_bytes()) as char)
}

/// The codes of a 422's fields, by field.
fn codes(e: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> =
        e["fields"].as_object().unwrap_or_else(|| panic!("{e}")).iter().map(|(k, v)| (k.clone(), v["code"].as_str().unwrap().to_string())).collect();
    v.sort();
    v
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    v.sort();
    v
}

/// A workbook of one sheet with the title merged over `cols` columns in row 1, then `rows`.
fn titled_xlsx(title: &str, cols: u16, rows: impl FnOnce(&mut Worksheet)) -> Vec<u8> {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.merge_range(0, 0, 0, cols - 1, title, &XFormat::new().set_bold()).unwrap();
    rows(ws);
    wb.save_to_buffer().unwrap()
}

fn write_row(ws: &mut Worksheet, r: u32, cells: &[&str]) {
    for (c, v) in cells.iter().enumerate() {
        if !v.is_empty() {
            ws.write_string(r, c as u16, *v).unwrap();
        }
    }
}

async fn unit(s: &Session, name: &str) -> String {
    let (_, v) = s.get(&format!("/api/v1/units?q={name}")).await;
    v["units"].as_array().unwrap().iter().find(|u| u["name"] == name).unwrap_or_else(|| panic!("no unit {name}: {v}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Single tubes (and one pool of 5) shipped to the lab and received.
async fn shipped(app: &TestApp, barcodes: &[(&str, u32)]) -> (Session, Session) {
    let sampler = app.login("sampler").await;
    let lab = app.login("lab").await;
    let cmd = app.login("commander").await;
    let lab_id = unit(&cmd, "壶关县人民医院核酸检测实验室").await;
    let mut seq = 2000;
    for (b, k) in barcodes {
        let members: Vec<Value> = (0..*k)
            .map(|_| {
                seq += 1;
                json!({"name": format!("居民{seq}"), "document_number": id_number(seq)})
            })
            .collect();
        let (s, v) = sampler.post("/api/v1/testing/tubes", json!({"barcode": b, "pool_size": k, "members": members})).await;
        assert_eq!((s, v["state"].as_str()), (StatusCode::CREATED, Some("sealed")), "{v}");
    }
    let codes: Vec<&str> = barcodes.iter().map(|b| b.0).collect();
    let (s, batch) = sampler.post("/api/v1/testing/batches", json!({"lab_id": lab_id, "barcodes": codes})).await;
    assert_eq!(s, StatusCode::CREATED, "{batch}");
    let (s, v) = lab.post(&format!("/api/v1/testing/batches/{}/receive", batch["id"].as_str().unwrap()), json!({"barcodes": codes})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (lab, cmd)
}

/// A LIS export as labs save it: GBK, CR-LF, a title and a note above the header, 序号, the
/// genes' Ct values apart, negatives with 未检出 / NoCt / - / N/A for a Ct, a suspect tube, blank
/// rows and a total line. Errors are at the rows Excel shows; the suspect tube's members are
/// re-tested (pending re-check, a re-check order each with the re-check deadline).
async fn lab_export(b: Backend) {
    let app = spawn_app(b).await;
    let (lab, cmd) = shipped(&app, &[("HG-R1", 1), ("HG-R2", 1), ("HG-R3", 5), ("HG-R4", 1)]).await;
    let at = china(t0() - Duration::hours(1));
    let title = "壶关县人民医院 新型冠状病毒核酸检测结果,,,,,,,";
    let note = "检测机构：壶关县人民医院核酸检测实验室  导出时间：2022-11-10,,,,,,,";
    let head = "序号,试管编码,姓名,证件号码,检测结果,ORF1ab基因Ct值,N基因Ct值,检测时间";
    let bad = crlf(&[
        title,
        note,
        head,
        &format!("1,HG-R1,张三,,阴性,未检出,NoCt,{at}"),
        ",,,,,,,",
        &format!("2,HG-RX,李四,,阴性,-,N/A,{at}"),
        &format!("3,HG-R3,,,可疑,38.2,未检出,{at}"),
        &format!("4,HG-R4,王五,,阳性,27.31,abc,{at}"),
        "",
        "合计,4,,,,,,",
    ]);
    let (s, e) = upload(&lab, "/api/v1/testing/results/import", "text/csv", gbk(&bad)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(codes(&e), pairs(&[("rows[6].barcode", "tube_unknown"), ("rows[8].ct_n", "ct_invalid")]), "{e}");
    let (_, t) = lab.get("/api/v1/testing/tubes/lookup?barcode=HG-R1").await;
    assert!(t["outcome"].is_null(), "nothing was written: {t}");

    let good = bad.replace("HG-RX", "HG-R2").replace("abc", "29.05");
    let (s, r) = upload(&lab, "/api/v1/testing/results/import", "text/csv; charset=gbk", gbk(&good)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!((r["rows"].as_u64(), r["applied"].as_u64()), (Some(4), Some(4)), "{r}");
    assert_eq!((r["positive"].clone(), r["suspect"].clone(), r["pending_recheck"].as_u64()), (json!(["HG-R4"]), json!(["HG-R3"]), Some(5)));
    // Negatives have no Ct; a positive keeps both genes' and the lower as the tube's.
    let (_, t) = lab.get("/api/v1/testing/tubes/lookup?barcode=HG-R1").await;
    assert_eq!(
        (t["outcome"].as_str(), t["ct"].clone(), t["ct_orf1ab"].clone(), t["ct_n"].clone()),
        (Some("negative"), Value::Null, Value::Null, Value::Null)
    );
    let (_, t) = lab.get("/api/v1/testing/tubes/lookup?barcode=HG-R4").await;
    assert_eq!((t["ct"].as_f64(), t["ct_orf1ab"].as_f64(), t["ct_n"].as_f64()), (Some(27.31), Some(27.31), Some(29.05)), "{t}");
    assert_eq!(t["results"][0]["ct_n"].as_f64(), Some(29.05));
    let page = lab.raw(reqwest::Method::GET, &format!("/testing/tubes/{}", t["id"].as_str().unwrap())).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("ORF1ab 27.31") && page.contains("N 29.05"), "the genes' Ct values are shown with the result");
    // The suspect pool: each member on pending re-check, owed a single-tube re-test by the re-check deadline.
    let (_, t) = lab.get("/api/v1/testing/tubes/lookup?barcode=HG-R3").await;
    assert_eq!(t["outcome"], "suspect");
    assert!(t["member_list"].as_array().unwrap().iter().all(|m| m["status"] == "pending_recheck"), "{t}");
    let (_, o) = cmd.get("/api/v1/testing/rechecks").await;
    let orders: Vec<&Value> = o["orders"].as_array().unwrap().iter().filter(|o| o["source_barcode"] == "HG-R3").collect();
    assert_eq!(orders.len(), 5, "{o}");
    let rules = baton_domain::policy::TestingRules::default();
    let hours = baton_domain::testing::result_hours(&rules, 1, baton_domain::testing::Priority::Expedited, baton_domain::testing::Purpose::Recheck);
    let due = (t0() + Duration::hours(i64::from(hours))).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(orders.iter().all(|o| o["kind"] == "recheck" && o["due_at"].as_str() == Some(due.as_str())), "{orders:?}");
    // The same file again changes nothing.
    let (s, r) = upload(&lab, "/api/v1/testing/results/import", "text/csv", gbk(&good)).await;
    assert_eq!((s, r["unchanged"].as_u64()), (StatusCode::OK, Some(4)), "{r}");
    app.stop().await;
}
both!(a_lis_export_with_title_gene_cts_and_a_suspect_tube_imports_as_excel_shows_it, lab_export);

/// Pre-reports as a company keeps them: a CSV (UTF-8 with BOM, CR-LF) with a title, 序号, blank
/// rows and a total; then the same trucks in xlsx, the title merged, times as Excel date cells.
async fn trips_export(b: Backend) {
    let app = spawn_app(b).await;
    let ent = app.login("enterprise").await;
    let when = china(t0() + Duration::hours(30));
    let bad = format!(
        "\u{feff}{}",
        crlf(&[
            "货车批量报备表（太行钢材）,,,,,",
            "序号,车牌号,目的地单位,预计到达卡口时间,司机姓名,司机身份证号",
            &format!("1,晋D70001,,{when},李师傅,11010519491231002X"),
            ",,,,,",
            &format!("2,晋D7000,,{when},王师傅,11010519491231002X"),
            &format!("3,晋D70003,,{when},赵师傅,110105194912310021"),
            "合计,3,,,,",
        ])
    );
    let (s, e) = upload(&ent, "/api/v1/trips/import", "text/csv", bad.into_bytes()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let got = codes(&e);
    assert_eq!(got.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(), ["rows[5].plate", "rows[6].driver_id_number"], "{e}");

    let eta = (t0() + Duration::hours(30)).with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap()).naive_local();
    let xlsx = titled_xlsx("货车批量报备表（太行钢材）", 6, |ws| {
        let date = XFormat::new().set_num_format("yyyy/m/d h:mm");
        write_row(ws, 1, &["序号", "车牌号", "目的地单位", "预计到达卡口时间", "司机姓名", "司机身份证号"]);
        for (r, plate) in [(2u32, "晋D70011"), (4, "晋D70012")] {
            ws.write_number(r, 0, f64::from(r - 1)).unwrap();
            write_row(ws, r, &["", plate, "壶关经济技术开发区物流园", "", "李师傅", "11010519491231002X"]);
            ws.write_datetime_with_format(r, 3, ExcelDateTime::from_timestamp(eta.and_utc().timestamp()).unwrap(), &date).unwrap();
        }
        write_row(ws, 6, &["合计", "2"]);
    });
    let (s, v) = upload(&ent, "/api/v1/trips/import", XLSX, xlsx).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let rows: Vec<(u64, &str)> = v["trips"].as_array().unwrap().iter().map(|t| (t["row"].as_u64().unwrap(), t["plate"].as_str().unwrap())).collect();
    assert_eq!(rows, [(3, "晋D70011"), (5, "晋D70012")]);
    let (_, t) = ent.get(&format!("/api/v1/trips/{}", v["trips"][0]["id"].as_str().unwrap())).await;
    assert_eq!(
        t["expected_at"].as_str().map(|x| DateTime::parse_from_rfc3339(x).unwrap().timestamp()),
        Some((t0() + Duration::hours(30)).timestamp())
    );
    // The page points at the same rows.
    let b = "XbatonX";
    let body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{}\r\n--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.csv\"\r\nContent-Type: text/csv\r\n\r\n{}\r\n--{b}--\r\n",
        ent.csrf,
        crlf(&["报备表,,,,", "车牌号,目的地单位,预计到达卡口时间,司机姓名,司机身份证号", "", &format!("晋D7002,,{when},李师傅,11010519491231002X")])
    );
    let r = ent
        .raw(reqwest::Method::POST, "/trips/import")
        .header("content-type", format!("multipart/form-data; boundary={b}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    let rows: Vec<&str> = html.split("<td data-label=\"行\">").skip(1).map(|x| x.split('<').next().unwrap()).collect();
    assert_eq!(rows, ["4"], "{html}");
    app.stop().await;
}
both!(pre_reports_from_a_companys_csv_and_xlsx_with_titles_and_totals, trips_export);

/// A province's risk-area notice: GBK CSV with CR-LF, a title and 序号; then xlsx with the title
/// merged and a total, naming villages as people do (百尺村) beside their town (壶关县百尺).
async fn risk_export(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let bad = crlf(&[
        "山西省卫生健康委员会 风险区域通报（11月10日）,,,,",
        "序号,地区,地点,等级,开始时间",
        "1,太原市小店区,,高风险,2022-11-10",
        "2,火星市,,高风险,2022-11-10",
        ",,,,",
        "3,壶关县百尺镇百尺村,,低风险,2022-11-40",
        "合计,3,,,",
    ]);
    let (s, e) = upload(&c, "/api/v1/risk-areas/import", "text/csv", gbk(&bad)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(codes(&e), pairs(&[("rows[4].division", "division_unknown"), ("rows[6].from", "datetime_format")]), "{e}");

    let xlsx = titled_xlsx("风险区域通报", 5, |ws| {
        write_row(ws, 1, &["序号", "地区", "地点", "等级", "开始时间"]);
        write_row(ws, 2, &["1", "百尺村", "", "高风险", "2022-11-10"]);
        write_row(ws, 3, &["2", "壶关县百尺", "某某小区", "低风险", "2022-11-10"]);
        write_row(ws, 5, &["3", "壶关县城南社区", "", "低风险", "2022-11-10"]);
        write_row(ws, 7, &["合计：3 处"]);
    });
    let (s, r) = upload(&c, "/api/v1/risk-areas/import", XLSX, xlsx).await;
    assert_eq!((s, r["created"].as_u64()), (StatusCode::CREATED, Some(3)), "{r}");
    let (_, v) = c.get("/api/v1/risk-areas").await;
    let mut got: Vec<&str> = v["areas"].as_array().unwrap().iter().map(|a| a["division_code"].as_str().unwrap()).collect();
    got.sort();
    assert_eq!(got, ["140427100001", "140427101", "140427101200"]);
    // A form names a village the same way.
    let (s, a) = c.post("/api/v1/risk-areas", json!({"division": "百尺镇百尺村", "place": "3号院", "level": "high", "from": "2022-11-10"})).await;
    assert_eq!((s, a["division_code"].as_str()), (StatusCode::CREATED, Some("140427101200")), "{a}");
    app.stop().await;
}
both!(risk_area_notices_with_titles_totals_and_villages_by_their_names, risk_export);

/// A whitelist from a province: xlsx with a merged title, 序号, blank rows and a total; and CSV in
/// GBK with CR-LF, its bad row reported where Excel shows it.
async fn whitelist_export(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.login("commander").await;
    let head = ["序号", "类型", "层级", "名称/姓名", "统一社会信用代码", "车牌号", "身份证号", "手机号", "有效期起", "有效期止", "备注"];
    let xlsx = titled_xlsx("2022年11月 省级白名单（车辆）", 11, |ws| {
        write_row(ws, 1, &head);
        write_row(ws, 2, &["1", "车辆", "省级", "太行物流", "", "晋D80001", "", "", "2022-11-01", "2022-12-31", ""]);
        write_row(ws, 4, &["2", "车辆", "省级", "太行物流", "", "晋D80002", "", "", "2022-11-01", "2022-12-31", ""]);
        write_row(ws, 5, &["3"]);
        write_row(ws, 6, &["合计", "2"]);
    });
    let (s, v) = upload(&c, "/api/v1/whitelist/import", XLSX, xlsx).await;
    assert_eq!((s, v["imported"].as_u64()), (StatusCode::CREATED, Some(2)), "{v}");
    let bad = crlf(&[
        "2022年11月 省级白名单,,,,,,,,,,",
        &head.join(","),
        "1,车辆,省级,太行物流,,晋D80003,,,2022-11-01,2022-12-31,",
        "",
        "2,车辆,省级,太行物流,,晋D8000,,,2022-11-01,2022-12-31,",
    ]);
    let (s, e) = upload(&c, "/api/v1/whitelist/import", "text/csv", gbk(&bad)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(codes(&e), pairs(&[("rows[5].plate", "plate_format")]), "{e}");
    let (s, v) = upload(&c, "/api/v1/whitelist/import", "text/csv", gbk(&bad.replace("晋D8000,", "晋D80004,"))).await;
    assert_eq!((s, v["imported"].as_u64()), (StatusCode::CREATED, Some(2)), "{v}");
    app.stop().await;
}
both!(whitelists_from_xlsx_and_gbk_csv_with_titles_and_totals, whitelist_export);

/// Rows of each big file.
const BIG: usize = 100_000;

/// A CSV file of a header and `n` rows made by `row`.
fn csv_of(header: &str, n: usize, row: impl Fn(usize, &mut String)) -> Vec<u8> {
    let mut s = String::with_capacity(n * 80);
    s.push_str(header);
    s.push('\n');
    for i in 0..n {
        row(i, &mut s);
        s.push('\n');
    }
    s.into_bytes()
}

/// Files of 100,000 rows import whole (pre-reports, whitelist, risk areas); a file of 1,500 bad
/// rows answers with the first 1,000 errors, in row order, and the total. (Timings are the
/// bench's; see `baton bench --scenario imports`.)
async fn big_files(b: Backend) {
    use std::fmt::Write;
    let app = spawn_app(b).await;
    let ent = app.login("enterprise").await;
    let cmd = app.login("commander").await;
    let when = china(t0() + Duration::hours(30));
    let plate = |letter: char, i: usize| format!("晋{letter}{i:05}");

    // 1,500 bad rows: the first thousand listed, the total given, a small answer.
    let bad = csv_of("车牌号,预计到达卡口时间,司机姓名,司机身份证号", 1500, |i, s| {
        let _ = write!(s, "晋{i},{when},李师傅,11010519491231002X");
    });
    let r = ent.raw(reqwest::Method::POST, "/api/v1/trips/import").header("content-type", "text/csv").body(bad).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let text = r.text().await.unwrap();
    assert!(text.len() < 400_000, "{} bytes", text.len());
    let e: Value = serde_json::from_str(&text).unwrap();
    let fields = e["fields"].as_object().unwrap();
    assert_eq!(fields.len(), 1001);
    assert!(fields.contains_key("rows[2].plate") && fields.contains_key("rows[1001].plate") && !fields.contains_key("rows[1002].plate"));
    assert_eq!(e["fields"]["rows"]["code"], "too_many_errors");
    assert!(e["fields"]["rows"]["en"].as_str().unwrap().starts_with("1500 errors in all"), "{}", e["fields"]["rows"]);

    let file = csv_of("车牌号,预计到达卡口时间,司机姓名,司机身份证号,司机手机号", BIG, |i, s| {
        let _ = write!(s, "{},{when},李师傅,11010519491231002X,13912345678", plate('A', i));
    });
    let (s, v) = upload(&ent, "/api/v1/trips/import", "text/csv", file).await;
    assert_eq!((s, v["imported"].as_u64()), (StatusCode::CREATED, Some(BIG as u64)), "{}", v.to_string().chars().take(500).collect::<String>());
    assert_eq!(v["trips"][BIG - 1]["row"].as_u64(), Some(BIG as u64 + 1));
    let open: i64 =
        app.store.db.fetch_one(baton_store::q!("SELECT COUNT(*) AS n FROM trips WHERE closed_at IS NULL")).await.unwrap().get("n").unwrap();
    assert_eq!(open, BIG as i64);

    let file = csv_of("类型,层级,名称/姓名,车牌号,有效期起,有效期止", BIG, |i, s| {
        let _ = write!(s, "车辆,省级,太行物流,{},2022-11-01,2022-12-31", plate('B', i));
    });
    let (s, v) = upload(&cmd, "/api/v1/whitelist/import", "text/csv", file).await;
    assert_eq!((s, v["imported"].as_u64()), (StatusCode::CREATED, Some(BIG as u64)), "{}", v.to_string().chars().take(500).collect::<String>());

    let file = csv_of("地区,地点,等级,开始时间", BIG, |i, s| {
        let _ = write!(s, "壶关县龙泉镇,{i}号院,低风险,2022-11-10");
    });
    let (s, v) = upload(&cmd, "/api/v1/risk-areas/import", "text/csv", file).await;
    assert_eq!((s, v["created"].as_u64()), (StatusCode::CREATED, Some(BIG as u64)), "{}", v.to_string().chars().take(500).collect::<String>());
    app.stop().await;
}
both!(files_of_100000_rows_import_and_1000_errors_are_listed_with_the_total, big_files);
