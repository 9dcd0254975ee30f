//! The demo county: Huguan (140427) from the real division data — its 11 township-level
//! units and 283 villages — with realistic units and one user for every role.

use baton_domain::Error;
use baton_domain::division::{Divisions, Level};
use baton_domain::ident::IdNumber;
use baton_store::escorts;
use baton_store::testing;
use baton_store::units::{self, UnitInput};
use baton_store::users::{self, UserInput};
use baton_store::{Principal, Store};
use std::collections::HashMap;
use uuid::Uuid;

pub const COUNTY: &str = "140427";
/// The demo's one password, printed with the logins. Demo data only.
pub const DEMO_PASSWORD: &str = "Huguan-2022!";

#[derive(Debug, Clone)]
pub struct DemoLogin {
    pub username: &'static str,
    pub role: &'static str,
    pub unit: String,
}

pub struct DemoOptions {
    /// Create a village unit for each of the 283 villages (tests may skip them for speed).
    pub villages: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self { villages: true }
    }
}

/// Named units of the demo: (key, name, kind, division, supervisor key).
const UNITS: &[(&str, &str, &str, &str, &str)] = &[
    ("cmd", "壶关县疫情防控指挥部办公室", "command_office", "140427", ""),
    ("tf_transport", "交通物流专班", "task_force", "140427", "cmd"),
    ("tf_community", "社区防控专班", "task_force", "140427", "cmd"),
    ("tf_campus", "校园防控专班", "task_force", "140427", "cmd"),
    ("tf_testing", "核酸检测专班", "task_force", "140427", "cmd"),
    ("tf_economy", "经济运行专班", "task_force", "140427", "cmd"),
    ("d_transport", "壶关县交通运输局", "department", "140427", "tf_transport"),
    ("d_health", "壶关县卫生健康局", "department", "140427", "tf_testing"),
    ("d_education", "壶关县教育局", "department", "140427", "tf_campus"),
    ("d_police", "壶关县公安局", "department", "140427", "tf_transport"),
    ("d_industry", "壶关县工业和信息化局", "department", "140427", "tf_economy"),
    ("d_housing", "壶关县住房和城乡建设局", "department", "140427", "tf_economy"),
    ("d_commerce", "壶关县商务局", "department", "140427", "tf_economy"),
    ("d_market", "壶关县市场监督管理局", "department", "140427", "tf_community"),
    ("d_reform", "壶关县发展和改革局", "department", "140427", "tf_economy"),
    ("cp_longquan", "龙泉高速出口卡口", "checkpoint", "140427100", "tf_transport"),
    ("cp_jidian", "集店高速出口卡口", "checkpoint", "140427106", "tf_transport"),
    ("cp_shuzhang", "树掌省道入口卡口", "checkpoint", "140427104", "tf_transport"),
    ("site", "壶关县货车专用服务场地", "truck_service_site", "140427401", "tf_transport"),
    ("park", "壶关经济技术开发区物流园", "logistics_park", "140427401", "tf_transport"),
    ("ent_steel", "壶关县太行钢材贸易有限公司", "cargo_owner", "140427401", "tf_economy"),
    ("ent_food", "壶关县龙泉农产品批发有限公司", "cargo_owner", "140427100", "tf_economy"),
    ("ent_build", "壶关县百尺建材有限公司", "cargo_owner", "140427101", "tf_economy"),
    ("school_1", "壶关县第一中学", "school", "140427100", "tf_campus"),
    ("school_2", "壶关县百尺镇中心学校", "school", "140427101", "tf_campus"),
    ("venue_market", "壶关县龙泉农贸市场", "key_venue", "140427100", "tf_community"),
    ("venue_hotel", "壶关县太行宾馆", "key_venue", "140427100", "tf_community"),
    ("venue_site", "壶关县城区改造项目工地", "key_venue", "140427100", "d_housing"),
    ("lab_hospital", "壶关县人民医院核酸检测实验室", "lab", "140427100", "tf_testing"),
    ("lab_third", "长治市第三方医学检验实验室壶关分部", "lab", "140427401", "tf_testing"),
    ("team_longquan", "龙泉镇核酸采样队", "sampling_team", "140427100", "tf_testing"),
    ("team_baichi", "百尺镇核酸采样队", "sampling_team", "140427101", "tf_testing"),
    ("hotel_q", "壶关县集中隔离点(一)", "quarantine_hotel", "140427100", "tf_community"),
];

/// One user per role: (username, display name, role, unit key, scope: "county" | "township:<code>" | "unit").
const USERS: &[(&str, &str, &str, &str, &str)] = &[
    ("admin", "系统管理员", "admin", "cmd", "county"),
    ("commander", "王指挥", "commander", "cmd", "county"),
    ("leader", "李县长", "leader", "cmd", "county"),
    ("longquan", "赵乡镇(龙泉镇)", "township_staff", "twp:140427100", "township:140427100"),
    ("baichi", "钱乡镇(百尺镇)", "township_staff", "twp:140427101", "township:140427101"),
    ("grid", "孙网格员", "grid_member", "twp:140427100", "unit"),
    ("checkpoint", "周卡口", "checkpoint_staff", "cp_longquan", "unit"),
    ("escort", "吴接返", "escort", "d_transport", "unit"),
    ("site", "郑场地", "site_staff", "site", "unit"),
    ("enterprise", "冯企业", "enterprise", "ent_steel", "unit"),
    ("sampler", "陈采样", "sampler", "team_longquan", "unit"),
    ("lab", "褚检测", "lab_staff", "lab_hospital", "unit"),
    ("school", "卫校医", "school_staff", "school_1", "unit"),
    ("venue", "蒋场所", "venue_staff", "venue_market", "unit"),
    // The first unit on the fallback roster: escorts trucks whose receiver's escort cannot.
    ("police", "韩公安", "escort", "d_police", "unit"),
];

/// Where the sampling teams take samples: (team key, site, address).
const SAMPLING_SITES: &[(&str, &str, &str)] = &[
    ("team_longquan", "龙泉镇政府广场采样点", "龙泉镇府前街"),
    ("team_longquan", "龙泉镇卫生院采样点", "龙泉镇卫生院门诊楼前"),
    ("team_longquan", "龙泉农贸市场采样点", "壶关县龙泉农贸市场东门"),
    ("team_baichi", "百尺镇便民服务中心采样点", "百尺镇便民服务中心"),
    ("team_baichi", "百尺镇中心学校采样点", "壶关县百尺镇中心学校操场"),
];

fn id_number(seq: u32) -> String {
    let first17 = format!("140427{}{:02}{:02}{:03}", 1970 + seq % 30, 1 + seq % 12, 1 + seq % 28, 100 + seq);
    let c = IdNumber::check_char(first17.as_bytes()) as char;
    format!("{first17}{c}")
}

fn phone(seq: u32) -> String {
    format!("1390355{:04}", 1000 + seq)
}

/// Build the demo county unless it is already there; returns the logins.
pub async fn build(store: &Store, opts: &DemoOptions) -> Result<Vec<DemoLogin>, Error> {
    let sys = Principal::system("demo");
    let existing = units::list(store, &sys, &units::UnitFilter { kind: Some("command_office".into()), q: None }).await?;
    let mut ids: HashMap<String, Uuid> = HashMap::new();
    if existing.is_empty() {
        for (key, name, kind, div, sup) in UNITS {
            let input = UnitInput {
                name: (*name).into(),
                kind: (*kind).into(),
                division_code: (*div).into(),
                supervisor_id: ids.get(*sup).copied(),
                address: String::new(),
                active: true,
            };
            let u = units::create(store, &sys, &input).await?;
            ids.insert((*key).to_string(), u.id);
        }
        let d = Divisions::get_all();
        let cmd = ids.get("cmd").copied();
        for t in d.children(COUNTY) {
            let name = if t.code.ends_with("401") { format!("{}管理委员会", t.name) } else { format!("{}人民政府", t.name) };
            let u = units::create(
                store,
                &sys,
                &UnitInput { name, kind: "township".into(), division_code: t.code.into(), supervisor_id: cmd, address: String::new(), active: true },
            )
            .await?;
            ids.insert(format!("twp:{}", t.code), u.id);
            if opts.villages {
                for v in d.children(t.code).filter(|v| v.level == Level::Village) {
                    units::create(
                        store,
                        &sys,
                        &UnitInput {
                            name: v.name.into(),
                            kind: "village".into(),
                            division_code: v.code.into(),
                            supervisor_id: Some(u.id),
                            address: String::new(),
                            active: true,
                        },
                    )
                    .await?;
                }
            }
        }
        for (i, (username, display, role, unit, scope)) in USERS.iter().enumerate() {
            let unit_id = *ids.get(*unit).ok_or(Error::NotFound("demo unit"))?;
            let (scope_kind, scope_code) = match *scope {
                "county" => ("division", COUNTY.to_string()),
                s if s.starts_with("township:") => ("division", s.trim_start_matches("township:").to_string()),
                _ => ("unit", String::new()),
            };
            let seq = u32::try_from(i).unwrap_or(0);
            users::create(
                store,
                &sys,
                &UserInput {
                    username: (*username).into(),
                    display_name: (*display).into(),
                    unit_id,
                    role: (*role).into(),
                    scope_kind: scope_kind.into(),
                    scope_code,
                    password: DEMO_PASSWORD.into(),
                    phone: phone(seq),
                    id_number: id_number(seq),
                    disabled: false,
                },
            )
            .await?;
        }
        for (team, name, address) in SAMPLING_SITES {
            let team_id = *ids.get(*team).ok_or(Error::NotFound("demo unit"))?;
            let who = Principal { unit_id: Some(team_id), ..sys.clone() };
            testing::create_site(store, &who, &testing::SiteInput { name: (*name).into(), address: (*address).into() }).await?;
        }
        // Escorts: the transport bureau's team escorts 太行钢材's trucks; police, then transport, stand behind every receiver.
        let unit = |k: &str| ids.get(k).copied().ok_or(Error::NotFound("demo unit"));
        escorts::set_receiver_escort(store, &sys, unit("ent_steel")?, &escorts::ReceiverEscortInput { escort_id: Some(unit("d_transport")?) })
            .await?;
        escorts::set_fallback(store, &sys, &escorts::FallbackInput { units: vec![unit("d_police")?, unit("d_transport")?] }).await?;
    }
    let names: HashMap<&str, &str> = UNITS.iter().map(|(k, n, ..)| (*k, *n)).collect();
    Ok(USERS
        .iter()
        .map(|(u, _, role, unit, _)| DemoLogin {
            username: u,
            role,
            unit: names
                .get(unit)
                .map(|s| s.to_string())
                .unwrap_or_else(|| Divisions::get_all().get(unit.trim_start_matches("twp:")).map(|d| d.name.to_string()).unwrap_or_default()),
        })
        .collect())
}

/// The personal data the demo stores, for tests that check none of it is in plain text.
pub fn demo_personal_data() -> Vec<String> {
    (0..USERS.len() as u32).flat_map(|i| [id_number(i), phone(i)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_identities_are_valid() {
        for i in 0..USERS.len() as u32 {
            assert!(IdNumber::parse("id", &id_number(i)).is_ok());
            assert!(baton_domain::ident::Phone::parse("p", &phone(i)).is_ok());
        }
    }
}
