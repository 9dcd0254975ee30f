//! Person code pages: the person's own code by link (no account, phone first, a QR of a fresh
//! signed token), and for staff a person's code with its reasons, inputs and history.
//!
//! Opening one's own link also makes the phone remember the person for venue codes: an
//! `HttpOnly; SameSite=Lax` cookie, sent only to the venues' public pages (`/v/…`), holds the
//! signed link itself (a person id and an expiry, no personal data) until the link expires; a
//! venue poster scanned with that phone then registers the visit (`ui_venues`).

use crate::AppState;
use crate::i18n::Lang;
use crate::ui::{Cell, FormCard, TablePage, UiResult, Viewer, cell, form_of, local, render};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use baton_domain::code::{Colour, Reason};
use baton_store::page::PageQuery;
use baton_store::{person_codes, persons};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new().route("/c/{link}", get(own_code)).route("/persons/{id}/code", get(code_page)).route("/persons/{id}/code/link", post(link_issue))
}

/// The cookie by which a phone remembers its person for venue codes: the signed link.
pub(crate) const ME_COOKIE: &str = "baton_me";

/// `ME_COOKIE` holding `link` for `max_age_secs` (0: forget), sent to the venues' public pages only.
pub(crate) fn me_cookie(link: &str, secure: bool, max_age_secs: i64) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{ME_COOKIE}={link}; Path=/v; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}")
}

/// The existing CSS classes for the three colours (the trip code's: pass, closed loop, isolate).
pub(crate) fn colour_css(c: Colour) -> &'static str {
    match c {
        Colour::Green => "pass",
        Colour::Yellow => "closed_loop",
        Colour::Red => "isolate",
    }
}

/// A QR code as an SVG data URI (allowed by the page's CSP: `img-src 'self' data:`).
pub(crate) fn qr(text: &str) -> String {
    use base64::Engine as _;
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(q) => {
            let svg = q.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).build();
            format!("data:image/svg+xml;base64,{}", base64::engine::general_purpose::STANDARD.encode(svg))
        }
        Err(_) => String::new(),
    }
}

pub(crate) fn reason_text(r: &Reason, lang: Lang) -> String {
    let mut t = r.code.label(lang.zh()).to_string();
    if !r.detail.is_empty() {
        let d = baton_domain::division::Divisions::get_all();
        let place = d.get(&r.detail).map(|_| d.full_name(&r.detail)).unwrap_or_else(|| r.detail.clone());
        t = format!("{t}：{place}");
    }
    if let Some(u) = r.until {
        t = format!("{t}（{} {}）", lang.pick("至", "until"), local(u));
    }
    t
}

#[derive(askama::Template)]
#[template(path = "person_code.html")]
struct OwnCodePage {
    shell: crate::ui::Shell,
    css: &'static str,
    colour: &'static str,
    colour_label: &'static str,
    name: String,
    qr: String,
    token: String,
    until: String,
    token_expires: String,
    key_id: String,
    reasons: Vec<(&'static str, String)>,
    /// Until when this phone remembers the person for venue codes.
    remembered_until: String,
}

async fn own_code(State(s): State<AppState>, Path(link): Path<String>) -> UiResult {
    let lang = crate::middleware::req().lang;
    let c = person_codes::show(&s.store, &link).await?;
    let now = s.store.now();
    let link_expires = person_codes::open_link(&s.store.vault, &link, now)?.expires_at;
    let mut shell = crate::ui::shell_for(None, lang, "", &format!("/c/{link}"), lang.t("pcode.title").to_string());
    shell.title = format!("{} · {}", lang.t("pcode.title"), c.name_masked);
    let page = OwnCodePage {
        shell,
        css: colour_css(c.colour),
        colour: c.colour.as_str(),
        colour_label: c.colour.label(lang.zh()),
        name: c.name_masked.clone(),
        qr: qr(&c.token),
        until: c.until.map(local).unwrap_or_else(|| lang.t("pcode.until_change").to_string()),
        token_expires: local(c.token_expires_at),
        key_id: c.public_key_id.clone(),
        reasons: c.reasons.iter().map(|r| (r.code.as_str(), reason_text(r, lang))).collect(),
        token: c.token,
        remembered_until: local(link_expires),
    };
    let cookie = me_cookie(&link, s.config.secure_cookies, (link_expires - now).num_seconds().max(0));
    Ok(([(header::SET_COOKIE, cookie)], render(&page)).into_response())
}

async fn code_view(s: &AppState, v: &Viewer, id: Uuid, flash: Option<String>) -> UiResult {
    let lang = v.lang;
    let p = persons::get(&s.store, &v.who, id).await?;
    let code = person_codes::get(&s.store, &v.who, id).await?;
    let history = person_codes::history(&s.store, &v.who, id, &PageQuery::default()).await?.items;
    let mut shell = v.shell("pcode.staff_title");
    shell.title = format!("{} · {} {}", lang.t("pcode.staff_title"), p.name, p.document_masked);
    let reasons: Vec<String> = code.reasons.iter().map(|r| reason_text(r, lang)).collect();
    shell.flash = Some(match flash {
        Some(f) => f,
        None => format!(
            "{}：{} · {}{} · {} {}",
            lang.t("pcode.now"),
            code.colour.label(lang.zh()),
            if reasons.is_empty() { lang.t("pcode.no_reason").to_string() } else { reasons.join("；") },
            code.until.map(|u| format!(" · {} {}", lang.t("pcode.until"), local(u))).unwrap_or_default(),
            lang.t("pcode.policy"),
            code.policy_version
        ),
    });
    let rows: Vec<Vec<Cell>> = history
        .iter()
        .map(|h| {
            vec![
                cell(h.rev.to_string()),
                cell(local(h.at)),
                cell(h.colour.label(lang.zh())),
                cell(h.reasons.iter().map(|r| reason_text(r, lang)).collect::<Vec<_>>().join("；")),
                cell(h.until.map(local).unwrap_or_default()),
                cell(h.policy_version.to_string()),
                cell(h.cause.clone()),
            ]
        })
        .collect();
    let mut forms = Vec::new();
    if v.who.can(baton_domain::role::Permission::PersonsWrite) {
        forms.push(FormCard {
            id: "link-form",
            title: lang.t("pcode.link").into(),
            action: format!("/persons/{id}/code/link"),
            fields: vec![],
            submit: lang.t("pcode.link_issue").into(),
            note: Some(lang.t("pcode.link_note").into()),
        });
    }
    let page = TablePage {
        shell,
        create_href: None,
        filters: vec![],
        columns: ["pcode.rev", "pcode.at", "pcode.colour", "pcode.reasons", "pcode.until", "pcode.policy", "pcode.cause"]
            .iter()
            .map(|k| lang.t(k).to_string())
            .collect(),
        rows,
        more_href: Some(format!("/exposure?person={id}")),
        forms,
    };
    Ok(render(&page))
}

async fn code_page(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>) -> UiResult {
    code_view(&s, &v, id, None).await
}

async fn link_issue(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, h: HeaderMap, body: Bytes) -> UiResult {
    form_of(&v, &body)?;
    let l = person_codes::issue_link(&s.store, &v.who, id).await?;
    let host = h.get(axum::http::header::HOST).and_then(|x| x.to_str().ok()).unwrap_or("");
    let flash = format!("{}：http://{host}{} （{} {}）", v.lang.t("pcode.link"), l.path, v.lang.t("pcode.until"), local(l.expires_at));
    code_view(&s, &v, id, Some(flash)).await
}
