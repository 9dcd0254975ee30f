//! Permissions and the built-in roles. A role is a named set of permissions; the command
//! office may define more roles in the admin pages.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

macro_rules! permissions {
    ($($v:ident = $s:literal, $zh:literal, $en:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Permission { $(#[serde(rename = $s)] $v),* }

        impl Permission {
            pub const ALL: &[Permission] = &[$(Permission::$v),*];
            pub fn as_str(self) -> &'static str { match self { $(Permission::$v => $s),* } }
            pub fn parse(s: &str) -> Option<Self> { match s { $($s => Some(Permission::$v),)* _ => None } }
            pub fn label(self, zh: bool) -> &'static str { match self { $(Permission::$v => if zh { $zh } else { $en }),* } }
        }
    };
}

permissions! {
    UnitsRead = "units.read", "查看单位", "View units";
    UnitsWrite = "units.write", "管理单位", "Manage units";
    UsersRead = "users.read", "查看用户", "View users";
    UsersWrite = "users.write", "管理用户", "Manage users";
    RolesWrite = "roles.write", "管理角色", "Manage roles";
    TokensWrite = "tokens.write", "管理接口令牌", "Manage API tokens";
    AuditRead = "audit.read", "查看审计日志", "View the audit log";
    PolicyRead = "policy.read", "查看防控策略", "View policy";
    PolicyWrite = "policy.write", "编辑防控策略", "Edit policy";
    GridsWrite = "grids.write", "管理网格", "Manage grids";
    PersonalReveal = "personal.reveal", "查看完整个人信息", "Reveal personal data";
    TripsRead = "trips.read", "查看货车行程", "View truck trips";
    TripsReport = "trips.report", "报备货车", "Pre-report trucks";
    TripsCheckIn = "trips.check_in", "卡口登记", "Check trucks in";
    TripsHandle = "trips.handle", "交接与确认", "Hand over and confirm trips";
    AlertsHandle = "alerts.handle", "处置告警", "Acknowledge and resolve alerts";
    RiskAreasWrite = "risk_areas.write", "维护风险地区", "Maintain risk areas";
    WhitelistRead = "whitelist.read", "查看白名单", "View the whitelist";
    WhitelistWrite = "whitelist.write", "维护白名单", "Maintain the whitelist";
    TestingRead = "testing.read", "查看采样检测", "View sampling and testing";
    TestingSample = "testing.sample", "采样登记与送检", "Register samples and ship them";
    TestingResult = "testing.result", "接收样本与报告结果", "Receive samples and post results";
    TestingManage = "testing.manage", "组织筛查轮次", "Run screening rounds";
    PersonsRead = "persons.read", "查看人员", "View persons";
    PersonsWrite = "persons.write", "登记人员", "Register persons";
    VenuesWrite = "venues.write", "管理场所码", "Manage venues and venue codes";
    VenuesScan = "venues.scan", "场所扫码登记", "Scan codes at a venue";
    ExposureSearch = "exposure.search", "时空伴随排查", "Search exposures of a case";
}

/// A set of permissions, stored as a sorted comma-separated list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions(pub BTreeSet<Permission>);

impl Permissions {
    pub fn all() -> Self {
        Self(Permission::ALL.iter().copied().collect())
    }

    pub fn of(list: &[Permission]) -> Self {
        Self(list.iter().copied().collect())
    }

    pub fn has(&self, p: Permission) -> bool {
        self.0.contains(&p)
    }

    /// Every permission in `other` is also here (a token can never exceed its creator).
    pub fn covers(&self, other: &Permissions) -> bool {
        other.0.is_subset(&self.0)
    }

    pub fn to_db(&self) -> String {
        self.0.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",")
    }

    /// Unknown names (from a newer or older version) are skipped, never granted.
    pub fn from_db(s: &str) -> Self {
        Self(s.split(',').filter_map(|x| Permission::parse(x.trim())).collect())
    }

    pub fn parse_list(field: &str, names: &[String]) -> Result<Self, crate::FieldError> {
        let mut out = BTreeSet::new();
        for n in names {
            let p = Permission::parse(n).ok_or_else(|| {
                crate::FieldError::new(field, "permission_unknown", format!("未知权限“{n}”"), format!("unknown permission \"{n}\""))
            })?;
            out.insert(p);
        }
        Ok(Self(out))
    }
}

/// A role seeded on first start. `home` names the home page the role lands on.
pub struct BuiltinRole {
    pub name: &'static str,
    pub zh: &'static str,
    pub en: &'static str,
    pub permissions: &'static [Permission],
}

use Permission::*;

pub const BUILTIN_ROLES: &[BuiltinRole] = &[
    BuiltinRole { name: "admin", zh: "系统管理员", en: "System administrator", permissions: Permission::ALL },
    BuiltinRole {
        name: "commander",
        zh: "指挥部工作人员",
        en: "Command office staff",
        permissions: &[
            UnitsRead,
            UnitsWrite,
            UsersRead,
            UsersWrite,
            AuditRead,
            PolicyRead,
            PolicyWrite,
            GridsWrite,
            PersonalReveal,
            TripsRead,
            TripsReport,
            TripsCheckIn,
            TripsHandle,
            AlertsHandle,
            RiskAreasWrite,
            WhitelistRead,
            WhitelistWrite,
            TestingRead,
            TestingSample,
            TestingResult,
            TestingManage,
            PersonsRead,
            PersonsWrite,
            VenuesWrite,
            VenuesScan,
            ExposureSearch,
        ],
    },
    BuiltinRole {
        name: "leader",
        zh: "县领导",
        en: "County leader",
        permissions: &[UnitsRead, UsersRead, AuditRead, PolicyRead, TripsRead, WhitelistRead, PersonsRead, TestingRead],
    },
    BuiltinRole {
        name: "township_staff",
        zh: "乡镇工作人员",
        en: "Township staff",
        permissions: &[
            UnitsRead,
            UsersRead,
            GridsWrite,
            PolicyRead,
            PersonalReveal,
            TripsRead,
            TripsHandle,
            AlertsHandle,
            PersonsRead,
            PersonsWrite,
            TestingRead,
            TestingManage,
            VenuesWrite,
            ExposureSearch,
        ],
    },
    BuiltinRole { name: "grid_member", zh: "网格员", en: "Grid member", permissions: &[UnitsRead, PolicyRead, PersonsRead, PersonsWrite] },
    BuiltinRole {
        name: "checkpoint_staff",
        zh: "卡口工作人员",
        en: "Checkpoint staff",
        permissions: &[UnitsRead, PolicyRead, TripsRead, TripsCheckIn, TripsHandle, AlertsHandle, WhitelistRead, TestingRead, TestingSample],
    },
    BuiltinRole { name: "escort", zh: "接返专员", en: "Escort", permissions: &[UnitsRead, TripsRead, TripsHandle, AlertsHandle] },
    BuiltinRole {
        name: "site_staff",
        zh: "服务场地工作人员",
        en: "Truck service site staff",
        permissions: &[UnitsRead, TripsRead, TripsHandle, AlertsHandle],
    },
    BuiltinRole {
        name: "enterprise",
        zh: "企业联络员",
        en: "Enterprise liaison",
        permissions: &[UnitsRead, TripsRead, TripsReport, TripsHandle, AlertsHandle],
    },
    BuiltinRole {
        name: "sampler",
        zh: "采样人员",
        en: "Sampling staff",
        permissions: &[UnitsRead, PersonsRead, PersonsWrite, TestingRead, TestingSample, AlertsHandle],
    },
    BuiltinRole { name: "lab_staff", zh: "检测机构人员", en: "Lab staff", permissions: &[UnitsRead, TestingRead, TestingResult, AlertsHandle] },
    BuiltinRole { name: "school_staff", zh: "学校防疫专员", en: "School health officer", permissions: &[UnitsRead] },
    BuiltinRole { name: "venue_staff", zh: "场所管理人员", en: "Venue manager", permissions: &[UnitsRead, VenuesScan] },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_round_trip_and_skip_unknown() {
        let p = Permissions::of(&[AuditRead, UnitsRead]);
        assert_eq!(p.to_db(), "units.read,audit.read");
        assert_eq!(Permissions::from_db("audit.read,units.read,no.such"), p);
        assert!(Permissions::all().covers(&p));
        assert!(!p.covers(&Permissions::all()));
        assert_eq!(Permissions::parse_list("p", &["x.y".into()]).unwrap_err().code, "permission_unknown");
    }
}
