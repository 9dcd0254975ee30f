//! Sampling and testing pages, phone first and built for barcode scanners (a scanner types the
//! code and presses Enter): the sampling desk opens a tube by barcode, takes persons one after
//! another by document number, seals and packs tubes into a batch for a lab; the lab receives
//! batches by scanning what is in the box, posts results one by one or as its LIS file, and
//! watches its figures; township staff and the command office see who is pending re-check.
//! Every page is plain server-rendered HTML: the field to scan next carries `autofocus`.

use crate::AppState;
use crate::i18n::Lang;
use crate::ui::{Cell, Filter, FormData, Shell, UiResult, Viewer, cell, code, form_of, link, local, query_map, render};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use baton_domain::Error;
use baton_domain::division::Divisions;
use baton_domain::person::DocumentKind;
use baton_domain::role::Permission;
use baton_domain::testing::{Outcome, PersonStatus, Priority, Purpose, TubeState};
use baton_store::page::PageQuery;
use baton_store::sheet::Format;
use baton_store::testing::{self, BatchInput, MemberInput, ReceiptInput, ResultInput, TubeFilter, TubeInput};
use baton_store::{Principal, policy, testing_import, testing_stats, units};
use chrono::Duration;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/testing/sample", get(desk_page).post(open_submit))
        .route("/testing/ship", post(ship_submit))
        .route("/testing/tubes/{id}", get(tube_page))
        .route("/testing/tubes/{id}/add", post(add_submit))
        .route("/testing/tubes/{id}/seal", post(seal_submit))
        .route("/testing/batches/{id}", get(batch_page))
        .route("/testing/batches/{id}/receive", post(receive_submit))
        .route("/testing/lab", get(lab_page).post(result_submit))
        .route("/testing/lab/import", get(import_page).post(import_submit).layer(DefaultBodyLimit::max(crate::UPLOAD_MAX_BYTES)))
        .route("/testing/dashboard", get(dashboard_page))
        .route("/testing/rechecks", get(rechecks_page))
}

// ---------- page pieces ----------

/// A form field for scanning: the one to fill next gets the focus.
pub struct TField {
    pub name: &'static str,
    pub label: String,
    /// text, select, checkboxes, textarea, file or hidden.
    pub kind: &'static str,
    pub value: String,
    pub options: Vec<(String, String)>,
    pub checked: Vec<String>,
    pub error: Option<String>,
    pub hint: Option<String>,
    pub inputmode: &'static str,
    pub autofocus: bool,
}

impl TField {
    fn new(name: &'static str, label: &str, kind: &'static str, value: impl Into<String>) -> Self {
        TField {
            name,
            label: label.to_string(),
            kind,
            value: value.into(),
            options: Vec::new(),
            checked: Vec::new(),
            error: None,
            hint: None,
            inputmode: "",
            autofocus: false,
        }
    }
    fn choice(name: &'static str, label: &str, kind: &'static str, value: impl Into<String>, options: Vec<(String, String)>) -> Self {
        let value = value.into();
        TField { checked: vec![value.clone()], options, ..TField::new(name, label, kind, value) }
    }
    fn hint(mut self, h: &str) -> Self {
        self.hint = Some(h.to_string());
        self
    }
    fn focus(mut self) -> Self {
        self.autofocus = true;
        self
    }
    fn mode(mut self, m: &'static str) -> Self {
        self.inputmode = m;
        self
    }
}

pub struct TForm {
    pub id: &'static str,
    pub title: String,
    pub action: String,
    pub fields: Vec<TField>,
    pub submit: String,
    pub note: Option<String>,
    pub multipart: bool,
    pub confirm: Option<String>,
}

impl TForm {
    fn new(id: &'static str, title: &str, action: impl Into<String>, fields: Vec<TField>, submit: &str) -> Self {
        TForm { id, title: title.to_string(), action: action.into(), fields, submit: submit.to_string(), note: None, multipart: false, confirm: None }
    }
}

pub struct Table {
    pub id: &'static str,
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// A form or a table, in page order.
pub struct Section {
    pub form: Option<TForm>,
    pub table: Option<Table>,
}

fn form(f: TForm) -> Section {
    Section { form: Some(f), table: None }
}

fn table(id: &'static str, title: &str, columns: Vec<String>, rows: Vec<Vec<Cell>>) -> Section {
    Section { form: None, table: Some(Table { id, title: title.to_string(), columns, rows }) }
}

#[derive(askama::Template)]
#[template(path = "testing_page.html")]
struct Page {
    shell: Shell,
    id: &'static str,
    state: String,
    lead: Option<String>,
    /// Key (the element id is `fact-<key>`), label, value.
    facts: Vec<(&'static str, String, String)>,
    links: Vec<(String, String)>,
    filters: Vec<Filter>,
    sections: Vec<Section>,
}

impl Page {
    fn new(shell: Shell, id: &'static str) -> Self {
        Page { shell, id, state: String::new(), lead: None, facts: vec![], links: vec![], filters: vec![], sections: vec![] }
    }
}

fn cols(lang: Lang, keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| lang.t(k).to_string()).collect()
}

/// Put each field error on its field (several on one field are joined) and give the first
/// field in error the focus; errors for no field on the page go to the banner.
fn attach(shell: &mut Shell, forms: &mut [&mut TForm], e: &Error) {
    let lang = shell.lang;
    shell.error = Some(match e {
        Error::Invalid(_) => lang.t("common.fix_errors").to_string(),
        e => e.message(lang.zh()),
    });
    let mut extra = Vec::new();
    for fe in e.fields() {
        let msg = lang.pick(&fe.zh, &fe.en).to_string();
        match forms.iter_mut().flat_map(|f| f.fields.iter_mut()).find(|f| f.name == fe.field && f.kind != "hidden") {
            Some(f) => f.error = Some(f.error.take().map(|x| format!("{x}；{msg}")).unwrap_or(msg)),
            None => extra.push(format!("{}: {msg}", fe.field)),
        }
    }
    if !extra.is_empty() {
        shell.error = Some(format!("{} — {}", shell.error.clone().unwrap_or_default(), extra.join("；")));
    }
    let first = forms.iter().flat_map(|f| f.fields.iter()).position(|f| f.error.is_some());
    if let Some(i) = first {
        for (j, f) in forms.iter_mut().flat_map(|f| f.fields.iter_mut()).enumerate() {
            f.autofocus = i == j;
        }
    }
}

/// Rename field errors (`members[0].name` → `name`); an error about the n-th item of a list
/// (`barcodes[3]`) names the item, since the form shows the list as one field.
fn rename(e: Error, to: impl Fn(&str) -> Option<String>, items: &[String]) -> Error {
    match e {
        Error::Invalid(list) => Error::Invalid(
            list.into_iter()
                .map(|mut fe| {
                    let item = fe.field.split_once('[').and_then(|(_, r)| r.split(']').next()).and_then(|n| n.parse::<usize>().ok());
                    if let (Some(v), false) = (item.and_then(|i| items.get(i)), items.is_empty()) {
                        fe.zh = format!("{v}：{}", fe.zh);
                        fe.en = format!("{v}: {}", fe.en);
                    }
                    match to(&fe.field) {
                        Some(n) => fe.at(n),
                        None => fe,
                    }
                })
                .collect(),
        ),
        e => e,
    }
}

/// The list part of a field name: `barcodes[3]` → `barcodes`, `rows[0].ct` → `ct`.
fn base_name(field: &str) -> Option<String> {
    match field.split_once('[') {
        Some((head, rest)) => match rest.split_once("].") {
            Some((_, tail)) => Some(tail.to_string()),
            None => Some(head.to_string()),
        },
        None => None,
    }
}

fn priority_label(s: &str, lang: Lang) -> String {
    Priority::parse(s).map(|p| p.label(lang.zh()).to_string()).unwrap_or_else(|| s.to_string())
}

fn state_label(s: &str, lang: Lang) -> String {
    TubeState::parse(s).map(|p| p.label(lang.zh()).to_string()).unwrap_or_else(|| s.to_string())
}

fn outcome_label(s: &str, lang: Lang) -> String {
    Outcome::parse(s).map(|p| p.label(lang.zh()).to_string()).unwrap_or_else(|| s.to_string())
}

fn pool_label(k: i64, lang: Lang) -> String {
    if k == 1 { lang.t("testing.single").to_string() } else { format!("{k}{}", lang.t("testing.in_one")) }
}

fn batch_state(s: &str, lang: Lang) -> String {
    lang.t(if s == "handed" { "testing.batch_handed" } else { "testing.batch_received" }).to_string()
}

fn opt_uuid(field: &'static str, s: &str) -> Result<Option<Uuid>, Error> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    Uuid::parse_str(t).map(Some).map_err(|_| Error::field(field, "invalid_choice", "请重新选择", "choose again"))
}

/// Scanned barcodes: one per line (a scanner's Enter), or separated by spaces or commas.
fn scanned(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, ',' | '，' | ';' | '；')).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

// ---------- the sampling desk ----------

/// What the desk's forms show: the last choices (kept across tubes) or what was submitted.
#[derive(Default)]
struct DeskVals {
    pool_size: String,
    priority: String,
    site_id: String,
    barcode: String,
    lab_id: String,
    /// Tubes ticked for the batch; None: all sealed tubes.
    barcodes: Option<Vec<String>>,
}

impl DeskVals {
    fn of(get: impl Fn(&str) -> String) -> Self {
        DeskVals {
            pool_size: get("pool_size"),
            priority: get("priority"),
            site_id: get("site_id"),
            barcode: get("barcode"),
            lab_id: get("lab_id"),
            barcodes: None,
        }
    }
    /// The desk's address keeping the choices for the next tube.
    fn href(&self, extra: &str) -> String {
        let q = serde_urlencoded::to_string([("pool_size", &self.pool_size), ("priority", &self.priority), ("site_id", &self.site_id)])
            .unwrap_or_default();
        format!("/testing/sample?{q}{extra}")
    }
}

async fn labs(s: &AppState, v: &Viewer) -> Result<Vec<(String, String)>, Error> {
    // Labs are named county-wide (their names are not personal data).
    let list = units::list(&s.store, &Principal::system(&v.who.request_id), &units::UnitFilter { kind: Some("lab".into()), q: None }).await?;
    Ok(list.into_iter().filter(|u| u.active).map(|u| (u.id.to_string(), u.name)).collect())
}

async fn desk_view(s: &AppState, v: &Viewer, vals: DeskVals, err: Option<Error>, flash: Option<String>) -> UiResult {
    v.who.require(Permission::TestingSample)?;
    let lang = v.lang;
    let me = v.who.unit_id;
    let rules = policy::current(&s.store, s.store.now()).await?.params.testing;
    let sizes: Vec<(String, String)> = rules.pool_sizes.iter().map(|k| (k.to_string(), pool_label(i64::from(*k), lang))).collect();
    let pool =
        if sizes.iter().any(|(k, _)| *k == vals.pool_size) { vals.pool_size.clone() } else { sizes.last().map(|x| x.0.clone()).unwrap_or_default() };
    let priorities = Priority::ALL.iter().map(|p| (p.as_str().to_string(), p.label(lang.zh()).to_string())).collect();
    let priority = if Priority::parse(&vals.priority).is_some() { vals.priority.clone() } else { Priority::Routine.as_str().to_string() };
    let mut sites = vec![(String::new(), lang.t("common.none").to_string())];
    sites.extend(testing::list_sites(&s.store, &v.who).await?.into_iter().filter(|x| Some(x.team_id) == me).map(|x| (x.id.to_string(), x.name)));
    let mut open_form = TForm::new(
        "open-form",
        lang.t("testing.open_tube"),
        "/testing/sample",
        vec![
            TField::choice("pool_size", lang.t("testing.pool_size"), "select", pool, sizes),
            TField::choice("priority", lang.t("testing.priority"), "select", priority, priorities),
            TField::choice("site_id", lang.t("testing.site"), "select", vals.site_id.clone(), sites),
            TField::new("barcode", lang.t("testing.barcode"), "text", vals.barcode.clone()).hint(lang.t("testing.barcode_hint")).focus(),
        ],
        lang.t("testing.open_tube"),
    );
    let mine = |state: &str| TubeFilter { state: Some(state.into()), mine: Some(true), ..Default::default() };
    let open = testing::list_tubes(&s.store, &v.who, &mine("open"), &PageQuery::largest()).await?.items;
    let sealed = testing::list_tubes(&s.store, &v.who, &mine("sealed"), &PageQuery::largest()).await?.items;
    let mut pack = if sealed.is_empty() {
        None
    } else {
        let mut tubes = TField::new("barcodes", lang.t("testing.sealed_tubes"), "checkboxes", "");
        tubes.options = sealed
            .iter()
            .map(|t| (t.barcode.clone(), format!("{} · {}/{} · {}", t.barcode, t.members, t.pool_size, priority_label(&t.priority, lang))))
            .collect();
        // Every sealed tube goes in the box unless the sampler unticks it.
        tubes.checked = vals.barcodes.clone().unwrap_or_else(|| sealed.iter().map(|t| t.barcode.clone()).collect());
        let lab = TField::choice("lab_id", lang.t("testing.lab"), "select", vals.lab_id.clone(), labs(s, v).await?);
        let mut f = TForm::new("pack-form", lang.t("testing.pack"), "/testing/ship", vec![tubes, lab], lang.t("testing.hand_over"));
        f.note = Some(lang.t("testing.pack_note").to_string());
        Some(f)
    };
    let mut shell = v.shell("nav.testing_sample");
    shell.flash = flash;
    let status = match &err {
        Some(e) => {
            let mut forms: Vec<&mut TForm> = vec![&mut open_form];
            if let Some(p) = pack.as_mut() {
                forms.push(p);
            }
            attach(&mut shell, &mut forms, e);
            crate::error::status_of(e)
        }
        None => StatusCode::OK,
    };
    let mut page = Page::new(shell, "desk");
    page.links = vec![("/testing/rechecks".into(), lang.t("nav.rechecks").into())];
    page.sections.push(form(open_form));
    let open_rows = open
        .iter()
        .map(|t| {
            vec![
                link(&t.barcode, format!("/testing/tubes/{}", t.id)),
                cell(format!("{} / {}", t.members, t.pool_size)),
                cell(priority_label(&t.priority, lang)),
                cell(local(t.sampled_at)),
            ]
        })
        .collect();
    page.sections.push(table(
        "open-tubes",
        lang.t("testing.open_tubes"),
        cols(lang, &["testing.barcode", "testing.fill", "testing.priority", "testing.sampled_at"]),
        open_rows,
    ));
    if let Some(p) = pack {
        page.sections.push(form(p));
    }
    let batches = testing::list_batches(&s.store, &v.who, &Default::default(), &PageQuery::largest()).await?.items;
    let batch_rows = batches
        .iter()
        .filter(|b| Some(b.team_id) == me)
        .take(20)
        .map(|b| {
            vec![
                link(&b.code, format!("/testing/batches/{}", b.id)),
                cell(&b.lab_name),
                cell(b.tubes.to_string()),
                cell(batch_state(&b.state, lang)),
                cell(local(b.handed_at)),
            ]
        })
        .collect();
    page.sections.push(table(
        "batches",
        lang.t("testing.batches"),
        cols(lang, &["testing.batch", "testing.lab", "testing.tubes", "testing.state", "testing.handed_at"]),
        batch_rows,
    ));
    Ok((status, render(&page)).into_response())
}

async fn desk_page(State(s): State<AppState>, v: Viewer, RawQuery(q): RawQuery) -> UiResult {
    let qm = query_map(&q);
    let vals = DeskVals::of(|k| qm.get(k).cloned().unwrap_or_default());
    // Back from a tube that filled up (or was sealed): say so, ready for the next barcode.
    let flash = match qm.get("sealed") {
        Some(b) => {
            let t = testing::find_tube(&s.store, &v.who, b).await?;
            Some(format!("{} {} {} / {}", t.barcode, v.lang.t("testing.sealed_flash"), t.members, t.pool_size))
        }
        None => None,
    };
    desk_view(&s, &v, vals, None, flash).await
}

async fn open_submit(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let vals = DeskVals::of(|k| f.get(k));
    let parsed = (|| -> Result<TubeInput, Error> {
        let pool_size =
            f.get("pool_size").trim().parse::<u32>().map_err(|_| Error::field("pool_size", "required", "请选择混采规格", "choose a pool size"))?;
        Ok(TubeInput {
            barcode: f.get("barcode"),
            pool_size,
            priority: Some(f.get("priority")),
            purpose: None,
            site_id: opt_uuid("site_id", &f.get("site_id"))?,
            round_id: None,
            trip_id: None,
            members: vec![],
        })
    })();
    match parsed {
        Ok(input) => match testing::open_tube(&s.store, &v.who, &input).await {
            Ok(t) => Ok(Redirect::to(&format!("/testing/tubes/{}", t.id)).into_response()),
            Err(e) if e.fields().iter().any(|f| f.code == "barcode_reused") => {
                // The barcode of one of the team's open tubes (scanned again, or Enter pressed
                // twice) takes the sampler back to that tube.
                match testing::find_tube(&s.store, &v.who, &input.barcode).await {
                    Ok(t) if Some(t.team_id) == v.who.unit_id && t.state == TubeState::Open => {
                        Ok(Redirect::to(&format!("/testing/tubes/{}", t.id)).into_response())
                    }
                    _ => desk_view(&s, &v, vals, Some(e), None).await,
                }
            }
            Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => desk_view(&s, &v, vals, Some(e), None).await,
            Err(e) => Err(e.into()),
        },
        Err(e) => desk_view(&s, &v, vals, Some(e), None).await,
    }
}

async fn ship_submit(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let picked = f.all("barcodes");
    let mut vals = DeskVals::of(|k| f.get(k));
    vals.barcodes = Some(picked.clone());
    let result = match Uuid::parse_str(f.get("lab_id").trim()) {
        Ok(lab_id) => testing::ship(&s.store, &v.who, &BatchInput { lab_id, barcodes: picked.clone() }).await,
        Err(_) => Err(Error::field("lab_id", "required", "请选择检测机构", "choose a lab")),
    };
    match result {
        Ok(b) => Ok(Redirect::to(&format!("/testing/batches/{}?saved=1", b.id)).into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => {
            let e = rename(e, base_name, &picked);
            desk_view(&s, &v, vals, Some(e), None).await
        }
        Err(e) => Err(e.into()),
    }
}

// ---------- one tube ----------

/// The add-person form's values after a refusal.
#[derive(Default)]
struct PersonVals {
    document_kind: String,
    document_number: String,
    name: String,
}

/// One tube; `added`: say who was put in last.
async fn tube_view(s: &AppState, v: &Viewer, id: Uuid, vals: PersonVals, err: Option<Error>, added: bool) -> UiResult {
    let lang = v.lang;
    let t = testing::get_tube(&s.store, &v.who, id).await?;
    let mut shell = v.shell("testing.tube");
    shell.title = format!("{} {}", lang.t("testing.tube"), t.barcode);
    if added {
        shell.flash =
            t.member_list.iter().max_by_key(|m| m.seq).map(|m| format!("{} {} ({} / {})", lang.t("testing.added"), m.name, t.members, t.pool_size));
    }
    let mut facts = vec![
        ("state", lang.t("testing.state").to_string(), t.state.label(lang.zh()).to_string()),
        ("fill", lang.t("testing.fill").to_string(), format!("{} / {}", t.members, t.pool_size)),
        ("pool", lang.t("testing.pool_size").to_string(), pool_label(i64::from(t.pool_size), lang)),
        ("priority", lang.t("testing.priority").to_string(), t.priority.label(lang.zh()).to_string()),
        ("purpose", lang.t("testing.purpose").to_string(), t.purpose.label(lang.zh()).to_string()),
        ("team", lang.t("testing.team").to_string(), t.team_name.clone()),
        ("sampled", lang.t("testing.sampled_at").to_string(), local(t.sampled_at)),
        (
            "due",
            lang.t("testing.due_at").to_string(),
            format!("{}{}", local(t.due_at), if t.overdue { format!(" · {}", lang.t("testing.overdue")) } else { String::new() }),
        ),
    ];
    if let Some(o) = t.outcome {
        let ct = Some(ct_text(t.ct, t.ct_orf1ab, t.ct_n)).filter(|c| !c.is_empty()).map(|c| format!(" · Ct {c}")).unwrap_or_default();
        facts.push(("outcome", lang.t("testing.outcome").to_string(), format!("{}{ct}", o.label(lang.zh()))));
    }
    let mut sections = Vec::new();
    let sampler = v.who.can(Permission::TestingSample) && v.who.unit_id == Some(t.team_id);
    if sampler && t.state == TubeState::Open {
        let kinds = DocumentKind::ALL.iter().map(|k| (k.as_str().to_string(), k.label(lang.zh()).to_string())).collect();
        let kind = if vals.document_kind.is_empty() { DocumentKind::IdCard.as_str().to_string() } else { vals.document_kind.clone() };
        let mut add = TForm::new(
            "add-form",
            lang.t("testing.add_person"),
            format!("/testing/tubes/{id}/add"),
            vec![
                TField::choice("document_kind", lang.t("testing.document_kind"), "select", kind, kinds),
                TField::new("document_number", lang.t("testing.document_number"), "text", vals.document_number.clone())
                    .hint(lang.t("testing.document_hint"))
                    .focus(),
                TField::new("name", lang.t("testing.name"), "text", vals.name.clone()).hint(lang.t("testing.name_hint")),
            ],
            lang.t("testing.add"),
        );
        let mut seal = TForm::new("seal-form", lang.t("testing.seal"), format!("/testing/tubes/{id}/seal"), vec![], lang.t("testing.seal"));
        seal.note = Some(lang.t("testing.seal_note").to_string());
        seal.confirm = Some(lang.t("testing.seal_confirm").to_string());
        if let Some(e) = &err {
            attach(&mut shell, &mut [&mut add, &mut seal], e);
        }
        sections.push(form(add));
        sections.push(form(seal));
    } else if let Some(e) = &err {
        attach(&mut shell, &mut [], e);
    }
    let members = t
        .member_list
        .iter()
        .map(|m| {
            vec![
                cell((m.seq + 1).to_string()),
                cell(&m.name),
                code(&m.document_masked),
                cell(m.status.map(|x| x.label(lang.zh()).to_string()).unwrap_or_default()),
            ]
        })
        .collect();
    sections.push(table(
        "members",
        lang.t("testing.members"),
        cols(lang, &["testing.seq", "testing.name", "testing.document_number", "testing.status"]),
        members,
    ));
    if !t.results.is_empty() {
        let rows = t
            .results
            .iter()
            .map(|r| {
                vec![
                    cell(r.outcome.label(lang.zh())),
                    cell(ct_text(r.ct, r.ct_orf1ab, r.ct_n)),
                    cell(local(r.recorded_at)),
                    cell(&r.source),
                    cell(if r.supersedes.is_some() { lang.t("testing.correction") } else { "" }),
                ]
            })
            .collect();
        sections.push(table(
            "results",
            lang.t("testing.results"),
            cols(lang, &["testing.outcome", "testing.ct", "common.time", "testing.source", "testing.note"]),
            rows,
        ));
    }
    let status = err.as_ref().map(crate::error::status_of).unwrap_or(StatusCode::OK);
    let mut page = Page::new(shell, "tube");
    page.state = t.state.as_str().to_string();
    page.facts = facts;
    if sampler {
        page.links.push(("/testing/sample".into(), lang.t("nav.testing_sample").into()));
    }
    if let Some(b) = t.batch_id {
        page.links.push((format!("/testing/batches/{b}"), lang.t("testing.batch").into()));
    }
    page.sections = sections;
    Ok((status, render(&page)).into_response())
}

async fn tube_page(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, RawQuery(q): RawQuery) -> UiResult {
    tube_view(&s, &v, id, PersonVals::default(), None, query_map(&q).contains_key("added")).await
}

/// After a tube fills up or is sealed, the desk is ready for the next barcode with the same choices.
fn back_to_desk(t: &testing::TubeView) -> UiResult {
    let vals = DeskVals {
        pool_size: t.pool_size.to_string(),
        priority: t.priority.as_str().to_string(),
        site_id: t.site_id.map(|x| x.to_string()).unwrap_or_default(),
        ..Default::default()
    };
    Ok(Redirect::to(&vals.href(&format!("&sealed={}", crate::ui::encode(&t.barcode)))).into_response())
}

async fn add_submit(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let vals = PersonVals { document_kind: f.get("document_kind"), document_number: f.get("document_number"), name: f.get("name") };
    let m = MemberInput {
        person_id: None,
        name: vals.name.clone(),
        document_kind: vals.document_kind.clone(),
        document_number: vals.document_number.clone(),
        phone: None,
        division: None,
    };
    match testing::add_members(&s.store, &v.who, id, &[m]).await {
        Ok(t) if t.state == TubeState::Sealed => back_to_desk(&t),
        Ok(_) => Ok(Redirect::to(&format!("/testing/tubes/{id}?added=1")).into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => {
            // `members[0].name` is the form's `name`; `members[0]` (already in the tube) its document.
            let e = rename(e, |f| base_name(f).map(|n| if n == "members" { "document_number".to_string() } else { n }), &[]);
            tube_view(&s, &v, id, vals, Some(e), false).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn seal_submit(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, body: Bytes) -> UiResult {
    form_of(&v, &body)?;
    match testing::seal(&s.store, &v.who, id).await {
        Ok(t) => back_to_desk(&t),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => tube_view(&s, &v, id, PersonVals::default(), Some(e), false).await,
        Err(e) => Err(e.into()),
    }
}

// ---------- one batch ----------

async fn batch_view(s: &AppState, v: &Viewer, id: Uuid, scanned_text: String, err: Option<Error>, flash: Option<String>) -> UiResult {
    let lang = v.lang;
    let b = testing::get_batch(&s.store, &v.who, id).await?;
    let mut shell = v.shell("testing.batch");
    shell.title = format!("{} {}", lang.t("testing.batch"), b.code);
    shell.flash = flash;
    let mut facts = vec![
        ("state", lang.t("testing.state").to_string(), batch_state(&b.state, lang)),
        ("team", lang.t("testing.team").to_string(), b.team_name.clone()),
        ("lab", lang.t("testing.lab").to_string(), b.lab_name.clone()),
        ("tubes", lang.t("testing.tubes").to_string(), b.tubes.to_string()),
        ("handed", lang.t("testing.handed_at").to_string(), local(b.handed_at)),
        ("accept-by", lang.t("testing.accept_by").to_string(), local(b.accept_by)),
    ];
    if let Some(at) = b.received_at {
        facts.push(("received", lang.t("testing.received_at").to_string(), format!("{} · {}", local(at), b.received_by.clone().unwrap_or_default())));
        let list = |l: &[String]| if l.is_empty() { lang.t("common.none").to_string() } else { l.join("、") };
        facts.push(("missing", lang.t("testing.missing").to_string(), list(&b.missing)));
        facts.push(("extra", lang.t("testing.extra").to_string(), list(&b.extra)));
    }
    let mut sections = Vec::new();
    if b.state == "handed" && v.who.can(Permission::TestingResult) && v.who.unit_id == Some(b.lab_id) {
        let mut f = TForm::new(
            "receive-form",
            lang.t("testing.receive"),
            format!("/testing/batches/{id}/receive"),
            vec![TField::new("barcodes", lang.t("testing.scan_tubes"), "textarea", scanned_text).hint(lang.t("testing.scan_hint")).focus()],
            lang.t("testing.receive"),
        );
        if let Some(e) = &err {
            attach(&mut shell, &mut [&mut f], e);
        }
        sections.push(form(f));
    } else if let Some(e) = &err {
        attach(&mut shell, &mut [], e);
    }
    let tubes = b
        .barcodes
        .iter()
        .map(|x| {
            let mark = if b.missing.contains(x) {
                lang.t("testing.missing")
            } else if b.received_at.is_some() {
                lang.t("testing.batch_received")
            } else {
                ""
            };
            vec![code(x), cell(mark)]
        })
        .collect();
    sections.push(table("batch-tubes", lang.t("testing.batch_tubes"), cols(lang, &["testing.barcode", "testing.state"]), tubes));
    let status = err.as_ref().map(crate::error::status_of).unwrap_or(StatusCode::OK);
    let mut page = Page::new(shell, "batch");
    page.state = b.state.clone();
    page.facts = facts;
    page.sections = sections;
    let back = if v.who.unit_id == Some(b.lab_id) { ("/testing/lab", "nav.testing_lab") } else { ("/testing/sample", "nav.testing_sample") };
    page.links.push((back.0.into(), lang.t(back.1).into()));
    Ok((status, render(&page)).into_response())
}

async fn batch_page(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, RawQuery(q): RawQuery) -> UiResult {
    let flash = query_map(&q).contains_key("saved").then(|| v.lang.t("common.saved").to_string());
    batch_view(&s, &v, id, String::new(), None, flash).await
}

async fn receive_submit(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let text = f.get("barcodes");
    let list = scanned(&text);
    // An empty scan would flag every tube missing: ask for the scan instead.
    let result = if list.is_empty() {
        Err(Error::field("barcodes", "required", "请扫描箱内的采样管", "scan the tubes in the box"))
    } else {
        testing::receive(&s.store, &v.who, id, &ReceiptInput { barcodes: list.clone() }).await
    };
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/testing/batches/{id}?saved=1")).into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => {
            let e = rename(e, base_name, &list);
            batch_view(&s, &v, id, text, Some(e), None).await
        }
        Err(e) => Err(e.into()),
    }
}

// ---------- the lab ----------

#[derive(Default)]
struct ResultVals {
    barcode: String,
    result: String,
    ct: String,
}

fn result_form(lang: Lang, vals: &ResultVals) -> TForm {
    // No result is preselected: a wrong default would be worse than a missed choice.
    let mut outcomes = vec![(String::new(), lang.t("testing.choose").to_string())];
    outcomes.extend(Outcome::ALL.iter().map(|o| (o.as_str().to_string(), o.label(lang.zh()).to_string())));
    TForm::new(
        "result-form",
        lang.t("testing.post_result"),
        "/testing/lab",
        vec![
            TField::new("barcode", lang.t("testing.barcode"), "text", vals.barcode.clone()).hint(lang.t("testing.barcode_hint")).focus(),
            TField::choice("result", lang.t("testing.outcome"), "select", vals.result.clone(), outcomes),
            TField::new("ct", lang.t("testing.ct"), "text", vals.ct.clone()).mode("decimal").hint(lang.t("testing.ct_hint")),
        ],
        lang.t("testing.post_result"),
    )
}

async fn lab_view(s: &AppState, v: &Viewer, vals: ResultVals, err: Option<Error>, flash: Option<String>) -> UiResult {
    v.who.require(Permission::TestingResult)?;
    let lang = v.lang;
    let me = v.who.unit_id;
    let mut f = result_form(lang, &vals);
    let mut shell = v.shell("nav.testing_lab");
    shell.flash = flash;
    if let Some(e) = &err {
        attach(&mut shell, &mut [&mut f], e);
    }
    let handed = testing::list_batches(&s.store, &v.who, &testing::BatchFilter { state: Some("handed".into()) }, &PageQuery::largest()).await?.items;
    let batch_rows = handed
        .iter()
        .filter(|b| Some(b.lab_id) == me)
        .map(|b| {
            vec![
                link(&b.code, format!("/testing/batches/{}", b.id)),
                cell(&b.team_name),
                cell(b.tubes.to_string()),
                cell(local(b.handed_at)),
                cell(format!(
                    "{}{}",
                    local(b.accept_by),
                    if b.accept_by < s.store.now() { format!(" · {}", lang.t("testing.overdue")) } else { String::new() }
                )),
            ]
        })
        .collect();
    let mut waiting: Vec<_> = testing::list_tubes(&s.store, &v.who, &TubeFilter { mine: Some(true), ..Default::default() }, &PageQuery::largest())
        .await?
        .items
        .into_iter()
        .filter(|t| t.outcome.is_none() && matches!(t.state.as_str(), "shipped" | "received"))
        .collect();
    waiting.sort_by_key(|t| t.due_at);
    let now = s.store.now();
    let tube_rows = waiting
        .iter()
        .map(|t| {
            vec![
                link(&t.barcode, format!("/testing/tubes/{}", t.id)),
                cell(pool_label(t.pool_size, lang)),
                cell(priority_label(&t.priority, lang)),
                cell(state_label(&t.state, lang)),
                cell(format!("{}{}", local(t.due_at), if t.due_at < now { format!(" · {}", lang.t("testing.overdue")) } else { String::new() })),
            ]
        })
        .collect();
    let status = err.as_ref().map(crate::error::status_of).unwrap_or(StatusCode::OK);
    let mut page = Page::new(shell, "lab");
    page.links =
        vec![("/testing/lab/import".into(), lang.t("testing.import").into()), ("/testing/dashboard".into(), lang.t("nav.testing_dashboard").into())];
    page.sections = vec![
        table(
            "awaiting-receipt",
            lang.t("testing.awaiting_receipt"),
            cols(lang, &["testing.batch", "testing.team", "testing.tubes", "testing.handed_at", "testing.accept_by"]),
            batch_rows,
        ),
        form(f),
        table(
            "awaiting-result",
            lang.t("testing.awaiting_result"),
            cols(lang, &["testing.barcode", "testing.pool_size", "testing.priority", "testing.state", "testing.due_at"]),
            tube_rows,
        ),
    ];
    Ok((status, render(&page)).into_response())
}

async fn lab_page(State(s): State<AppState>, v: Viewer, RawQuery(q): RawQuery) -> UiResult {
    let qm = query_map(&q);
    let lang = v.lang;
    // Back from a posted result: what it did.
    let flash = qm.get("posted").map(|b| {
        let g = |k: &str| qm.get(k).cloned().unwrap_or_default();
        let what = match g("did").as_str() {
            "unchanged" => lang.t("testing.result_unchanged"),
            "corrected" => lang.t("testing.result_corrected"),
            _ => lang.t("testing.result_saved"),
        };
        let mut msg = format!("{b} · {} · {what}", outcome_label(&g("outcome"), lang));
        if g("recheck").parse::<usize>().unwrap_or(0) > 0 {
            msg.push_str(&format!(" · {} {}", lang.t("testing.put_on_recheck"), g("recheck")));
        }
        msg
    });
    lab_view(&s, &v, ResultVals::default(), None, flash).await
}

async fn result_submit(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let vals = ResultVals { barcode: f.get("barcode"), result: f.get("result"), ct: f.get("ct") };
    let ct_text = vals.ct.trim().replace('，', ".");
    let ct = if ct_text.is_empty() {
        Ok(None)
    } else {
        ct_text.parse::<f64>().map(Some).map_err(|_| Error::field("ct", "ct_invalid", "Ct 值应为数字", "a Ct value is a number"))
    };
    let result = match ct {
        Ok(ct) => {
            let row = ResultInput { barcode: vals.barcode.clone(), result: vals.result.clone(), ct, ct_orf1ab: None, ct_n: None, tested_at: None };
            testing::post_results(&s.store, &v.who, &[row], "ui").await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(r) => {
            let did = if r.unchanged > 0 {
                "unchanged"
            } else if r.corrected > 0 {
                "corrected"
            } else {
                "applied"
            };
            let barcode = baton_domain::testing::parse_barcode("barcode", &vals.barcode).unwrap_or_default();
            let q = serde_urlencoded::to_string([
                ("posted", barcode),
                ("outcome", Outcome::parse_loose(&vals.result).map(|o| o.as_str().to_string()).unwrap_or_default()),
                ("did", did.to_string()),
                ("recheck", r.pending_recheck.to_string()),
            ])
            .unwrap_or_default();
            Ok(Redirect::to(&format!("/testing/lab?{q}")).into_response())
        }
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => {
            let e = rename(e, base_name, &[]);
            lab_view(&s, &v, vals, Some(e), None).await
        }
        Err(e) => Err(e.into()),
    }
}

/// A result's Ct as the lab gave it: the tube's value, then the genes' when given apart
/// (`27.30 (ORF1ab 27.30 · N 29.10)`).
fn ct_text(ct: Option<f64>, orf1ab: Option<f64>, n: Option<f64>) -> String {
    let genes: Vec<String> = [("ORF1ab", orf1ab), ("N", n)].iter().filter_map(|(g, v)| v.map(|v| format!("{g} {v:.2}"))).collect();
    match (ct, genes.is_empty()) {
        (Some(c), true) => format!("{c:.2}"),
        (Some(c), false) => format!("{c:.2} ({})", genes.join(" · ")),
        (None, _) => genes.join(" · "),
    }
}

// ---------- LIS file import ----------

fn import_view(v: &Viewer) -> Page {
    let lang = v.lang;
    let mut f = TForm::new(
        "import-form",
        lang.t("testing.import"),
        "/testing/lab/import",
        vec![TField::new("file", lang.t("import.file"), "file", "")],
        lang.t("import.submit"),
    );
    f.multipart = true;
    f.note = Some(lang.t("testing.import_note").to_string());
    let mut page = Page::new(v.shell("testing.import"), "lab-import");
    page.links = vec![("/testing/lab".into(), lang.t("nav.testing_lab").into())];
    page.sections.push(form(f));
    page
}

async fn import_page(v: Viewer) -> UiResult {
    v.who.require(Permission::TestingResult)?;
    Ok(render(&import_view(&v)))
}

async fn import_submit(State(s): State<AppState>, v: Viewer, h: HeaderMap, body: Bytes) -> UiResult {
    v.who.require(Permission::TestingResult)?;
    let lang = v.lang;
    let ct = h.get(header::CONTENT_TYPE).and_then(|x| x.to_str().ok()).unwrap_or("");
    let parts = crate::ui::multipart(ct, &body);
    let csrf = parts.iter().find(|p| p.0 == "csrf").map(|p| String::from_utf8_lossy(p.2).to_string()).unwrap_or_default();
    let token = serde_urlencoded::to_string([("csrf", csrf)]).unwrap_or_default();
    FormData::parse(&Bytes::from(token))?.check_csrf(&v.csrf)?;
    let file = parts.into_iter().find(|p| p.0 == "file" && !p.2.is_empty());
    let result = match file {
        None => Err(Error::field("file", "required", "请选择文件", "choose a file")),
        Some((_, name, bytes)) => {
            let name = name.unwrap_or_default().to_ascii_lowercase();
            let format = if name.ends_with(".xlsx") { Format::Xlsx } else { Format::Csv };
            testing_import::import(&s.store, &v.who, format, bytes).await
        }
    };
    let mut page = import_view(&v);
    match result {
        Ok(r) => {
            page.shell.flash = Some(format!("{} {}", lang.t("import.done"), r.rows));
            page.facts = vec![
                ("rows", lang.t("testing.rows").to_string(), r.rows.to_string()),
                ("applied", lang.t("testing.applied").to_string(), r.applied.to_string()),
                ("unchanged", lang.t("testing.unchanged").to_string(), r.unchanged.to_string()),
                ("corrected", lang.t("testing.corrected").to_string(), r.corrected.to_string()),
                (
                    "positive",
                    lang.t("testing.positive_tubes").to_string(),
                    if r.positive.is_empty() { lang.t("common.none").to_string() } else { r.positive.join("、") },
                ),
                (
                    "suspect",
                    lang.t("testing.suspect_tubes").to_string(),
                    if r.suspect.is_empty() { lang.t("common.none").to_string() } else { r.suspect.join("、") },
                ),
                ("recheck", lang.t("testing.put_on_recheck").to_string(), r.pending_recheck.to_string()),
            ];
            Ok(render(&page))
        }
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => {
            // `rows[5].barcode`: line 5 of the file, its barcode column.
            let rows = e
                .fields()
                .iter()
                .map(|f| {
                    let (row, col) = match f.field.strip_prefix("rows[").and_then(|r| r.split_once(']')) {
                        Some((n, c)) => (n.to_string(), c.trim_start_matches('.').to_string()),
                        None => (String::new(), f.field.clone()),
                    };
                    vec![cell(row), code(col), cell(lang.pick(&f.zh, &f.en))]
                })
                .collect::<Vec<_>>();
            let status = crate::error::status_of(&e);
            page.shell.error = Some(match &e {
                Error::Invalid(_) => lang.t("import.rows").to_string(),
                e => e.message(lang.zh()),
            });
            if !rows.is_empty() {
                page.sections.push(table(
                    "import-errors",
                    lang.t("import.rows"),
                    cols(lang, &["testing.line", "testing.column", "testing.reason"]),
                    rows,
                ));
            }
            Ok((status, render(&page)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

// ---------- the dashboard ----------

fn minutes_text(m: Option<i64>, lang: Lang) -> String {
    match m {
        None => "—".to_string(),
        Some(m) if m < 60 => format!("{m} {}", lang.t("testing.min")),
        Some(m) => format!("{} {} {:02} {}", m / 60, lang.t("testing.hour"), m % 60, lang.t("testing.min")),
    }
}

async fn dashboard_page(State(s): State<AppState>, v: Viewer, RawQuery(q): RawQuery) -> UiResult {
    v.who.require(Permission::TestingRead)?;
    let lang = v.lang;
    let qm = query_map(&q);
    let windows = [(24, "testing.window_day"), (168, "testing.window_week"), (720, "testing.window_month")];
    let hours = qm.get("hours").and_then(|h| h.parse::<i64>().ok()).filter(|h| windows.iter().any(|w| w.0 == *h)).unwrap_or(24);
    let st = testing_stats::lab_stats(&s.store, &v.who, s.store.now() - Duration::hours(hours)).await?;
    let count_row = |label: String, c: &testing_stats::PriorityCounts| {
        vec![
            cell(label),
            cell(c.awaiting_receipt.to_string()),
            cell(c.received.to_string()),
            cell(c.pending.to_string()),
            cell(c.overdue.to_string()),
            cell(c.resulted.to_string()),
            cell(c.positive.to_string()),
        ]
    };
    let counts = Priority::ALL.iter().map(|p| count_row(p.label(lang.zh()).to_string(), st.counts(*p))).collect();
    let turn = Priority::ALL
        .iter()
        .map(|p| (p.label(lang.zh()).to_string(), st.turnaround(Some(*p))))
        .chain([(lang.t("testing.all").to_string(), st.turnaround(None))])
        .map(|(label, t)| {
            vec![
                cell(label),
                cell(t.tubes.to_string()),
                cell(minutes_text(t.p50, lang)),
                cell(minutes_text(t.p90, lang)),
                cell(minutes_text(t.p99, lang)),
            ]
        })
        .collect();
    let mut page = Page::new(v.shell("nav.testing_dashboard"), "testing-dashboard");
    page.lead = Some(format!("{} {} → {}", lang.t("testing.window"), local(st.since), local(st.at)));
    page.filters = vec![Filter {
        name: "hours",
        label: lang.t("testing.window").into(),
        value: hours.to_string(),
        kind: "text",
        options: windows.iter().map(|(h, k)| (h.to_string(), lang.t(k).to_string())).collect(),
    }];
    if v.who.can(Permission::TestingResult) {
        page.links.push(("/testing/lab".into(), lang.t("nav.testing_lab").into()));
    }
    page.sections = vec![
        table(
            "by-priority",
            lang.t("testing.by_priority"),
            cols(
                lang,
                &[
                    "testing.priority",
                    "testing.awaiting_receipt_n",
                    "testing.received_n",
                    "testing.pending_n",
                    "testing.overdue",
                    "testing.resulted_n",
                    "testing.positive_tubes",
                ],
            ),
            counts,
        ),
        table(
            "turnaround",
            lang.t("testing.turnaround"),
            cols(lang, &["testing.priority", "testing.tubes", "testing.p50", "testing.p90", "testing.p99"]),
            turn,
        ),
    ];
    Ok(render(&page))
}

// ---------- pending re-check ----------

async fn rechecks_page(State(s): State<AppState>, v: Viewer, RawQuery(q): RawQuery) -> UiResult {
    let lang = v.lang;
    let qm = query_map(&q);
    let orders = testing::open_orders(&s.store, &v.who, &PageQuery::largest()).await?.items;
    let kind = qm.get("kind").cloned().unwrap_or_default();
    let overdue_only = qm.get("overdue").is_some_and(|o| o == "1");
    let now = s.store.now();
    let d = Divisions::get_all();
    let rows = orders
        .iter()
        .filter(|o| kind.is_empty() || o.kind == kind)
        .filter(|o| !overdue_only || (o.tube_id.is_none() && o.due_at < now))
        .map(|o| {
            let late = o.tube_id.is_none() && o.due_at < now;
            vec![
                cell(&o.name),
                code(&o.document_masked),
                cell(d.get(&o.jurisdiction).map(|x| x.name.to_string()).unwrap_or_else(|| o.jurisdiction.clone())),
                cell(Purpose::parse(&o.kind).map(|p| p.label(lang.zh()).to_string()).unwrap_or_else(|| o.kind.clone())),
                cell(&o.source_barcode),
                cell(format!("{}{}", local(o.due_at), if late { format!(" · {}", lang.t("testing.overdue")) } else { String::new() })),
                cell(lang.t(if o.tube_id.is_some() { "testing.retest_taken" } else { "testing.retest_owed" })),
                cell(o.status.as_deref().and_then(PersonStatus::parse).map(|x| x.label(lang.zh()).to_string()).unwrap_or_default()),
            ]
        })
        .collect();
    let mut kinds = vec![(String::new(), lang.pick("全部", "All").to_string())];
    kinds.extend([Purpose::Recheck, Purpose::Resample].iter().map(|p| (p.as_str().to_string(), p.label(lang.zh()).to_string())));
    let mut page = Page::new(v.shell("nav.rechecks"), "rechecks-head");
    page.lead = Some(lang.t("testing.rechecks_lead").to_string());
    page.filters = vec![
        Filter { name: "kind", label: lang.t("testing.order_kind").into(), value: kind, kind: "text", options: kinds },
        Filter {
            name: "overdue",
            label: lang.t("testing.overdue").into(),
            value: if overdue_only { "1" } else { "0" }.into(),
            kind: "text",
            options: vec![("0".into(), lang.pick("全部", "All").into()), ("1".into(), lang.t("testing.overdue_only").into())],
        },
    ];
    let columns = cols(
        lang,
        &[
            "testing.name",
            "testing.document_number",
            "common.division",
            "testing.order_kind",
            "testing.source_tube",
            "testing.retest_due",
            "testing.retest",
            "testing.status",
        ],
    );
    page.sections.push(table("rechecks", lang.t("testing.pending_persons"), columns, rows));
    Ok(render(&page))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use baton_domain::FieldError;

    #[test]
    fn scanned_barcodes_and_field_names() {
        assert_eq!(scanned("HG-1\r\nHG-2  HG-3，HG-4\n\n"), vec!["HG-1", "HG-2", "HG-3", "HG-4"]);
        assert_eq!(base_name("barcodes[3]").as_deref(), Some("barcodes"));
        assert_eq!(base_name("members[0].name").as_deref(), Some("name"));
        assert_eq!(base_name("lab_id"), None);
        let e = rename(
            Error::Invalid(vec![FieldError::new("barcodes[1]", "tube_unknown", "条码未登记", "no tube has this barcode")]),
            base_name,
            &["A1".into(), "B2".into()],
        );
        assert_eq!((e.fields()[0].field.as_str(), e.fields()[0].en.as_str()), ("barcodes", "B2: no tube has this barcode"));
    }
}
