//! Units: the parties that answer for things. Each sits in a jurisdiction (a division code)
//! and has a supervising unit, which is the escalation path.

use serde::{Deserialize, Serialize};

macro_rules! unit_kinds {
    ($($v:ident = $s:literal, $zh:literal, $en:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum UnitKind { $($v),* }

        impl UnitKind {
            pub const ALL: &[UnitKind] = &[$(UnitKind::$v),*];
            pub fn as_str(self) -> &'static str { match self { $(UnitKind::$v => $s),* } }
            pub fn parse(s: &str) -> Option<Self> { match s { $($s => Some(UnitKind::$v),)* _ => None } }
            pub fn label(self, zh: bool) -> &'static str { match self { $(UnitKind::$v => if zh { $zh } else { $en }),* } }
        }
    };
}

unit_kinds! {
    CommandOffice = "command_office", "疫情防控指挥部办公室", "Command office";
    TaskForce = "task_force", "工作专班", "Task force";
    Department = "department", "部门", "Department";
    Township = "township", "乡镇(街道)", "Township";
    Village = "village", "村(社区)", "Village";
    Checkpoint = "checkpoint", "卡口", "Checkpoint";
    TruckServiceSite = "truck_service_site", "货车专用服务场地", "Truck service site";
    CargoOwner = "cargo_owner", "货主企业", "Cargo owner";
    LogisticsPark = "logistics_park", "物流园区", "Logistics park";
    School = "school", "学校", "School";
    KeyVenue = "key_venue", "重点场所", "Key venue";
    Lab = "lab", "检测机构", "Lab";
    SamplingTeam = "sampling_team", "采样队", "Sampling team";
    QuarantineHotel = "quarantine_hotel", "集中隔离点", "Quarantine hotel";
}
