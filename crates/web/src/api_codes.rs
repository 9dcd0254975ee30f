//! Person codes' JSON API: a person's code with its reasons and history, the facts this module
//! keeps (stays, control orders), the link a person opens their code by, and the public side
//! that needs no account — the verification keys, token verification, and the code shown by a link.

use crate::AppState;
use crate::api::{ApiResult, Body, Id, Listing, NoFilter, listed, ok};
use crate::auth::Caller;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use baton_store::{person_codes, persons};
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/codes/keys", get(keys))
        .route("/codes/verify", post(verify))
        .route("/codes/show/{link}", get(show))
        .route("/codes/recomputes", get(recomputes).post(recompute))
        .route("/persons/{id}/code", get(code))
        .route("/persons/{id}/code/history", get(history))
        .route("/persons/{id}/code/link", post(link))
        .route("/persons/{id}/stays", post(stays))
        .route("/persons/{id}/controls", post(controls))
        .route("/persons/{id}/merges", get(merges).post(merge))
}

/// Public: the keys a scanner needs to verify codes offline.
async fn keys(State(s): State<AppState>) -> ApiResult {
    let keys: Vec<_> = person_codes::public_keys(&s.store)
        .into_iter()
        .enumerate()
        .map(|(i, (id, pk))| json!({"key_id": id, "public_key": pk, "alg": "Ed25519", "active": i == 0}))
        .collect();
    ok(json!({
        "keys": keys,
        "format": "base64url(payload || signature); payload = 'P', key id (4 bytes), person ref (16), colour (1: 0 green, 1 yellow, 2 red), expiry (4, unix seconds, big-endian); Ed25519 over the payload",
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyInput {
    token: String,
}

/// Public: what a scanner does offline, for one that cannot.
async fn verify(State(s): State<AppState>, Body(input, _): Body<VerifyInput>) -> ApiResult {
    let t = person_codes::verify_token(&s.store.vault, &input.token, s.store.now())?;
    let colour = t.colour.unwrap_or(baton_domain::code::Colour::Red);
    ok(
        json!({"valid": true, "key_id": t.key_id, "person_ref": t.person_ref, "colour": colour, "admission": colour.admission(), "expires_at": t.expires_at}),
    )
}

/// Public: the code behind a person's link, with a fresh token for the QR.
async fn show(State(s): State<AppState>, Path(link): Path<String>) -> ApiResult {
    ok(person_codes::show(&s.store, &link).await?)
}

async fn code(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    ok(person_codes::get(&s.store, &c.who, id).await?)
}

async fn history(State(s): State<AppState>, c: Caller, Id(id): Id, Listing(NoFilter {}, page): Listing<NoFilter>) -> ApiResult {
    listed("history", person_codes::history(&s.store, &c.who, id, &page).await?)
}

async fn link(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    ok(person_codes::issue_link(&s.store, &c.who, id).await?)
}

async fn stays(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<person_codes::StaysInput>) -> ApiResult {
    ok(person_codes::add_stays(&s.store, &c.who, id, &input).await?)
}

async fn controls(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<person_codes::ControlInput>) -> ApiResult {
    ok(person_codes::add_control(&s.store, &c.who, id, &input).await?)
}

async fn recomputes(State(s): State<AppState>, c: Caller, Listing(NoFilter {}, page): Listing<NoFilter>) -> ApiResult {
    listed("runs", baton_store::recompute::list(&s.store, &c.who, &page).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecomputeInput {
    #[serde(default)]
    note: String,
}

/// Queue a full recompute (after a policy version, or by hand); the background job runs it.
async fn recompute(State(s): State<AppState>, c: Caller, Body(input, _): Body<RecomputeInput>) -> ApiResult {
    ok(baton_store::recompute::enqueue(&s.store, &c.who, "manual", &input.note).await?)
}

/// Merge a duplicate record into this one (its facts move; its document finds this one).
async fn merge(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<persons::MergeInput>) -> ApiResult {
    ok(persons::merge(&s.store, &c.who, id, &input).await?)
}

async fn merges(State(s): State<AppState>, c: Caller, Id(id): Id, Listing(NoFilter {}, page): Listing<NoFilter>) -> ApiResult {
    listed("merges", persons::merges(&s.store, &c.who, id, &page).await?)
}
