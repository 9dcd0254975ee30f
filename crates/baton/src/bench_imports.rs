//! `baton bench --scenario imports`: files of 100,000 rows, shaped as they come from outside
//! (a title row, a 序号 column, a total line; GBK with CR-LF where Chinese Excel writes CSV),
//! through each import's API: pre-reports (trips), whitelist, risk areas and a lab's LIS export.
//! Each import's time, and the process's peak memory during it (server, client and the files,
//! one process: the peak is reset before each import), beside the aim of 10 s and 256 MB. Then a
//! file whose every row is bad: the size of the answer (the first 1,000 errors and the total).

use crate::bench::bench_token;
use anyhow::Context;
use baton_store::Store;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// Rows of each file.
const ROWS: usize = 100_000;
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

fn e(x: baton_domain::Error) -> anyhow::Error {
    anyhow::anyhow!("{x}")
}

/// The peak resident memory so far, and a reset of it (Linux: `clear_refs` 5).
fn peak_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn gbk_crlf(text: &str) -> Vec<u8> {
    encoding_rs::GBK.encode(&text.replace('\n', "\r\n")).0.into_owned()
}

struct Measured {
    secs: f64,
    peak: Option<f64>,
    status: reqwest::StatusCode,
    bytes: usize,
    body: serde_json::Value,
}

async fn post(client: &reqwest::Client, url: String, token: &str, ct: &str, body: Vec<u8>) -> anyhow::Result<Measured> {
    reset_peak();
    let t = Instant::now();
    let r = client.post(url).bearer_auth(token).header("content-type", ct).body(body).timeout(Duration::from_secs(600)).send().await?;
    let status = r.status();
    let text = r.bytes().await?;
    let secs = t.elapsed().as_secs_f64();
    let body = serde_json::from_slice(&text).unwrap_or_default();
    Ok(Measured { secs, peak: peak_mib(), status, bytes: text.len(), body })
}

fn report(what: &str, file: usize, m: &Measured, count: &str) {
    let peak = m.peak.map(|p| format!("{p:.0} MiB")).unwrap_or_else(|| "—".into());
    println!(
        "{what:<44} {:>6.1} MB {:>8.2} s {:>9} peak  {} {}  (aims: < 10 s, < 256 MB)",
        file as f64 / 1e6,
        m.secs,
        peak,
        m.status.as_u16(),
        m.body[count]
    );
}

pub async fn run(store: &Store, client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let sys = baton_store::Principal::system("bench");
    let unit = |kind: &'static str, name: &'static str| {
        let sys = sys.clone();
        async move {
            baton_store::units::list(store, &sys, &baton_store::units::UnitFilter { kind: Some(kind.into()), q: Some(name.into()) })
                .await
                .map_err(e)?
                .into_iter()
                .next()
                .map(|u| u.id)
                .with_context(|| format!("demo unit {name} missing"))
        }
    };
    let enterprise = bench_token(client, base, Some(unit("cargo_owner", "太行钢材").await?), &["trips.report", "trips.read"]).await?;
    let county = bench_token(client, base, None, &["whitelist.write", "whitelist.read", "risk_areas.write"]).await?;
    let lab_id = unit("lab", "壶关县人民医院核酸检测实验室").await?;
    let lab = bench_token(client, base, Some(lab_id), &["testing.result", "testing.read"]).await?;
    let team = unit("sampling_team", "龙泉镇核酸采样队").await?;
    println!();
    println!("{:<44} {:>9} {:>10} {:>14}  answer", "import of 100,000 rows", "file", "time", "memory");
    let eta = (chrono::Utc::now() + chrono::Duration::hours(30)).with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).context("zone")?);
    let when = eta.format("%Y/%-m/%-d %-H:%M");

    // Pre-reports: a company's sheet, UTF-8 CSV as an office suite saves it.
    let mut csv = String::from("货车批量报备表,,,,,,,\n序号,车牌号,目的地单位,预计到达卡口时间,司机姓名,司机身份证号,司机手机号,随车人员姓名\n");
    for i in 0..ROWS {
        let _ = writeln!(csv, "{},晋A{i:05},,{when},李师傅,11010519491231002X,13912345678,", i + 1);
    }
    csv.push_str(&format!("合计,{ROWS},,,,,,\n"));
    let size = csv.len();
    let m = post(client, format!("{base}/api/v1/trips/import"), &enterprise, "text/csv", csv.into_bytes()).await?;
    report("pre-reports (CSV, UTF-8)", size, &m, "imported");

    // The whitelist: a province's list as xlsx, the title merged.
    let bytes = {
        let mut wb = rust_xlsxwriter::Workbook::new();
        let ws = wb.add_worksheet();
        ws.merge_range(0, 0, 0, 6, "省级白名单（车辆）", &rust_xlsxwriter::Format::new())?;
        for (c, h) in ["序号", "类型", "层级", "名称/姓名", "车牌号", "有效期起", "有效期止"].iter().enumerate() {
            ws.write_string(1, u16::try_from(c)?, *h)?;
        }
        for i in 0..ROWS {
            let r = u32::try_from(i)? + 2;
            ws.write_number(r, 0, (i + 1) as f64)?;
            ws.write_string(r, 1, "车辆")?;
            ws.write_string(r, 2, "省级")?;
            ws.write_string(r, 3, "太行物流")?;
            ws.write_string(r, 4, format!("晋B{i:05}"))?;
            ws.write_string(r, 5, "2022-11-01")?;
            ws.write_string(r, 6, "2099-12-31")?;
        }
        wb.save_to_buffer()?
    };
    let size = bytes.len();
    let m = post(client, format!("{base}/api/v1/whitelist/import"), &county, XLSX, bytes).await?;
    report("whitelist (xlsx)", size, &m, "imported");

    // Risk areas: a notice in GBK with CR-LF.
    let mut csv = String::from("风险区域通报,,,,\n序号,地区,地点,等级,开始时间\n");
    for i in 0..ROWS {
        let _ = writeln!(csv, "{},山西省长治市壶关县龙泉镇,{i}号院,低风险,2022-11-10 08:00", i + 1);
    }
    let bytes = gbk_crlf(&csv);
    let size = bytes.len();
    let m = post(client, format!("{base}/api/v1/risk-areas/import"), &county, "text/csv", bytes).await?;
    report("risk areas (CSV, GBK)", size, &m, "created");

    // A lab's LIS export of 100,000 shipped single tubes: GBK, CR-LF, genes' Ct apart.
    let t = Instant::now();
    let plain = crate::bench_testing::seed_shipped(store, team, lab_id, "IMP", 20_000_000).await?;
    println!("(seeded {ROWS} shipped tubes with their persons in {:.1} s)", t.elapsed().as_secs_f64());
    let mut csv =
        String::from("壶关县人民医院 新型冠状病毒核酸检测结果,,,,,,,\n序号,条码号,姓名,证件号码,检测结果,ORF1ab基因Ct值,N基因Ct值,检测时间\n");
    let at = chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).context("zone")?).format("%Y/%-m/%-d %-H:%M");
    for (i, line) in String::from_utf8(plain)?.lines().skip(1).enumerate() {
        let mut f = line.split(',');
        let (barcode, result, ct) = (f.next().unwrap_or(""), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let (orf, n) = if ct.is_empty() { ("未检出", "NoCt") } else { (ct, ct) };
        let _ = writeln!(csv, "{},{barcode},居民,,{result},{orf},{n},{at}", i + 1);
    }
    csv.push_str(&format!("合计,{ROWS},,,,,,\n"));
    let bytes = gbk_crlf(&csv);
    let size = bytes.len();
    let m = post(client, format!("{base}/api/v1/testing/results/import"), &lab, "text/csv", bytes).await?;
    report("lab results (LIS CSV, GBK)", size, &m, "applied");

    // Every row bad (the same pre-reports again: each plate has an open trip now).
    let mut csv = String::from("车牌号,预计到达卡口时间,司机姓名,司机身份证号\n");
    for i in 0..ROWS {
        let _ = writeln!(csv, "晋A{i:05},{when},李师傅,11010519491231002X");
    }
    let size = csv.len();
    let m = post(client, format!("{base}/api/v1/trips/import"), &enterprise, "text/csv", csv.into_bytes()).await?;
    let listed = m.body["fields"].as_object().map_or(0, |f| f.len());
    println!(
        "pre-reports, every row bad ({:.1} MB): {} in {:.2} s, an answer of {:.0} kB listing {listed} errors: {}",
        size as f64 / 1e6,
        m.status.as_u16(),
        m.secs,
        m.bytes as f64 / 1e3,
        m.body["fields"]["rows"]["en"]
    );
    Ok(())
}
