//! Person codes (精准赋码): each person's current code, decided by `baton_domain::code` from
//! the facts as they stand — the latest result (`person_results`, the testing module's; for a
//! companion also the negative samples since the exposure, through `results`), stays
//! matched against the risk areas, control orders — under the policy version in force. Every
//! change adds a revision to the person's history with its cause, the inputs and the policy
//! version ([`crate::code_history`]); `person_codes` keeps what lists and checks read, its
//! reasons by reference (`code_reasons`), and the block of its revision. Codes are recomputed
//! in sets ([`recompute`]): only rows whose code changed are written.
//!
//! The QR a person shows is a compact signed token ([`sign_token`]): `base64url(payload ‖ sig)`,
//! payload = kind `P`, the signing key id (4 bytes), the person id (16), the colour (1) and the
//! expiry (unix seconds, 4) — no personal data; Ed25519 over the payload. A scanner holding the
//! county's public keys (`GET /api/v1/codes/keys`) verifies it offline. A person opens their code
//! by a link that carries a token of kind `L` (longer-lived, never accepted as a code).

use crate::db::{Q, Row, Tx, Val};
use crate::page::{Page, PageQuery, Paged};
use crate::{Principal, Store, audit, q, scope_args};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use baton_domain::Error;
use baton_domain::code::{Code, CodeInputs, Colour, Control, ControlKind, Reason, ResultStatus, TestResult};
use baton_domain::division::prefix_end;
use baton_domain::policy::CodeRules;
use baton_domain::risk::{RiskArea, RiskLevel, Stay};
use baton_domain::role::Permission;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;
use uuid::Uuid;

// ---------- tokens ----------

const KIND_CODE: u8 = b'P';
const KIND_LINK: u8 = b'L';
const PAYLOAD_CODE: usize = 1 + 4 + 16 + 1 + 4;
const PAYLOAD_LINK: usize = 1 + 4 + 16 + 4;
const SIG: usize = 64;

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Token {
    /// Hex id of the key that signed it.
    pub key_id: String,
    pub person_ref: Uuid,
    /// For a code token; a link has none.
    pub colour: Option<Colour>,
    pub expires_at: DateTime<Utc>,
    /// The first 16 bytes of the signature: one scan per token per venue.
    #[serde(skip)]
    pub tag: Vec<u8>,
}

fn colour_byte(c: Colour) -> u8 {
    c.rank()
}

fn expiry_secs(t: DateTime<Utc>) -> Result<u32, Error> {
    u32::try_from(t.timestamp()).map_err(|_| Error::internal("token expiry out of range"))
}

fn sign(store_vault: &crate::Vault, mut payload: Vec<u8>) -> String {
    let sig = store_vault.sign(&payload);
    payload.extend_from_slice(&sig);
    B64.encode(payload)
}

/// A code token for the QR.
pub fn sign_token(vault: &crate::Vault, person: Uuid, colour: Colour, expires: DateTime<Utc>) -> Result<String, Error> {
    let mut p = Vec::with_capacity(PAYLOAD_CODE);
    p.push(KIND_CODE);
    p.extend_from_slice(&vault.signing_key_id());
    p.extend_from_slice(person.as_bytes());
    p.push(colour_byte(colour));
    p.extend_from_slice(&expiry_secs(expires)?.to_be_bytes());
    Ok(sign(vault, p))
}

/// A link by which a person opens their code without an account.
pub fn sign_link(vault: &crate::Vault, person: Uuid, expires: DateTime<Utc>) -> Result<String, Error> {
    let mut p = Vec::with_capacity(PAYLOAD_LINK);
    p.push(KIND_LINK);
    p.extend_from_slice(&vault.signing_key_id());
    p.extend_from_slice(person.as_bytes());
    p.extend_from_slice(&expiry_secs(expires)?.to_be_bytes());
    Ok(sign(vault, p))
}

fn refused(code: &'static str, zh: &str, en: &str) -> Error {
    Error::conflict(code, zh, en)
}

fn malformed() -> Error {
    refused("code_malformed", "码格式无效（不完整或不是本系统的码）", "the code is malformed (truncated or not one of ours)")
}

/// The keys a verifier holds: id and Ed25519 public key.
pub type PublicKeys = [([u8; 4], [u8; 32])];

/// Public keys decoded once for many verifications: decoding a key (a point decompression) is
/// a sixth of a bare verification's cost. A key that does not decode is left out, so tokens
/// signed by it are refused as signed by an unknown key.
pub struct VerifyKeys(Vec<([u8; 4], ed25519_dalek::VerifyingKey)>);

impl VerifyKeys {
    pub fn new(keys: &PublicKeys) -> VerifyKeys {
        VerifyKeys(keys.iter().filter_map(|(id, pk)| ed25519_dalek::VerifyingKey::from_bytes(pk).ok().map(|k| (*id, k))).collect())
    }
}

/// A token whose form, kind and key are checked, its signature not yet.
struct Parsed {
    payload: Vec<u8>,
    signature: ed25519_dalek::Signature,
    key: ed25519_dalek::VerifyingKey,
}

fn forged() -> Error {
    refused("code_forged", "码签名无效，可能被伪造或篡改", "the code's signature is invalid: forged or altered")
}

fn parse(keys: &VerifyKeys, token: &str, kind: u8) -> Result<Parsed, Error> {
    let len = if kind == KIND_CODE { PAYLOAD_CODE } else { PAYLOAD_LINK };
    let t = token.trim();
    if t.len() > 200 {
        return Err(malformed());
    }
    let mut bytes = B64.decode(t).map_err(|_| malformed())?;
    if bytes.len() != len + SIG {
        return Err(malformed());
    }
    let sig = bytes.split_off(len);
    if bytes.first() != Some(&kind) {
        return Err(refused("code_wrong_kind", "这不是健康码（可能是链接或其他码）", "this is not a code of the expected kind"));
    }
    let kid: [u8; 4] = bytes.get(1..5).and_then(|s| s.try_into().ok()).ok_or_else(malformed)?;
    let Some((_, key)) = keys.0.iter().find(|(id, _)| *id == kid) else {
        return Err(refused("code_unknown_key", "签名密钥未知：码不是本县签发的", "signed by an unknown key: not issued by this county"));
    };
    let signature = ed25519_dalek::Signature::from_slice(&sig).map_err(|_| forged())?;
    Ok(Parsed { payload: bytes, signature, key: *key })
}

fn signed(p: &Parsed) -> Result<(), Error> {
    use ed25519_dalek::Verifier;
    p.key.verify(&p.payload, &p.signature).map_err(|_| forged())
}

/// What a token with a good signature says, if it has not expired.
fn read(p: &Parsed, now: DateTime<Utc>) -> Result<Token, Error> {
    let payload = &p.payload;
    let person = payload.get(5..21).and_then(|s| Uuid::from_slice(s).ok()).ok_or_else(malformed)?;
    let (colour, exp) = if payload.first() == Some(&KIND_CODE) {
        let c = match payload.get(21) {
            Some(0) => Colour::Green,
            Some(1) => Colour::Yellow,
            Some(2) => Colour::Red,
            _ => return Err(malformed()),
        };
        (Some(c), payload.get(22..26))
    } else {
        (None, payload.get(21..25))
    };
    let exp: [u8; 4] = exp.and_then(|s| s.try_into().ok()).ok_or_else(malformed)?;
    let expires_at = DateTime::from_timestamp(i64::from(u32::from_be_bytes(exp)), 0).ok_or_else(malformed)?;
    if now >= expires_at {
        return Err(refused("code_expired", "码已过期，请刷新后重新出示", "the code has expired; refresh it and show it again"));
    }
    let sig = p.signature.to_bytes();
    Ok(Token { key_id: hex::encode(payload.get(1..5).unwrap_or_default()), person_ref: person, colour, expires_at, tag: sig[..16].to_vec() })
}

fn verify(keys: &VerifyKeys, token: &str, kind: u8, now: DateTime<Utc>) -> Result<Token, Error> {
    let p = parse(keys, token, kind)?;
    signed(&p)?;
    read(&p, now)
}

/// Verify a code token offline: well formed, signed by one of this county's keys, not expired.
pub fn verify_token(vault: &crate::Vault, token: &str, now: DateTime<Utc>) -> Result<Token, Error> {
    verify(&VerifyKeys::new(&vault.signing_public_keys()), token, KIND_CODE, now)
}

/// Verify a code token with public keys only, as a scanner does offline.
pub fn verify_offline(keys: &VerifyKeys, token: &str, now: DateTime<Utc>) -> Result<Token, Error> {
    verify(keys, token, KIND_CODE, now)
}

/// Signatures checked together (`ed25519_dalek::verify_batch`): one multi-scalar multiplication
/// for the set costs less than one check each.
const BATCH: usize = 64;

/// Verify many code tokens, each as `verify_offline` does at its time, with their signatures
/// checked in batches. A batch holding a bad signature is checked again one by one, so each
/// token gets the answer `verify_offline` gives it.
pub fn verify_many(keys: &VerifyKeys, tokens: &[(&str, DateTime<Utc>)]) -> Vec<Result<Token, Error>> {
    let parsed: Vec<Result<Parsed, Error>> = tokens.iter().map(|(t, _)| parse(keys, t, KIND_CODE)).collect();
    let mut sig_ok = vec![false; parsed.len()];
    let good: Vec<usize> = (0..parsed.len()).filter(|i| parsed.get(*i).is_some_and(Result::is_ok)).collect();
    for set in good.chunks(BATCH) {
        let ps: Vec<&Parsed> = set.iter().filter_map(|i| parsed.get(*i).and_then(|p| p.as_ref().ok())).collect();
        let messages: Vec<&[u8]> = ps.iter().map(|p| p.payload.as_slice()).collect();
        let signatures: Vec<ed25519_dalek::Signature> = ps.iter().map(|p| p.signature).collect();
        let keys: Vec<ed25519_dalek::VerifyingKey> = ps.iter().map(|p| p.key).collect();
        let all = ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok();
        for (i, p) in set.iter().zip(ps) {
            if let Some(ok) = sig_ok.get_mut(*i) {
                *ok = all || signed(p).is_ok();
            }
        }
    }
    parsed.into_iter().zip(sig_ok).zip(tokens).map(|((p, ok), (_, at))| p.and_then(|p| if ok { read(&p, *at) } else { Err(forged()) })).collect()
}

/// The person a code token names, its signature not checked: to read ahead what a
/// verification will need, never to trust.
pub fn person_named(token: &str) -> Option<Uuid> {
    let bytes = B64.decode(token.trim()).ok().filter(|b| b.len() == PAYLOAD_CODE + SIG && b.first() == Some(&KIND_CODE))?;
    bytes.get(5..21).and_then(|s| Uuid::from_slice(s).ok())
}

/// The Ed25519 check alone, with the key decoded, nothing else of `verify_offline`: the floor a
/// single verification cannot go below (`baton bench` reports verification beside it).
pub fn signature_only(keys: &VerifyKeys, token: &str) -> bool {
    use ed25519_dalek::Verifier;
    let Ok(bytes) = B64.decode(token) else { return false };
    let (payload, sig) = bytes.split_at(PAYLOAD_CODE.min(bytes.len()));
    let (Some((_, key)), Ok(sig)) = (keys.0.first(), ed25519_dalek::Signature::from_slice(sig)) else { return false };
    key.verify(payload, &sig).is_ok()
}

pub fn open_link(vault: &crate::Vault, link: &str, now: DateTime<Utc>) -> Result<Token, Error> {
    verify(&VerifyKeys::new(&vault.signing_public_keys()), link, KIND_LINK, now)
}

// ---------- stored codes ----------

/// A person's current code as pages and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct CodeView {
    pub person_id: Uuid,
    pub colour: Colour,
    pub reasons: Vec<Reason>,
    pub until: Option<DateTime<Utc>>,
    pub policy_version: i64,
    pub inputs: CodeInputs,
    pub rev: i64,
    pub computed_at: DateTime<Utc>,
    pub changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub rev: i64,
    pub colour: Colour,
    pub reasons: Vec<Reason>,
    pub until: Option<DateTime<Utc>>,
    pub policy_version: i64,
    pub inputs: CodeInputs,
    pub cause: String,
    pub at: DateTime<Utc>,
}

fn colour_of(s: &str) -> Result<Colour, Error> {
    Colour::parse(s).ok_or_else(|| Error::internal(format!("stored colour {s}")))
}

fn json_of<T: serde::de::DeserializeOwned>(r: &Row, col: &str) -> Result<T, Error> {
    let s: String = r.get(col)?;
    serde_json::from_str(&s).map_err(|e| Error::internal(format!("{col}: {e}")))
}

/// The stored code of a person (no scope check: callers check the person first). Its inputs
/// are its revision's, in the history; a code written before the history blocks has its reasons
/// and inputs in that revision's row of `person_code_history`.
async fn stored(store: &Store, person: Uuid) -> Result<Option<CodeView>, Error> {
    let Some(r) = store
        .db
        .fetch_optional(q!(
            "SELECT c.person_id, c.colour, r.reasons, c.valid_until, c.policy_version, c.rev, c.computed_at, c.changed_at, c.hist,
                    h.reasons AS legacy_reasons, h.inputs AS legacy_inputs
               FROM person_codes c
               LEFT JOIN code_reasons r ON r.id = c.reasons_id
               LEFT JOIN person_code_history h ON c.hist IS NULL AND h.person_id = c.person_id AND h.rev = c.rev
              WHERE c.person_id = $1",
            person
        ))
        .await?
    else {
        return Ok(None);
    };
    let (reasons, inputs) = match r.get::<Option<Uuid>>("hist")? {
        Some(block) => (json_of(&r, "reasons")?, crate::code_history::entry(store, block, person).await?.inputs),
        None => (json_of(&r, "legacy_reasons")?, json_of(&r, "legacy_inputs")?),
    };
    Ok(Some(CodeView {
        person_id: r.get("person_id")?,
        colour: colour_of(&r.get::<String>("colour")?)?,
        reasons,
        until: r.get("valid_until")?,
        policy_version: r.get("policy_version")?,
        inputs,
        rev: r.get("rev")?,
        computed_at: r.get("computed_at")?,
        changed_at: r.get("changed_at")?,
    }))
}

/// A person's current code; computed now if the person has none yet or it has passed its `until`,
/// so that no request finds a person without a current code.
pub async fn current(store: &Store, person: Uuid) -> Result<CodeView, Error> {
    // A merged-away record's code is its survivor's.
    let person = crate::persons::survivor(store, person).await?;
    let now = store.now();
    if let Some(v) = stored(store, person).await?
        && v.until.is_none_or(|u| u > now)
    {
        return Ok(v);
    }
    recompute_ids(store, &[person], "on_demand").await?;
    stored(store, person).await?.ok_or(Error::NotFound("person"))
}

/// A person's code for a signed-in viewer whose scope covers the person.
pub async fn get(store: &Store, who: &Principal, person: Uuid) -> Result<CodeView, Error> {
    crate::persons::get(store, who, person).await?;
    current(store, person).await
}

/// A page of a person's code history, newest first (by revision). A merged-away record's
/// history ends where it was merged; its head was kept with the merge.
pub async fn history(store: &Store, who: &Principal, person: Uuid, page: &PageQuery) -> Result<Paged<HistoryEntry>, Error> {
    let page = Page::<i64>::read("code_history", page)?;
    crate::persons::get(store, who, person).await?;
    let head = match store.db.fetch_optional(q!("SELECT hist FROM person_codes WHERE person_id = $1", person)).await? {
        Some(r) => r.get("hist")?,
        None => match store.db.fetch_optional(q!("SELECT code_hist FROM person_merges WHERE merged_id = $1", person)).await? {
            Some(r) => r.get("code_hist")?,
            None => None,
        },
    };
    let list = crate::code_history::chain(store, person, head, page.after, usize::try_from(page.fetch()).unwrap_or(0)).await?;
    Ok(page.finish(list, |e| e.rev))
}

/// A revision kept in `person_code_history` (written before the history blocks).
pub(crate) fn legacy_entry(r: &Row) -> Result<HistoryEntry, Error> {
    Ok(HistoryEntry {
        rev: r.get("rev")?,
        colour: colour_of(&r.get::<String>("colour")?)?,
        reasons: json_of(r, "reasons")?,
        until: r.get("valid_until")?,
        policy_version: r.get("policy_version")?,
        inputs: json_of(r, "inputs")?,
        cause: r.get("cause")?,
        at: r.get("at")?,
    })
}

// ---------- gathering inputs in sets ----------

/// Persons per transaction when recomputing in sets: a chunk holds the writer about 12 ms
/// (bench codes, county-wide); at 2,000 the run took a twentieth longer (more commits, readers
/// starting over after each).
pub const CHUNK: usize = 4000;
/// Ids per `IN (…)` list. Small on purpose: the SQLite driver looks each parameter up by
/// position in a scan of the statement's parameters, so binding costs grow with the square of
/// their number.
pub const IN_LIST: usize = 100;

/// `prefix ($first, …, $first+n-1) suffix`, built once per statement and kept for the process:
/// the statement layer takes static SQL, and a set-based read needs a list of ids.
fn in_list(prefix: &str, first: usize, suffix: &str) -> &'static str {
    let ph: Vec<String> = (first..first + IN_LIST).map(|i| format!("${i}")).collect();
    leak(format!("{prefix} ({}) {suffix}", ph.join(", ")))
}

/// Bind `ids` (at most `IN_LIST`) padded with the nil id (which names no person).
pub fn id_args(lead: Vec<Val>, ids: &[Uuid]) -> Vec<Val> {
    let mut args = lead;
    args.extend(ids.iter().map(|i| Val::from(*i)));
    args.extend(std::iter::repeat_n(Val::from(Uuid::nil()), IN_LIST.saturating_sub(ids.len())));
    args
}

/// How a set of persons' rows are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// `IN (…)` lists, `IN_LIST` ids a statement (on PostgreSQL the whole set in one
    /// `= ANY`): for a set scattered over the persons.
    Lists,
    /// One range from the set's first id to its last, in person order, rows of persons outside
    /// the set dropped: for a set that holds most persons of its range (every person, or a county), where a
    /// range read costs a fraction of the index probes it replaces.
    Range,
}

/// A fact read of a set of persons: the statement by `IN (…)` list, by a list of ids bound
/// whole (PostgreSQL: `= ANY`), and by id range, each in person order, with the column that
/// names the person. All three are made from one head, so that they read the same columns.
struct SetRead {
    list: &'static str,
    any: &'static str,
    range: &'static str,
    col: &'static str,
}

impl SetRead {
    /// `head` ends in `WHERE … AND` (or `WHERE`) and takes `leads` parameters of its own.
    fn new(head: &str, leads: usize, col: &'static str) -> SetRead {
        let order = format!("ORDER BY {col}");
        SetRead {
            list: in_list(&format!("{head} {col} IN"), leads + 1, &order),
            any: leak(format!("{head} {col} = ANY(${}) {order}", leads + 1)),
            range: leak(format!("{head} {col} >= ${} AND {col} <= ${} {order}", leads + 1, leads + 2)),
            col,
        }
    }
}

static PERSONS: LazyLock<SetRead> = LazyLock::new(|| SetRead::new("SELECT id, jurisdiction, merged_into FROM persons WHERE", 0, "id"));
static STAYS: LazyLock<SetRead> =
    LazyLock::new(|| SetRead::new("SELECT person_id, division_code, stay_from, stay_to FROM person_stays WHERE stay_to > $1 AND", 1, "person_id"));
static CONTROLS: LazyLock<SetRead> =
    LazyLock::new(|| SetRead::new("SELECT person_id, kind, valid_from, valid_to FROM person_controls WHERE lifted_at IS NULL AND", 0, "person_id"));
static RESULTS: LazyLock<SetRead> =
    LazyLock::new(|| SetRead::new("SELECT person_id, status, sampled_at, resulted_at FROM person_results WHERE", 0, "person_id"));
static CODES: LazyLock<SetRead> = LazyLock::new(|| {
    SetRead::new("SELECT person_id, colour, reasons_id, valid_until, policy_version, rev, jurisdiction, hist FROM person_codes WHERE", 0, "person_id")
});

/// Every row of `read` for the persons `ids` (sorted, distinct).
async fn fetch_set(store: &Store, read: &SetRead, lead: &[Val], ids: &[Uuid], how: Reads) -> Result<Vec<Row>, Error> {
    let mut out = Vec::new();
    match (how, ids.first(), ids.last()) {
        (Reads::Range, Some(first), Some(last)) => {
            let mut args = lead.to_vec();
            args.extend([Val::from(*first), Val::from(*last)]);
            // Rows come in person order, as `ids` are: walked side by side, not searched.
            let mut at = 0;
            for r in store.db.fetch_all(Q { sql: read.range, args }).await? {
                let id: Uuid = r.get(read.col)?;
                while ids.get(at).is_some_and(|i| *i < id) {
                    at += 1;
                }
                if ids.get(at) == Some(&id) {
                    out.push(r);
                }
            }
        }
        _ if store.db.backend() == crate::Backend::Postgres => {
            let mut args = lead.to_vec();
            args.push(Val::Uuids(ids.to_vec()));
            out = store.db.fetch_all(Q { sql: read.any, args }).await?;
        }
        _ => {
            for part in ids.chunks(IN_LIST) {
                out.extend(store.db.fetch_all(Q { sql: read.list, args: id_args(lead.to_vec(), part) }).await?);
            }
        }
    }
    Ok(out)
}

/// The risk areas that can matter for stays in the look-back window, as known now, indexed by division.
pub struct AreaIndex {
    by_code: BTreeMap<String, Vec<RiskArea>>,
}

impl AreaIndex {
    pub async fn load(store: &Store, rules: &CodeRules, now: DateTime<Utc>) -> Result<AreaIndex, Error> {
        let start = now - Duration::days(i64::from(rules.itinerary_days));
        let rows = store
            .db
            .fetch_all(q!(
                "SELECT id, division_code, place, level, valid_from, valid_to FROM risk_areas
                  WHERE created_at <= $1 AND (superseded_at IS NULL OR superseded_at > $1)
                    AND valid_from < $1 AND (valid_to IS NULL OR valid_to > $2)",
                now,
                start
            ))
            .await?;
        let mut by_code: BTreeMap<String, Vec<RiskArea>> = BTreeMap::new();
        for r in &rows {
            let code: String = r.get("division_code")?;
            let place: String = r.get("place")?;
            let level: String = r.get("level")?;
            by_code.entry(code.clone()).or_default().push(RiskArea {
                id: r.get("id")?,
                division_code: code,
                place: if place.is_empty() { None } else { Some(place) },
                level: RiskLevel::parse(&level).ok_or_else(|| Error::internal(format!("risk level {level}")))?,
                from: r.get("valid_from")?,
                to: r.get("valid_to")?,
            });
        }
        Ok(AreaIndex { by_code })
    }

    /// Areas at a stay's division or an ancestor, or inside it (see `risk::place_relation`).
    fn candidates<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a RiskArea> {
        let ancestors = [2usize, 4, 6, 9].into_iter().filter(|n| *n < code.len()).filter_map(|n| code.get(..n).and_then(|p| self.by_code.get(p)));
        let inside =
            self.by_code.range::<str, _>((std::ops::Bound::Included(code), std::ops::Bound::Excluded(prefix_end(code).as_str()))).map(|(_, v)| v);
        ancestors.chain(inside).flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }
}

/// What one computation needs besides the facts.
pub struct Context {
    pub rules: CodeRules,
    pub policy_version: i64,
    pub areas: AreaIndex,
    pub now: DateTime<Utc>,
}

impl Context {
    pub async fn load(store: &Store) -> Result<Context, Error> {
        let now = store.now();
        let policy = crate::policy::current(store, now).await?;
        let rules = policy.params.codes.clone();
        let areas = AreaIndex::load(store, &rules, now).await?;
        Ok(Context { rules, policy_version: policy.version, areas, now })
    }
}

/// The code a person holds, as a recompute compares it with the one it decides.
struct Old {
    colour: String,
    reasons_id: Option<Vec<u8>>,
    until: Option<DateTime<Utc>>,
    policy_version: i64,
    rev: i64,
    jurisdiction: String,
    hist: Option<Uuid>,
}

/// One person of a chunk: their facts, and the code they hold.
struct Facts {
    id: Uuid,
    jurisdiction: String,
    inputs: CodeInputs,
    stays: Vec<Stay>,
    old: Option<Old>,
}

/// The person `id` among `persons` (in id order), found from `at`: rows read in person order
/// are walked beside the persons, one step at a time; a row out of that order is searched for.
fn person_at<'a>(persons: &'a mut [Facts], at: &mut usize, id: Uuid) -> Option<&'a mut Facts> {
    while persons.get(*at).is_some_and(|p| p.id < id) {
        *at += 1;
    }
    if persons.get(*at).is_none_or(|p| p.id != id) {
        *at = persons.binary_search_by_key(&id, |p| p.id).ok()?;
    }
    persons.get_mut(*at)
}

/// The facts of a set of persons and the codes they hold, in id order; merged-away records are
/// left out.
async fn gather(store: &Store, ctx: &Context, ids: &[Uuid], how: Reads) -> Result<Vec<Facts>, Error> {
    let mut out: Vec<Facts> = Vec::with_capacity(ids.len());
    for r in fetch_set(store, &PERSONS, &[], ids, how).await? {
        if r.get::<Option<Uuid>>("merged_into")?.is_none() {
            out.push(Facts { id: r.get("id")?, jurisdiction: r.get("jurisdiction")?, inputs: CodeInputs::default(), stays: Vec::new(), old: None });
        }
    }
    // `fetch_set` gives rows in person order; the persons are sorted here too, so that a
    // list read (in the order of its lists) still finds each.
    out.sort_unstable_by_key(|p| p.id);
    let start = ctx.now - Duration::days(i64::from(ctx.rules.itinerary_days));
    let mut at = 0;
    for r in fetch_set(store, &STAYS, &[start.into()], ids, how).await? {
        if let Some(p) = person_at(&mut out, &mut at, r.get("person_id")?) {
            p.stays.push(Stay { place: r.get("division_code")?, from: r.get("stay_from")?, to: r.get("stay_to")? });
        }
    }
    let mut at = 0;
    for r in fetch_set(store, &CONTROLS, &[], ids, how).await? {
        let kind: String = r.get("kind")?;
        if let (Some(p), Some(kind)) = (person_at(&mut out, &mut at, r.get("person_id")?), ControlKind::parse(&kind)) {
            p.inputs.controls.push(Control { kind, from: r.get("valid_from")?, to: r.get("valid_to")? });
        }
    }
    let mut at = 0;
    for r in fetch_set(store, &RESULTS, &[], ids, how).await? {
        let status: String = r.get("status")?;
        if let (Some(p), Some(status)) = (person_at(&mut out, &mut at, r.get("person_id")?), ResultStatus::parse(&status)) {
            p.inputs.result = Some(TestResult { status, sampled_at: r.get("sampled_at")?, resulted_at: r.get("resulted_at")? });
        }
    }
    let mut at = 0;
    for r in fetch_set(store, &CODES, &[], ids, how).await? {
        if let Some(p) = person_at(&mut out, &mut at, r.get("person_id")?) {
            p.old = Some(Old {
                colour: r.get("colour")?,
                reasons_id: r.get("reasons_id")?,
                until: r.get("valid_until")?,
                policy_version: r.get("policy_version")?,
                rev: r.get("rev")?,
                jurisdiction: r.get("jurisdiction")?,
                hist: r.get("hist")?,
            });
        }
    }
    // Companions clear on a series of negative tests: their negative samples since the exposure.
    // In id order, as `out` is.
    let companions: Vec<(Uuid, DateTime<Utc>)> = out
        .iter()
        .filter_map(|p| p.inputs.controls.iter().filter(|c| c.kind == ControlKind::Companion).map(|c| c.from).min().map(|f| (p.id, f)))
        .collect();
    if let Some(since) = companions.iter().map(|(_, f)| *f).min() {
        let ids: Vec<Uuid> = companions.iter().map(|(id, _)| *id).collect();
        let mut at = 0;
        for (id, mut samples) in crate::results::negatives_since(store, &ids, since).await? {
            let from = companions.binary_search_by_key(&id, |(c, _)| *c).ok().and_then(|i| companions.get(i)).map(|(_, f)| *f);
            if let (Some(p), Some(from)) = (person_at(&mut out, &mut at, id), from) {
                samples.retain(|s| *s >= from);
                samples.sort();
                p.inputs.negatives = samples;
            }
        }
    }
    let itinerary = ctx.rules.itinerary();
    let mut areas: Vec<&RiskArea> = Vec::new();
    for p in &mut out {
        areas.clear();
        for stay in &p.stays {
            for a in ctx.areas.candidates(&stay.place) {
                if !areas.iter().any(|x| x.id == a.id) {
                    areas.push(a);
                }
            }
        }
        if !areas.is_empty() {
            p.inputs.hits = baton_domain::risk::match_itinerary(&p.stays, &areas, &itinerary, ctx.now);
        }
        // A stable order, so that equal facts give equal stored inputs.
        p.inputs.controls.sort_by(|a, b| (a.from, a.kind.as_str(), a.to).cmp(&(b.from, b.kind.as_str(), b.to)));
    }
    Ok(out)
}

/// The key of a set of reasons in `code_reasons`: the first 16 bytes of the SHA-256 of its JSON.
fn reasons_id(json: &str) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(json.as_bytes()).get(..16).unwrap_or_default().to_vec()
}

/// The codes of a set of persons that changed, decided and ready to write: the rows of
/// `person_codes` (new; over an old code whose person stayed in their jurisdiction, leaving
/// `jurisdiction` alone so that SQLite does not rewrite its index entry; over one whose person
/// moved), the sets of reasons they name, and their revisions in history blocks.
pub struct Decided {
    new: Vec<Vec<Val>>,
    stayed: Vec<Vec<Val>>,
    moved: Vec<Vec<Val>>,
    reasons: Vec<Vec<Val>>,
    blocks: Vec<crate::code_history::Pending>,
    /// The persons whose new code has an `until`, and that `until`.
    dues: Vec<(Uuid, DateTime<Utc>)>,
    cause: String,
    policy_version: i64,
    at: DateTime<Utc>,
}

/// Decide the codes of up to `CHUNK` persons (`ids` sorted, distinct) from their facts as the
/// readers see them, without the writer; only codes whose colour, reasons, `until`, policy
/// version or jurisdiction changed are kept. The writer is held only to write them (`write_decided`).
pub async fn decide(store: &Store, ctx: &Context, ids: &[Uuid], cause: &str, how: Reads) -> Result<Decided, Error> {
    let facts = gather(store, ctx, ids, how).await?;
    let (mut new, mut stayed, mut moved) = (Vec::new(), Vec::new(), Vec::new());
    let mut reasons_named: HashMap<Vec<u8>, String> = HashMap::new();
    // Sets of reasons repeat across a chunk (a county-wide area gives most persons the same
    // one): each is written as JSON and hashed once.
    let mut known: HashMap<Vec<Reason>, (Vec<u8>, String)> = HashMap::new();
    let mut entries: Vec<crate::code_history::Entry> = Vec::new();
    let mut blocks = Vec::new();
    let mut dues = Vec::new();
    let mut block = Uuid::now_v7();
    for Facts { id, jurisdiction, inputs, old, .. } in facts {
        let code: Code = baton_domain::code::evaluate(&inputs, &ctx.rules, ctx.now);
        let (rid, reasons) = match known.get(&code.reasons) {
            Some(k) => k,
            None => {
                let json = serde_json::to_string(&code.reasons).map_err(Error::internal)?;
                known.entry(code.reasons.clone()).or_insert((reasons_id(&json), json))
            }
        };
        let until = code.until.map(audit::micros);
        let prev = old.as_ref();
        if let Some(o) = prev
            && o.colour == code.colour.as_str()
            && o.reasons_id.as_ref() == Some(rid)
            && o.until == until
            && o.policy_version == ctx.policy_version
            && o.jurisdiction == jurisdiction
        {
            continue;
        }
        let rev = prev.map_or(1, |o| o.rev + 1);
        if let Some(u) = until {
            dues.push((id, u));
        }
        let mut row: Vec<Val> = vec![
            id.into(),
            code.colour.as_str().into(),
            rid.clone().into(),
            until.into(),
            ctx.policy_version.into(),
            rev.into(),
            ctx.now.into(),
            block.into(),
        ];
        match prev {
            None => {
                row.push(jurisdiction.into());
                new.push(row);
            }
            Some(o) if o.jurisdiction == jurisdiction => stayed.push(row),
            Some(_) => {
                row.push(jurisdiction.into());
                moved.push(row);
            }
        }
        if !reasons_named.contains_key(rid) {
            reasons_named.insert(rid.clone(), reasons.clone());
        }
        entries.push(crate::code_history::Entry {
            person: id,
            rev,
            colour: code.colour,
            reasons: code.reasons,
            until,
            inputs,
            prev: prev.and_then(|o| o.hist),
        });
        if entries.len() == crate::code_history::BLOCK {
            blocks.push(crate::code_history::Pending::new(block, &entries)?);
            entries.clear();
            block = Uuid::now_v7();
        }
    }
    if !entries.is_empty() {
        blocks.push(crate::code_history::Pending::new(block, &entries)?);
    }
    let reasons = reasons_named.into_iter().map(|(id, json)| vec![id.into(), json.into()]).collect();
    Ok(Decided { new, stayed, moved, reasons, blocks, dues, cause: cause.to_string(), policy_version: ctx.policy_version, at: ctx.now })
}

/// What writing decided codes did: how many changed, and how many another writer's code had
/// overtaken since they were decided (left as that writer wrote them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub changed: usize,
    pub overtaken: usize,
}

/// Write decided codes, the reasons they name and their history blocks in `tx`. A code lands
/// only over the revision it was decided from: if another writer wrote the person's code
/// meanwhile (from facts that may be newer or older than these), it is left alone, counted
/// `overtaken` and kept out of the history, and the caller decides again from the facts as they
/// are now ([`settle`]). The codes that landed with an `until` are marked due ([`due_marks`]).
/// `d` is borrowed, so that a bulk writer can free it on another thread.
pub async fn write_decided(tx: &mut Tx, d: &Decided) -> Result<Written, Error> {
    let decided = d.new.len() + d.stayed.len() + d.moved.len();
    tx.execute_rows(&SQL_INSERT_REASONS, WRITE_ROWS, &SQL_INSERT_REASON, &d.reasons).await?;
    let mut landed: HashSet<Uuid> = HashSet::with_capacity(decided);
    landed.extend(tx.execute_rows_landed(&SQL_INSERT_CODES, WRITE_ROWS, &SQL_INSERT_CODE, &d.new, "person_id").await?);
    landed.extend(tx.execute_rows_landed(&SQL_UPDATE_CODES_STAYED, WRITE_ROWS, &SQL_UPDATE_CODE_STAYED, &d.stayed, "person_id").await?);
    landed.extend(tx.execute_rows_landed(&SQL_UPDATE_CODES_MOVED, WRITE_ROWS, &SQL_UPDATE_CODE_MOVED, &d.moved, "person_id").await?);
    crate::code_history::write(tx, &d.blocks, &landed, &d.cause, d.policy_version, d.at).await?;
    let marks = due_marks(d.dues.iter().filter(|(p, _)| landed.contains(p)).copied());
    tx.execute_rows(&SQL_INSERT_DUES, WRITE_ROWS, &SQL_INSERT_DUE, &marks).await?;
    Ok(Written { changed: landed.len(), overtaken: decided.saturating_sub(landed.len()) })
}

/// The end of the hour of the clock a time falls in: codes due within one hour share a mark,
/// which covers them up to this end.
pub fn due_hour_end(t: DateTime<Utc>) -> DateTime<Utc> {
    let end = (t.timestamp().div_euclid(3600) + 1) * 3600;
    DateTime::from_timestamp(end, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The rows of `code_due` for codes written together (person, `until`): for each hour their
/// `until`s fall in, the earliest of them and the range of persons holding them. A mark
/// promises that every code it was written for lies inside its range with an `until` from its
/// `at` to the end of its hour; `recompute::sweep` keeps that promise as it works the mark.
fn due_marks(dues: impl Iterator<Item = (Uuid, DateTime<Utc>)>) -> Vec<Vec<Val>> {
    let mut hours: BTreeMap<DateTime<Utc>, (DateTime<Utc>, Uuid, Uuid)> = BTreeMap::new();
    for (p, u) in dues {
        let m = hours.entry(due_hour_end(u)).or_insert((u, p, p));
        *m = (m.0.min(u), m.1.min(p), m.2.max(p));
    }
    hours.into_values().map(|(at, lo, hi)| vec![at.into(), lo.into(), hi.into()]).collect()
}

/// Rows per multi-row write.
const WRITE_ROWS: usize = 10;

/// `(…), … ×rows`: each row's parameters numbered on from the previous row's, in the order
/// and with the casts of `template` (`(n, cast)`: the row's `n`th parameter, 1-based, of
/// `per_row`; a cast where PostgreSQL cannot tell the type from a column, as in
/// `UPDATE … FROM (VALUES …)`).
pub(crate) fn value_rows(template: &[(usize, &str)], per_row: usize, rows: usize) -> String {
    let row = |r: usize| {
        let v: Vec<String> = template.iter().map(|(n, cast)| format!("${}{cast}", r * per_row + n)).collect();
        format!("({})", v.join(", "))
    };
    (0..rows).map(row).collect::<Vec<_>>().join(", ")
}

/// `{head} VALUES (…), … ×rows {tail}` with `cols` parameters a row.
pub(crate) fn values(head: &str, cols: usize, rows: usize, tail: &str) -> &'static str {
    let template: Vec<(usize, &str)> = (1..=cols).map(|n| (n, "")).collect();
    leak(format!("{head} VALUES {} {tail}", value_rows(&template, cols, rows)))
}

pub(crate) fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

// A code row keeps its size when it is rewritten (its reasons by reference, its inputs in the
// history), so SQLite rewrites it in place. A code is written only over the revision it was
// decided from (`write_decided`): a new one only where there is none, an old one only where
// its `rev` is still the one before; a write says whether it landed. (An `UPDATE`
// seeks the row once where an upsert seeks it to find the conflict and again to update it.)
//
// The rows `decide` makes: person, colour, reasons id, until, policy version, rev, now, block,
// and for a new code or a moved person the jurisdiction. `changed_at` moves only when the colour does.
const NEW_ROW: [(usize, &str); 10] = [(1, ""), (2, ""), (3, ""), (4, ""), (5, ""), (6, ""), (7, ""), (7, ""), (8, ""), (9, "")];
const CODES_HEAD: &str =
    "INSERT INTO person_codes (person_id, colour, reasons_id, valid_until, policy_version, rev, computed_at, changed_at, hist, jurisdiction)";
const CODES_NEW_TAIL: &str = "ON CONFLICT (person_id) DO NOTHING";
static SQL_INSERT_CODES: LazyLock<&'static str> =
    LazyLock::new(|| leak(format!("{CODES_HEAD} VALUES {} {CODES_NEW_TAIL} RETURNING person_id", value_rows(&NEW_ROW, 9, WRITE_ROWS))));
static SQL_INSERT_CODE: LazyLock<&'static str> =
    LazyLock::new(|| leak(format!("{CODES_HEAD} VALUES {} {CODES_NEW_TAIL}", value_rows(&NEW_ROW, 9, 1))));
// A code whose person stayed in their jurisdiction leaves `jurisdiction` alone: SQLite rewrites
// the index entry of every indexed column a statement sets, changed or not (three-quarters more
// time in a trial).
const UPDATE_ONE: &str = "UPDATE person_codes SET colour = $2, reasons_id = $3, valid_until = $4, policy_version = $5, rev = $6,
    computed_at = $7, hist = $8, changed_at = CASE WHEN colour <> $2 THEN $7 ELSE changed_at END";
const UPDATE_ONE_WHERE: &str = "WHERE person_id = $1 AND rev = $6 - 1";
static SQL_UPDATE_CODE_STAYED: LazyLock<&'static str> = LazyLock::new(|| leak(format!("{UPDATE_ONE} {UPDATE_ONE_WHERE}")));
static SQL_UPDATE_CODE_MOVED: LazyLock<&'static str> = LazyLock::new(|| leak(format!("{UPDATE_ONE}, jurisdiction = $9 {UPDATE_ONE_WHERE}")));
/// PostgreSQL: `WRITE_ROWS` updates a statement.
fn update_many(moved: bool) -> &'static str {
    let mut template = vec![
        (1, "::uuid"),
        (2, "::text"),
        (3, "::bytea"),
        (4, "::timestamptz"),
        (5, "::bigint"),
        (6, "::bigint"),
        (7, "::timestamptz"),
        (8, "::uuid"),
    ];
    let (cols, set) = if moved {
        template.push((9, "::text"));
        (", jurisdiction", ", jurisdiction = v.jurisdiction")
    } else {
        ("", "")
    };
    leak(format!(
        "UPDATE person_codes c SET colour = v.colour, reasons_id = v.reasons_id, valid_until = v.valid_until, policy_version = v.policy_version,
            rev = v.rev, computed_at = v.at, hist = v.hist, changed_at = CASE WHEN c.colour <> v.colour THEN v.at ELSE c.changed_at END{set}
          FROM (VALUES {}) AS v (person_id, colour, reasons_id, valid_until, policy_version, rev, at, hist{cols})
         WHERE c.person_id = v.person_id AND c.rev = v.rev - 1
         RETURNING c.person_id",
        value_rows(&template, template.len(), WRITE_ROWS)
    ))
}
static SQL_UPDATE_CODES_STAYED: LazyLock<&'static str> = LazyLock::new(|| update_many(false));
static SQL_UPDATE_CODES_MOVED: LazyLock<&'static str> = LazyLock::new(|| update_many(true));
// Sets of reasons are kept once: a chunk names each of its sets, most of them kept already.
const REASONS_HEAD: &str = "INSERT INTO code_reasons (id, reasons)";
const REASONS_TAIL: &str = "ON CONFLICT (id) DO NOTHING";
static SQL_INSERT_REASONS: LazyLock<&'static str> = LazyLock::new(|| values(REASONS_HEAD, 2, WRITE_ROWS, REASONS_TAIL));
static SQL_INSERT_REASON: LazyLock<&'static str> = LazyLock::new(|| values(REASONS_HEAD, 2, 1, REASONS_TAIL));
const DUES_HEAD: &str = "INSERT INTO code_due (at, lo, hi)";
const DUES_TAIL: &str = "ON CONFLICT (at, lo, hi) DO NOTHING";
static SQL_INSERT_DUES: LazyLock<&'static str> = LazyLock::new(|| values(DUES_HEAD, 3, WRITE_ROWS, DUES_TAIL));
static SQL_INSERT_DUE: LazyLock<&'static str> = LazyLock::new(|| values(DUES_HEAD, 3, 1, DUES_TAIL));

/// Recompute the codes of `ids` now, in transactions of `CHUNK`, each audited.
pub async fn recompute_ids(store: &Store, ids: &[Uuid], cause: &str) -> Result<usize, Error> {
    let ctx = Context::load(store).await?;
    let mut changed = 0;
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    for chunk in ids.chunks(CHUNK) {
        let d = decide(store, &ctx, chunk, cause, Reads::Lists).await?;
        changed += settle(store, chunk, d, cause).await?;
    }
    Ok(changed)
}

/// Writes of one set that another writer may overtake before `settle` gives up: each try
/// decides from newer facts, so only a person whose code is rewritten without pause gets there.
const SETTLE_TRIES: usize = 5;

/// Write `d`, decided for `ids`, audited; while another writer overtook some of its codes,
/// decide `ids` again from the facts and policy as they are now and write that. Returns how
/// many codes changed.
pub async fn settle(store: &Store, ids: &[Uuid], d: Decided, cause: &str) -> Result<usize, Error> {
    let mut d = d;
    let mut changed = 0;
    for _ in 0..SETTLE_TRIES {
        let mut tx = store.db.begin().await?;
        let w = write_decided(&mut tx, &d).await?;
        changed += w.changed;
        let entry = audit::Entry {
            action: "code.recompute",
            object_type: "person_code",
            object_id: ids.first().map(Uuid::to_string).unwrap_or_default(),
            jurisdiction: "",
            detail: serde_json::json!({"cause": cause, "persons": ids.len(), "changed": w.changed, "overtaken": w.overtaken}),
        };
        store.audited(&Principal::system("codes"), entry, tx).await?;
        if w.overtaken == 0 {
            return Ok(changed);
        }
        let ctx = Context::load(store).await?;
        d = decide(store, &ctx, ids, cause, Reads::Lists).await?;
    }
    Err(Error::conflict("code_contended", "该人员的码正被反复更新，请稍后重试", "this code is being rewritten without pause; try again shortly"))
}

// ---------- facts this module keeps ----------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaysInput {
    pub stays: Vec<crate::risk_areas::StayInput>,
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlInput {
    pub kind: String,
    /// Default now.
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

async fn writable(store: &Store, who: &Principal, person: Uuid) -> Result<String, Error> {
    who.require(Permission::PersonsWrite)?;
    let p = crate::persons::get(store, who, person).await?;
    if p.merged_into.is_some() {
        return Err(Error::conflict("person_merged", "该人员记录已合并到另一记录", "this record was merged into another"));
    }
    Ok(p.jurisdiction)
}

/// Add declared stays to a person's itinerary; the code follows at once.
pub async fn add_stays(store: &Store, who: &Principal, person: Uuid, input: &StaysInput) -> Result<CodeView, Error> {
    let jurisdiction = writable(store, who, person).await?;
    let stays = crate::risk_areas::check_stays(&input.stays)?;
    if stays.is_empty() {
        return Err(Error::field("stays", "required", "请至少填写一段行程", "at least one stay is required"));
    }
    let source = crate::text_field("source", input.source.as_deref().unwrap_or("declared"), 1, 50).map_err(|e| Error::Invalid(vec![e]))?;
    let now = store.now();
    let mut tx = store.db.begin().await?;
    for s in &stays {
        tx.execute(q!(
            "INSERT INTO person_stays (id, person_id, division_code, stay_from, stay_to, source, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            Uuid::now_v7(),
            person,
            s.place.clone(),
            s.from,
            s.to,
            source.clone(),
            now
        ))
        .await?;
    }
    let entry = audit::Entry {
        action: "person.stays_add",
        object_type: "person",
        object_id: person.to_string(),
        jurisdiction: &jurisdiction,
        detail: serde_json::json!({"stays": stays.len(), "source": source}),
    };
    store.audited(who, entry, tx).await?;
    recompute_ids(store, &[person], "stays").await?;
    current(store, person).await
}

/// Put a control order or flag on a person; the code follows at once.
pub async fn add_control(store: &Store, who: &Principal, person: Uuid, input: &ControlInput) -> Result<CodeView, Error> {
    let jurisdiction = writable(store, who, person).await?;
    let now = store.now();
    let mut c = crate::Check::default();
    let kind = c.take(ControlKind::parse(input.kind.trim()).ok_or_else(|| {
        baton_domain::FieldError::new(
            "kind",
            "control_kind_unknown",
            "类别应为 confirmed_case、central_quarantine、home_isolation、companion 或 test_required",
            "kind must be confirmed_case, central_quarantine, home_isolation, companion or test_required",
        )
    }));
    let from = match input.from.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => c.take(crate::risk_areas::parse_time("from", s)),
        None => Some(now),
    };
    let to = match input.to.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => c.take(crate::risk_areas::parse_time("to", s)).map(Some),
        None => Some(None),
    };
    if let (Some(f), Some(Some(t))) = (from, to)
        && t <= f
    {
        c.0.push(baton_domain::FieldError::new("to", "to_before_from", "结束时间应晚于开始时间", "must be later than the start"));
    }
    let note = c.take(crate::text_field("note", input.note.as_deref().unwrap_or(""), 0, 500));
    c.done()?;
    let (Some(kind), Some(from), Some(to), Some(note)) = (kind, from, to, note) else {
        return Err(Error::internal("validation"));
    };
    let id = Uuid::now_v7();
    let mut tx = store.db.begin().await?;
    tx.execute(q!(
        "INSERT INTO person_controls (id, person_id, kind, valid_from, valid_to, note, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        id,
        person,
        kind.as_str(),
        from,
        to,
        note,
        who.name.clone(),
        now
    ))
    .await?;
    let entry = audit::Entry {
        action: "person.control_add",
        object_type: "person",
        object_id: person.to_string(),
        jurisdiction: &jurisdiction,
        detail: serde_json::json!({"control": id, "kind": kind.as_str(), "from": from, "to": to}),
    };
    store.audited(who, entry, tx).await?;
    recompute_ids(store, &[person], kind.as_str()).await?;
    current(store, person).await
}

// ---------- what a person sees ----------

/// A link for the person to open their code without an account.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub link: String,
    pub path: String,
    pub expires_at: DateTime<Utc>,
}

pub async fn issue_link(store: &Store, who: &Principal, person: Uuid) -> Result<Link, Error> {
    let jurisdiction = writable(store, who, person).await?;
    let now = store.now();
    let rules = crate::policy::current(store, now).await?.params.codes;
    let expires_at = now + Duration::days(i64::from(rules.link_days));
    let link = sign_link(&store.vault, person, expires_at)?;
    let tx = store.db.begin().await?;
    let entry = audit::Entry {
        action: "person.code_link",
        object_type: "person",
        object_id: person.to_string(),
        jurisdiction: &jurisdiction,
        detail: serde_json::json!({"expires_at": expires_at}),
    };
    store.audited(who, entry, tx).await?;
    Ok(Link { path: format!("/c/{link}"), link, expires_at })
}

/// What the person's phone shows: the code now and a fresh token for the QR, which expires after
/// `token_minutes` or at the code's `until`, whichever is first.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    pub person_ref: Uuid,
    pub name_masked: String,
    pub colour: Colour,
    pub reasons: Vec<Reason>,
    pub until: Option<DateTime<Utc>>,
    pub token: String,
    pub token_expires_at: DateTime<Utc>,
    pub public_key_id: String,
}

pub async fn show(store: &Store, link: &str) -> Result<Shown, Error> {
    let now = store.now();
    let l = open_link(&store.vault, link, now)?;
    let r =
        store.db.fetch_optional(q!("SELECT name, merged_into FROM persons WHERE id = $1", l.person_ref)).await?.ok_or(Error::NotFound("person"))?;
    // A link to a merged-away record shows the surviving record's code.
    let person = r.get::<Option<Uuid>>("merged_into")?.unwrap_or(l.person_ref);
    let name: String = r.get("name")?;
    let code = current(store, person).await?;
    let rules = crate::policy::current(store, now).await?.params.codes;
    let mut exp = now + Duration::minutes(i64::from(rules.token_minutes));
    if let Some(u) = code.until {
        exp = exp.min(u);
    }
    // Whole seconds, rounded up, so the token never outlives the code.
    let exp = DateTime::from_timestamp(exp.timestamp(), 0).unwrap_or(exp);
    Ok(Shown {
        person_ref: person,
        name_masked: mask_name(&name),
        colour: code.colour,
        reasons: code.reasons,
        until: code.until,
        token: sign_token(&store.vault, person, code.colour, exp)?,
        token_expires_at: exp,
        public_key_id: hex::encode(store.vault.signing_key_id()),
    })
}

/// A name as a person's own page shows it to whoever looks at the phone: the family name only.
pub fn mask_name(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(first) => std::iter::once(first).chain(c.map(|_| '*')).collect(),
        None => String::new(),
    }
}

/// The verification keys scanners hold: id (hex) and Ed25519 public key (base64url), active first.
pub fn public_keys(store: &Store) -> Vec<(String, String)> {
    store.vault.signing_public_keys().iter().map(|(id, pk)| (hex::encode(id), B64.encode(pk))).collect()
}

/// Codes in a viewer's scope by colour (for lists and pages).
pub async fn count_by_colour(store: &Store, who: &Principal) -> Result<Vec<(Colour, i64)>, Error> {
    who.require(Permission::PersonsRead)?;
    let (lo, hi, _) = scope_args(&who.scope);
    let rows = store
        .db
        .fetch_all(q!("SELECT colour, COUNT(*) AS n FROM person_codes WHERE jurisdiction >= $1 AND jurisdiction < $2 GROUP BY colour", lo, hi))
        .await?;
    rows.iter().map(|r| Ok((colour_of(&r.get::<String>("colour")?)?, r.get("n")?))).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::{Keyring, Vault};

    #[test]
    fn rows_find_their_person_in_order_and_out_of_it() {
        let facts =
            |id: u128| Facts { id: Uuid::from_u128(id), jurisdiction: String::new(), inputs: CodeInputs::default(), stays: vec![], old: None };
        let mut persons: Vec<Facts> = [2, 4, 6, 8].into_iter().map(facts).collect();
        // In person order (a range read), with persons skipped and repeated, and a row of no
        // one in the chunk (a merged-away record); then out of order (lists), and back.
        let rows = [2u128, 2, 5, 6, 8, 8, 9, 4, 2, 8, 1];
        let mut at = 0;
        let found: Vec<Option<u128>> = rows.iter().map(|r| person_at(&mut persons, &mut at, Uuid::from_u128(*r)).map(|p| p.id.as_u128())).collect();
        assert_eq!(found, [Some(2), Some(2), None, Some(6), Some(8), Some(8), None, Some(4), Some(2), Some(8), None]);
    }

    #[test]
    fn tokens_verify_and_forged_truncated_expired_or_misused_ones_do_not() {
        let mut ring = Keyring::generate();
        let vault = Vault::new(&ring).unwrap();
        let now = DateTime::from_timestamp(1_668_042_000, 0).unwrap();
        let person = Uuid::now_v7();
        let exp = now + Duration::minutes(10);
        let t = sign_token(&vault, person, Colour::Yellow, exp).unwrap();
        // Small enough for a QR a cheap phone camera reads at arm's length.
        assert_eq!(t.len(), 120);
        let v = verify_token(&vault, &t, now).unwrap();
        assert_eq!((v.person_ref, v.colour, v.expires_at), (person, Some(Colour::Yellow), exp));
        // Expiry is exclusive.
        assert_eq!(verify_token(&vault, &t, exp - Duration::seconds(1)).unwrap().person_ref, person);
        assert_eq!(verify_token(&vault, &t, exp).unwrap_err().code(), "code_expired");
        // One changed payload byte (the colour) with the old signature.
        let mut raw = B64.decode(&t).unwrap();
        raw[21] = 0;
        assert_eq!(verify_token(&vault, &B64.encode(&raw), now).unwrap_err().code(), "code_forged");
        // A changed expiry.
        let mut raw = B64.decode(&t).unwrap();
        raw[25] ^= 0x40;
        assert_eq!(verify_token(&vault, &B64.encode(&raw), now).unwrap_err().code(), "code_forged");
        // Truncated, garbage, empty, oversized.
        for bad in [&t[..t.len() - 3], "not a token", "", &"A".repeat(500)] {
            assert_eq!(verify_token(&vault, bad, now).unwrap_err().code(), "code_malformed", "{bad}");
        }
        // Another county's key: unknown key id.
        let other = Vault::new(&Keyring::generate()).unwrap();
        assert_eq!(verify_token(&other, &t, now).unwrap_err().code(), "code_unknown_key");
        // A link is not a code and a code is not a link.
        let link = sign_link(&vault, person, now + Duration::days(30)).unwrap();
        assert_eq!(open_link(&vault, &link, now).unwrap().person_ref, person);
        assert_eq!(verify_token(&vault, &link, now).unwrap_err().code(), "code_malformed");
        assert_eq!(open_link(&vault, &t, now).unwrap_err().code(), "code_malformed");

        // After a rotation, old tokens still verify under their key id, new ones use the new key.
        let new_id = ring.rotate_signing().unwrap();
        let rotated = Vault::new(&ring).unwrap();
        assert_eq!(verify_token(&rotated, &t, now).unwrap().key_id, v.key_id);
        let t2 = sign_token(&rotated, person, Colour::Green, exp).unwrap();
        let v2 = verify_token(&rotated, &t2, now).unwrap();
        assert_eq!(v2.key_id, new_id);
        assert_ne!(v2.key_id, v.key_id);
        assert_eq!(rotated.signing_public_keys().len(), 2);
        // The old vault never knew the new key.
        assert_eq!(verify_token(&vault, &t2, now).unwrap_err().code(), "code_unknown_key");
    }

    #[test]
    fn tokens_verified_in_batches_get_the_answers_they_get_one_by_one() {
        let mut ring = Keyring::generate();
        let old = Vault::new(&ring).unwrap();
        ring.rotate_signing().unwrap();
        let vault = Vault::new(&ring).unwrap();
        let keys = VerifyKeys::new(&vault.signing_public_keys());
        let now = DateTime::from_timestamp(1_668_042_000, 0).unwrap();
        let good = |i: u64| sign_token(&vault, Uuid::from_u64_pair(7, i), Colour::Green, now + Duration::minutes(10)).unwrap();
        let forge = |t: &str| {
            let mut raw = B64.decode(t).unwrap();
            raw[21] = 2;
            B64.encode(raw)
        };
        let other = Vault::new(&Keyring::generate()).unwrap();
        // Two batches' worth and more: a forged token in the first batch, the others spread.
        let mut tokens: Vec<(String, DateTime<Utc>)> = (0..150).map(|i| (good(i), now)).collect();
        tokens[3].0 = forge(&tokens[3].0);
        tokens[70].1 = now + Duration::minutes(10);
        tokens[71].0 = sign_token(&old, Uuid::from_u64_pair(7, 71), Colour::Yellow, now + Duration::minutes(10)).unwrap();
        tokens[72].0 = sign_token(&other, Uuid::from_u64_pair(7, 72), Colour::Green, now + Duration::minutes(10)).unwrap();
        tokens[73].0 = tokens[73].0[..40].to_string();
        // A link is shorter than a code: not one of ours as a code.
        tokens[74].0 = sign_link(&vault, Uuid::from_u64_pair(7, 74), now + Duration::days(1)).unwrap();
        tokens[149].0 = forge(&tokens[149].0);
        let set: Vec<(&str, DateTime<Utc>)> = tokens.iter().map(|(t, at)| (t.as_str(), *at)).collect();
        let many = verify_many(&keys, &set);
        assert_eq!(many.len(), set.len());
        let answer = |r: &Result<Token, Error>| r.clone().map_err(|e| e.code().to_string());
        for (i, ((t, at), m)) in set.iter().zip(&many).enumerate() {
            assert_eq!(answer(m), answer(&verify_offline(&keys, t, *at)), "token {i}");
        }
        let codes: Vec<&str> = [3, 70, 71, 72, 73, 74, 149].iter().map(|i| many[*i].as_ref().map_or_else(|e| e.code(), |_| "ok")).collect();
        assert_eq!(codes, ["code_forged", "code_expired", "ok", "code_unknown_key", "code_malformed", "code_malformed", "code_forged"]);
        assert_eq!(many.iter().filter(|m| m.is_ok()).count(), 144);
        assert_eq!(many[71].as_ref().unwrap().colour, Some(Colour::Yellow));
    }
}
