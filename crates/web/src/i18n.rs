//! Chinese by default, English switchable. UI strings live here, keyed; a test checks
//! that every key has both languages and every template key exists.

use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    pub fn zh(self) -> bool {
        self == Lang::Zh
    }
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }
    pub fn html(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "zh" | "zh-CN" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }
    /// From an Accept-Language header: English only if it is preferred over Chinese.
    pub fn from_accept(h: &str) -> Lang {
        let h = h.to_ascii_lowercase();
        match (h.find("en"), h.find("zh")) {
            (Some(e), Some(z)) if e < z => Lang::En,
            (Some(_), None) => Lang::En,
            _ => Lang::Zh,
        }
    }
    pub fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        if self.zh() { zh } else { en }
    }
    /// A UI string by key; an unknown key shows itself (and fails the key test).
    pub fn t(self, key: &str) -> &'static str {
        match strings().get(key) {
            Some((z, e)) => self.pick(z, e),
            None => "??",
        }
    }
}

pub const STRINGS: &[(&str, &str, &str)] = &[
    ("app.title", "闭环接力 · 疫情防控指挥平台", "Baton · Outbreak control operations"),
    ("app.short", "闭环接力", "Baton"),
    ("nav.home", "首页", "Home"),
    ("nav.units", "单位", "Units"),
    ("nav.users", "用户", "Users"),
    ("nav.roles", "角色", "Roles"),
    ("nav.tokens", "接口令牌", "API tokens"),
    ("nav.audit", "审计日志", "Audit log"),
    ("nav.policy", "防控策略", "Policy"),
    ("nav.grids", "网格", "Grids"),
    ("nav.divisions", "行政区划", "Divisions"),
    ("nav.logout", "退出", "Sign out"),
    ("nav.menu", "菜单", "Menu"),
    ("nav.admin", "管理", "Administration"),
    ("lang.switch", "English", "中文"),
    ("login.title", "登录", "Sign in"),
    ("login.username", "用户名", "Username"),
    ("login.password", "密码", "Password"),
    ("login.submit", "登录", "Sign in"),
    ("home.welcome", "您好，", "Welcome, "),
    ("home.role", "角色", "Role"),
    ("home.unit", "单位", "Unit"),
    ("home.scope", "辖区", "Jurisdiction"),
    ("home.tasks", "您的工作", "Your work"),
    ("home.duty", "职责", "Your duty"),
    ("home.policy", "现行策略", "Policy in force"),
    ("home.scope_unit", "仅本单位", "own unit only"),
    ("common.save", "保存", "Save"),
    ("common.create", "新建", "Create"),
    ("common.edit", "编辑", "Edit"),
    ("common.search", "查询", "Search"),
    ("common.name", "名称", "Name"),
    ("common.kind", "类型", "Kind"),
    ("common.division", "行政区划", "Division"),
    ("common.actions", "操作", "Actions"),
    ("common.yes", "是", "Yes"),
    ("common.no", "否", "No"),
    ("common.none", "无", "None"),
    ("common.back", "返回", "Back"),
    ("common.active", "启用", "Active"),
    ("common.disabled", "已停用", "Disabled"),
    ("common.revoke", "吊销", "Revoke"),
    ("common.reveal", "显示完整信息", "Reveal"),
    ("common.time", "时间", "Time"),
    ("common.empty", "暂无记录", "Nothing here yet"),
    ("common.fix_errors", "请修正标出的字段", "Please correct the marked fields"),
    ("common.saved", "已保存", "Saved"),
    ("common.more", "更早的记录", "Older entries"),
    ("unit.supervisor", "上级单位", "Supervising unit"),
    ("unit.address", "地址", "Address"),
    ("user.username", "用户名", "Username"),
    ("user.display_name", "姓名", "Name"),
    ("user.unit", "所属单位", "Unit"),
    ("user.role", "角色", "Role"),
    ("user.scope_kind", "数据范围", "Scope"),
    ("user.scope_code", "辖区代码", "Jurisdiction code"),
    ("user.scope.division", "行政区划及下级", "Division and below"),
    ("user.scope.unit", "仅本单位", "Own unit only"),
    ("user.password", "初始密码", "Initial password"),
    ("user.new_password", "新密码", "New password"),
    ("user.reset_password", "重置密码", "Reset password"),
    ("user.phone", "手机号", "Phone"),
    ("user.id_number", "身份证号", "ID number"),
    ("user.status", "状态", "Status"),
    ("user.revoke_sessions", "强制下线", "Sign out everywhere"),
    ("role.permissions", "权限", "Permissions"),
    ("role.code", "角色代码", "Role code"),
    ("role.label_zh", "中文名称", "Chinese name"),
    ("role.label_en", "英文名称", "English name"),
    ("role.builtin", "内置", "Built-in"),
    ("token.secret_once", "令牌只显示这一次，请立即保存：", "This token is shown only once; store it now:"),
    ("token.prefix", "前缀", "Prefix"),
    ("token.expires", "到期", "Expires"),
    ("token.expires_days", "有效天数(留空为长期)", "Valid for days (blank: until revoked)"),
    ("token.last_used", "最近使用", "Last used"),
    ("token.revoked", "已吊销", "Revoked"),
    ("audit.actor", "操作人", "Actor"),
    ("audit.action", "动作", "Action"),
    ("audit.object", "对象", "Object"),
    ("audit.request", "请求号", "Request"),
    ("audit.detail", "详情", "Detail"),
    ("audit.from", "起", "From"),
    ("audit.to", "止", "To"),
    ("policy.version", "版本", "Version"),
    ("policy.effective_from", "生效时间", "Effective from"),
    ("policy.note", "说明", "Note"),
    ("policy.params", "参数", "Parameters"),
    ("policy.new", "新建策略版本", "New policy version"),
    ("policy.in_force", "现行", "In force"),
    ("nav.whitelist", "白名单", "Whitelist"),
    ("whitelist.search", "名称、车牌或信用代码", "Name, plate or credit code"),
    ("whitelist.tier", "层级", "Tier"),
    ("whitelist.subject", "对象", "Subject"),
    ("whitelist.name", "名称/姓名", "Name"),
    ("whitelist.validity", "有效期", "Validity"),
    ("whitelist.valid_from", "有效期起", "Valid from"),
    ("whitelist.valid_until", "有效期止", "Valid until"),
    ("whitelist.credit_code", "统一社会信用代码", "Unified social credit code"),
    ("whitelist.plate", "车牌号", "Plate"),
    ("whitelist.export", "导出 xlsx(个人信息脱敏)", "Export xlsx (personal data masked)"),
    ("whitelist.export_reveal", "导出完整信息(记入审计)", "Export in full (audited)"),
    (
        "whitelist.import_hint",
        "批量导入：以 xlsx 文件调用 POST /api/v1/whitelist/import(列：类型、层级、名称/姓名、统一社会信用代码、车牌号、身份证号、手机号、有效期起、有效期止、备注)；任一行有误则整批不写入。",
        "Bulk import: send an xlsx file to POST /api/v1/whitelist/import (columns kind, tier, name, credit_code, plate, id_number, phone, valid_from, valid_until, note); if any row is bad nothing is written.",
    ),
    ("whitelist.history", "变更记录", "History"),
    ("whitelist.fraud_flag", "造假", "fraud"),
    ("whitelist.counts", "卡口可用", "counts at check-in"),
    ("whitelist.new", "新增白名单", "Add to the whitelist"),
    ("whitelist.review_note", "新增条目须经审核通过后才在卡口生效。", "A new entry counts at checkpoints only once approved in review."),
    ("whitelist.reason", "原因", "Reason"),
    ("whitelist.created_by", "创建", "Created"),
    ("whitelist.review", "审核", "Review"),
    ("whitelist.decision", "审核结论", "Decision"),
    ("whitelist.approve", "通过", "Approve"),
    ("whitelist.reject", "驳回", "Reject"),
    ("whitelist.change_status", "变更状态", "Change status"),
    ("whitelist.flag_fraud", "标记造假", "Flag as fraud"),
    ("whitelist.clear_fraud", "解除造假标记", "Clear the fraud flag"),
    ("whitelist.fraud_note", "标记造假会立即暂停该条目。", "Flagging as fraud suspends the entry at once."),
    ("grid.village", "村(社区)", "Village"),
    ("grid.member", "网格员", "Grid member"),
    ("grid.code", "网格编码", "Grid code"),
    ("nav.risk_areas", "风险地区", "Risk areas"),
    ("risk.level", "风险等级", "Level"),
    ("risk.place", "具体地点", "Named place"),
    ("risk.from", "开始时间", "From"),
    ("risk.to", "解除时间", "Until"),
    ("risk.until_lifted", "至解除", "until lifted"),
    ("risk.current", "现行", "current"),
    ("risk.recorded", "记录时间", "Recorded"),
    ("risk.superseded", "被替代时间", "Superseded"),
    ("risk.source", "来源", "Source"),
    ("risk.new", "新增或修改风险地区", "Add or change a risk area"),
    (
        "risk.edit_note",
        "同一区划、同一地点再次保存即为修改：旧版本保留在历史中。",
        "Saving the same division and place again changes it: the old version stays in the history.",
    ),
    ("risk.import", "导入风险地区名单", "Import a risk-area list"),
    (
        "risk.import_note",
        "粘贴 CSV(列：division, place, level, from, to)或 JSON 对象数组；任一行有误则整批不写入。xlsx 文件请用接口 POST /api/v1/risk-areas/import 上传。",
        "Paste CSV (columns division, place, level, from, to) or a JSON array of objects; if any row is bad nothing is written. Send xlsx files to POST /api/v1/risk-areas/import.",
    ),
    ("risk.import_failed", "名单有误，未写入任何记录。请修正以下各行：", "The list has errors and nothing was written. Fix these rows:"),
    ("risk.format", "格式", "Format"),
    ("risk.content", "名单内容", "List"),
    ("risk.replace", "以本名单替换全部现行地区", "Replace every current area with this list"),
    ("risk.lift", "解除风险地区", "Lift a risk area"),
    ("risk.lift_at", "解除时间", "Lifted at"),
    ("risk.at", "查看时间", "As at"),
    ("risk.history", "风险地区历史", "Risk-area history"),
    ("risk.where", "位置", "Where"),
    ("risk.code", "错误代码", "Code"),
    ("risk.reason", "原因", "Reason"),
    ("division.lookup", "按代码或名称查找", "Find by code or name"),
    ("division.children", "下级区划", "Divisions below"),
    ("nav.trips", "货车行程", "Truck trips"),
    ("nav.alerts", "告警", "Alerts"),
    ("trip.plate", "车牌号", "Plate"),
    ("trip.trailer", "挂车号", "Trailer plate"),
    ("trip.state", "状态", "State"),
    ("trip.class", "管控类别", "Control class"),
    ("trip.reasons", "分类依据", "Why this class"),
    ("trip.custodian", "当前责任单位", "Answerable now"),
    ("trip.destination", "目的地", "Destination"),
    ("trip.deadline", "下一环节时限", "Next deadline"),
    ("trip.closed", "已闭环", "Closed"),
    ("trip.pending", "待接收交接", "Pending handoff"),
    ("trip.accept_by", "须在此前接收", "accept by"),
    ("trip.landing_tube", "落地核酸采样管", "Landing test tube"),
    ("trip.crew", "司乘人员", "Crew"),
    ("trip.crew_name", "司机姓名", "Driver's name"),
    ("trip.chain", "接力", "Custody"),
    ("trip.now", "至今", "now"),
    ("trip.mine", "范围", "Which"),
    ("trip.mine_yes", "本单位经手", "Ours"),
    ("trip.mine_no", "辖区全部", "All in scope"),
    ("trip.open", "进行中", "Open"),
    ("trip.open_yes", "未闭环", "Open"),
    ("trip.open_no", "已闭环", "Closed"),
    ("trip.check_in", "卡口登记", "Check in"),
    ("trip.report", "货车报备", "Pre-report a truck"),
    ("trip.eta", "预计到达目的地", "Expected at destination"),
    ("trip.expected_at", "预计到达卡口", "Expected at the checkpoint"),
    ("trip.health_code", "健康码", "Health code"),
    ("trip.test_taken_at", "核酸采样时间", "Test taken at"),
    ("trip.risk", "其他方式查得的风险地区旅居", "Risk-area stay found otherwise"),
    ("trip.itinerary", "7天内行程", "Itinerary, last 7 days"),
    ("trip.antigen_positive", "抗原阳性", "Positive antigen"),
    ("trip.accept", "确认接收", "Accept"),
    ("trip.reject", "拒收", "Reject"),
    ("trip.withdraw", "撤回交接", "Withdraw the handoff"),
    ("trip.arrived", "确认到达", "Confirm arrival"),
    ("trip.departed", "确认离开", "Confirm departure"),
    ("trip.exit_scan", "出口核销", "Exit scan"),
    ("trip.handoff", "发起交接", "Hand over"),
    ("trip.handoff_to", "交给", "To"),
    ("trip.purpose", "交接事由", "Purpose"),
    ("alert.kind", "断链类型", "Broken link"),
    ("alert.due", "时限", "Due"),
    ("alert.recipient", "当前告警对象", "Alerted now"),
    ("alert.status", "处置", "Handling"),
    ("alert.level0", "责任单位", "custodian"),
    ("alert.level1", "上级单位", "supervisor"),
    ("alert.level2", "指挥部", "command office"),
    ("alert.new", "待处置", "New"),
    ("alert.open", "待处置", "Open"),
    ("alert.acknowledged", "已签收", "Acknowledged"),
    ("alert.resolved", "已处置", "Resolved"),
    ("alert.handle", "处置告警", "Handle an alert"),
    ("alert.acknowledge", "签收(停止上报)", "Acknowledge (stops escalation)"),
    ("alert.resolve", "处置完毕", "Resolve"),
    ("alert.note", "处置说明", "Note"),
    ("code.title", "行程码", "Trip codes"),
    ("code.scan_hint", "请司乘人员用自己的手机扫码打开，无需注册。", "Crew members scan with their own phones; no account needed."),
    ("code.instructions", "须知", "What to do"),
    (
        "code.signed",
        "本码由县疫情防控指挥部签发，卡口与场所可离线核验。",
        "Signed by the county command office; checkpoints and venues can verify it offline.",
    ),
    // Freight loop, second part: service sites, responsibility ledger, batch pre-report, dashboard.
    ("nav.sites", "服务场地", "Service sites"),
    ("site.capacity", "容量(辆)", "Capacity (trucks)"),
    ("site.not_set", "未设置(不限)", "not set (no limit)"),
    ("site.present", "在场车辆", "Trucks present"),
    ("site.waiting", "待出结果", "Waiting for results"),
    ("site.check_in", "车辆入场", "Check a truck in"),
    ("site.check_out", "车辆离场", "Check a truck out"),
    ("site.result", "检测结果已出", "Result received"),
    ("site.over_capacity", "超容量接收", "Admit over capacity"),
    ("site.waiting_result", "在此等待检测结果", "Waits here for a test result"),
    ("site.arrived", "入场", "Arrived"),
    ("site.left", "离场", "Left"),
    ("site.stays", "服务场地停留", "Service-site stays"),
    ("site.full", "已超容量", "Over capacity"),
    ("site.name", "场地", "Site"),
    ("site.set_capacity", "设置容量", "Set capacity"),
    ("ledger.title", "责任台账", "Responsibility ledger"),
    ("ledger.party", "责任方", "Party"),
    ("ledger.duty", "职责", "Duty"),
    ("ledger.confirmed", "已确认", "Confirmed"),
    ("ledger.unconfirmed", "未确认", "Not confirmed"),
    ("ledger.confirm", "确认履责", "Confirm our duty"),
    ("ledger.confirm_driver", "我已知晓并承诺", "I understand and commit"),
    ("ledger.driver_duty", "司机责任确认", "Driver's commitment"),
    ("ledger.breaches", "断链与当时未确认的责任方", "Breaches and who had not confirmed then"),
    ("ledger.all_confirmed", "当时均已确认", "all had confirmed"),
    ("import.title", "批量报备", "Batch pre-report"),
    ("import.file", "文件(xlsx 或 CSV)", "File (xlsx or CSV)"),
    ("import.template", "下载模板", "Download the template"),
    ("import.rows", "逐行错误(未导入任何一行)", "Errors by row (no row was imported)"),
    ("import.done", "已导入", "Imported"),
    ("import.submit", "上传并导入", "Upload and import"),
    ("stats.title", "货运看板", "Freight dashboard"),
    ("stats.by_state", "在途行程 · 按状态", "Open trips by state"),
    ("stats.by_class", "在途行程 · 按管控类别", "Open trips by class"),
    ("stats.by_checkpoint", "在途行程 · 按卡口", "Open trips by checkpoint"),
    ("stats.by_township", "在途行程 · 按乡镇", "Open trips by township"),
    ("stats.breaches_by_kind", "断链 · 按类型", "Breaches by kind"),
    ("stats.breaches_by_unit", "断链 · 按责任单位", "Breaches by unit"),
    ("stats.handoffs", "交接确认用时", "Handoff acceptance times"),
    ("stats.count", "数量", "Count"),
    ("stats.export", "导出 xlsx", "Export xlsx"),
    ("stats.avg_minutes", "平均(分钟)", "Average (min)"),
    ("stats.max_minutes", "最长(分钟)", "Longest (min)"),
    ("error.title", "出错了", "Something went wrong"),
    ("error.not_found", "页面不存在，或不在您的辖区内", "Not found, or outside your jurisdiction"),
    // Mass-screening rounds and pool-size planning.
    ("nav.rounds", "全员筛查", "Mass screening"),
    ("rounds.lead", "按区域组织的筛查轮次：应检、已采、已出结果，逐村实时统计，未采人员可导出。", "Screening rounds by area: expected, sampled and resulted, village by village, live; those missing export to xlsx."),
    ("rounds.new", "新建筛查轮次", "New screening round"),
    ("rounds.area", "筛查范围", "Area"),
    ("rounds.window", "时间", "Window"),
    ("rounds.starts_at", "开始时间", "Starts"),
    ("rounds.due_at", "截止时间", "Due"),
    ("rounds.priority", "优先级", "Priority"),
    ("rounds.upcoming", "未开始", "Upcoming"),
    ("rounds.open", "进行中", "Open"),
    ("rounds.closed", "已结束", "Closed"),
    ("rounds.as_of", "统计时间", "As of"),
    ("rounds.place", "村(社区)", "Village"),
    ("rounds.expected", "应检", "Expected"),
    ("rounds.sampled", "已采", "Sampled"),
    ("rounds.resulted", "已出结果", "Resulted"),
    ("rounds.positive", "阳性管涉及", "In a positive tube"),
    ("rounds.missing", "未采", "Missing"),
    ("rounds.coverage", "覆盖率", "Coverage"),
    ("rounds.by_township", "按乡镇", "By township"),
    ("rounds.by_village", "按村(社区)", "By village"),
    ("rounds.export_missing", "导出未采人员 xlsx(个人信息脱敏)", "Export those missing as xlsx (personal data masked)"),
    ("rounds.export_missing_short", "未采名单", "Missing list"),
    ("rounds.export_reveal", "导出完整信息(记入审计)", "Export in full (audited)"),
    ("rounds.plan", "混采规格建议", "Suggested pool size"),
    ("rounds.plan_note", "按近期检测阳性率(按人计)和 Dorfman(1943)公式估算每人所需检测次数：1/k + 1 − (1−p)^k。", "From recent positivity per person tested, by Dorfman (1943): tests per person = 1/k + 1 − (1−p)^k."),
    ("rounds.tested", "已检人数", "Persons tested"),
    ("rounds.positive_confirmed", "单管确认阳性", "Confirmed positive (single tube)"),
    ("rounds.in_positive_pools", "阳性混管涉及人数", "Members of positive pools"),
    ("rounds.positivity", "阳性率", "Positivity"),
    ("rounds.prevalence_given", "按假设阳性率", "Planned with prevalence"),
    ("rounds.suggested", "建议规格(策略允许)", "Suggested (allowed by policy)"),
    ("rounds.best", "理论最优规格", "Best of all sizes"),
    ("rounds.tests_per_person", "次/人", "tests per person"),
    ("rounds.no_results", "近期无检测结果，无法估算", "No recent results to estimate from"),
    ("rounds.to_sample", "尚待采样", "Still to sample"),
    ("rounds.tubes_needed", "约需采样管", "Tubes needed"),
    ("rounds.tests_expected", "预计检测次数", "expected tests"),
    ("rounds.pool_size", "混采规格", "Pool size"),
    ("rounds.single", "单管", "Single tube"),
    ("rounds.what_if", "换个假设", "What if"),
    ("rounds.days", "统计天数", "Days of results"),
    ("rounds.prevalence_percent", "假设阳性率(%)", "Assumed prevalence (%)"),
];

fn strings() -> &'static HashMap<&'static str, (&'static str, &'static str)> {
    static MAP: OnceLock<HashMap<&'static str, (&'static str, &'static str)>> = OnceLock::new();
    MAP.get_or_init(|| STRINGS.iter().map(|(k, z, e)| (*k, (*z, *e))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_unique_and_translated() {
        let mut seen = std::collections::HashSet::new();
        for (k, z, e) in STRINGS {
            assert!(seen.insert(k), "duplicate key {k}");
            assert!(!z.is_empty() && !e.is_empty(), "{k} lacks a language");
        }
    }

    #[test]
    fn every_key_used_in_templates_exists() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for part in text.split("t(\"").skip(1) {
                let key = &part[..part.find('"').unwrap()];
                assert!(strings().contains_key(key), "template uses unknown key {key}");
            }
        }
    }

    #[test]
    fn accept_language() {
        assert_eq!(Lang::from_accept("en-US,en;q=0.9"), Lang::En);
        assert_eq!(Lang::from_accept("zh-CN,zh;q=0.9,en;q=0.8"), Lang::Zh);
        assert_eq!(Lang::from_accept(""), Lang::Zh);
    }
}
