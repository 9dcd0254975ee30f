//! The history of person codes, kept in blocks. The codes written together (a chunk of a
//! recompute run, one person's change) put their revisions into blocks of up to [`BLOCK`],
//! each one row of `code_history_blocks` holding deflated JSON, so that a county-wide change
//! writes a row per 64 persons instead of one per person. A code row names the block of its
//! current revision (`person_codes.hist`), and each revision names the block of the one before
//! (`prev`): a person's history is that chain, newest first. Revisions written before the
//! blocks (migration 0018) are rows of `person_code_history`, read where the chain ends.

use crate::db::{Tx, Val};
use crate::person_codes::HistoryEntry;
use crate::{Store, q};
use baton_domain::Error;
use baton_domain::code::{CodeInputs, Colour, Reason};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use uuid::Uuid;

/// Revisions a block holds at most: small enough that reading one person's revision inflates
/// little, large enough that a block's row costs next to nothing per person.
pub const BLOCK: usize = 64;

/// One revision of a person's code as its block keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub person: Uuid,
    pub rev: i64,
    pub colour: Colour,
    pub reasons: Vec<Reason>,
    #[serde(default, with = "baton_domain::serde_time::option")]
    pub until: Option<DateTime<Utc>>,
    pub inputs: CodeInputs,
    /// The block of the person's revision before this one (none: the first revision, or one
    /// kept in `person_code_history`).
    pub prev: Option<Uuid>,
}

/// A block being written: deflated where the codes are decided, off the writer, with the
/// persons it holds. Its entries are not kept: the writer would free them, memory allocated on
/// another thread, which glibc does under that thread's arena lock (a tenth of the writer's
/// time in a county-wide run). A block that loses codes to another writer is unpacked again.
pub struct Pending {
    pub id: Uuid,
    persons: Vec<Uuid>,
    packed: Vec<u8>,
}

impl Pending {
    /// Block `id` (the codes' rows name it already) of `entries`.
    pub fn new(id: Uuid, entries: &[Entry]) -> Result<Pending, Error> {
        Ok(Pending { id, persons: entries.iter().map(|e| e.person).collect(), packed: pack(entries)? })
    }
}

/// The first byte of a block written as MessagePack. Blocks written before were deflated JSON
/// alone; no raw deflate stream starts with this byte (its block type would be 11, reserved).
/// Times in MessagePack are numbers (`baton_domain::serde_time`); blocks whose times are text
/// read as well.
const MSGPACK: u8 = 0xFF;

fn pack(entries: &[Entry]) -> Result<Vec<u8>, Error> {
    let body = rmp_serde::to_vec_named(entries).map_err(Error::internal)?;
    // Level 1: the entries of a block repeat each other's names and values, so the fastest
    // level already takes most of the gain.
    let mut out = Vec::with_capacity(body.len() / 4);
    out.push(MSGPACK);
    let mut z = flate2::write::DeflateEncoder::new(out, flate2::Compression::fast());
    z.write_all(&body).map_err(Error::internal)?;
    z.finish().map_err(Error::internal)
}

fn unpack(bytes: &[u8]) -> Result<Vec<Entry>, Error> {
    let bad = |e: &dyn std::fmt::Display| Error::internal(format!("history block: {e}"));
    let (msgpack, deflated) = match bytes.split_first() {
        Some((&MSGPACK, rest)) => (true, rest),
        _ => (false, bytes),
    };
    let mut body = Vec::new();
    flate2::read::DeflateDecoder::new(deflated).read_to_end(&mut body).map_err(|e| bad(&e))?;
    if msgpack { rmp_serde::from_slice(&body).map_err(|e| bad(&e)) } else { serde_json::from_slice(&body).map_err(|e| bad(&e)) }
}

const INSERT_HEAD: &str = "INSERT INTO code_history_blocks (id, cause, policy_version, at, entries)";

/// Write the blocks of the codes that landed (`landed`: their persons). A block whose codes
/// all landed goes as it was packed; one that lost some to another writer is packed again
/// without them, and one that lost all is not written.
pub async fn write(
    tx: &mut Tx,
    blocks: &[Pending],
    landed: &HashSet<Uuid>,
    cause: &str,
    policy_version: i64,
    at: DateTime<Utc>,
) -> Result<(), Error> {
    let mut rows: Vec<Vec<Val>> = Vec::with_capacity(blocks.len());
    for b in blocks {
        let packed = if b.persons.iter().all(|p| landed.contains(p)) {
            b.packed.clone()
        } else {
            let kept: Vec<Entry> = unpack(&b.packed)?.into_iter().filter(|e| landed.contains(&e.person)).collect();
            if kept.is_empty() {
                continue;
            }
            pack(&kept)?
        };
        rows.push(vec![b.id.into(), cause.to_string().into(), policy_version.into(), at.into(), packed.into()]);
    }
    tx.execute_rows(&SQL_INSERT_BLOCKS, WRITE_ROWS, &SQL_INSERT_BLOCK, &rows).await?;
    Ok(())
}

const WRITE_ROWS: usize = 10;
static SQL_INSERT_BLOCKS: std::sync::LazyLock<&'static str> =
    std::sync::LazyLock::new(|| crate::person_codes::values(INSERT_HEAD, 5, WRITE_ROWS, ""));
static SQL_INSERT_BLOCK: std::sync::LazyLock<&'static str> = std::sync::LazyLock::new(|| crate::person_codes::values(INSERT_HEAD, 5, 1, ""));

/// A block's row: its entries, and what they share.
struct Read {
    entries: Vec<Entry>,
    cause: String,
    policy_version: i64,
    at: DateTime<Utc>,
}

async fn read(store: &Store, id: Uuid) -> Result<Read, Error> {
    let r = store
        .db
        .fetch_optional(q!("SELECT cause, policy_version, at, entries FROM code_history_blocks WHERE id = $1", id))
        .await?
        .ok_or_else(|| Error::internal(format!("history block {id} missing")))?;
    Ok(Read { entries: unpack(&r.get::<Vec<u8>>("entries")?)?, cause: r.get("cause")?, policy_version: r.get("policy_version")?, at: r.get("at")? })
}

/// `person`'s revision in block `id` (a block holds one revision of a person at most).
pub async fn entry(store: &Store, id: Uuid, person: Uuid) -> Result<Entry, Error> {
    let b = read(store, id).await?;
    b.entries.into_iter().find(|e| e.person == person).ok_or_else(|| Error::internal(format!("history block {id} lacks {person}")))
}

/// Up to `limit` revisions of `person`'s code older than revision `below` (all for none), newest
/// first, from block `head` (the current revision's; none if it was written before the blocks)
/// down the chain, then the rows kept before the blocks.
pub async fn chain(store: &Store, person: Uuid, head: Option<Uuid>, below: Option<i64>, limit: usize) -> Result<Vec<HistoryEntry>, Error> {
    let mut out = Vec::new();
    let mut next = head;
    while let Some(id) = next.filter(|_| out.len() < limit) {
        let b = read(store, id).await?;
        let e = b.entries.into_iter().find(|e| e.person == person).ok_or_else(|| Error::internal(format!("history block {id} lacks {person}")))?;
        next = e.prev;
        // A chain is walked from its head: the newer revisions a later page starts below are passed over.
        if below.is_some_and(|b| e.rev >= b) {
            continue;
        }
        out.push(HistoryEntry {
            rev: e.rev,
            colour: e.colour,
            reasons: e.reasons,
            until: e.until,
            policy_version: b.policy_version,
            inputs: e.inputs,
            cause: b.cause,
            at: b.at,
        });
    }
    if out.len() < limit && next.is_none() {
        let below = out.last().map_or(below.unwrap_or(i64::MAX), |e| e.rev);
        let n = i64::try_from(limit - out.len()).map_err(Error::internal)?;
        let rows = store
            .db
            .fetch_all(q!(
                "SELECT rev, colour, reasons, valid_until, policy_version, inputs, cause, at FROM person_code_history
                  WHERE person_id = $1 AND rev < $2 ORDER BY rev DESC LIMIT $3",
                person,
                below,
                n
            ))
            .await?;
        for r in &rows {
            out.push(crate::person_codes::legacy_entry(r)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_reads_back_what_was_packed() {
        use baton_domain::code::{Control, ControlKind, ReasonCode, ResultStatus, TestResult};
        use baton_domain::risk::{RiskHit, RiskLevel};
        let now = Utc::now();
        // Every kind of fact, and the fields left out when empty (a reason's detail, the
        // negatives) both empty and not.
        let e = |rev: i64| Entry {
            person: Uuid::now_v7(),
            rev,
            colour: Colour::Yellow,
            reasons: vec![
                Reason { code: ReasonCode::RiskAreaStay, colour: Colour::Yellow, until: Some(now), detail: "140427".into() },
                Reason { code: ReasonCode::Companion, colour: Colour::Yellow, until: None, detail: String::new() },
            ],
            until: (rev % 2 == 0).then_some(now),
            inputs: CodeInputs {
                result: Some(TestResult { status: ResultStatus::Negative, sampled_at: now, resulted_at: None }),
                hits: vec![RiskHit {
                    stay: 0,
                    area_id: Uuid::now_v7(),
                    division_code: "140427".into(),
                    place: (rev % 3 == 0).then(|| "一号楼".into()),
                    level: RiskLevel::Low,
                    overlap_from: now,
                    overlap_to: now,
                    coarse: rev % 2 == 1,
                }],
                controls: vec![Control { kind: ControlKind::Companion, from: now, to: None }],
                negatives: if rev % 2 == 0 { vec![now] } else { vec![] },
            },
            prev: (rev > 1).then(Uuid::now_v7),
        };
        let entries: Vec<Entry> = (1..=BLOCK as i64).map(e).collect();
        let packed = pack(&entries).unwrap();
        assert_eq!(packed[0], MSGPACK);
        // Blocks written before MessagePack: deflated JSON.
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&serde_json::to_vec(&entries).unwrap()).unwrap();
        let json = z.finish().unwrap();
        assert_ne!(json[0], MSGPACK);
        for bytes in [packed, json] {
            let back = unpack(&bytes).unwrap();
            assert_eq!(back.len(), entries.len());
            for (a, b) in back.iter().zip(&entries) {
                assert_eq!(
                    (a.person, a.rev, a.colour, &a.reasons, a.until, &a.inputs, a.prev),
                    (b.person, b.rev, b.colour, &b.reasons, b.until, &b.inputs, b.prev)
                );
            }
        }
        assert!(unpack(b"not deflate").is_err());
        assert!(unpack(&[MSGPACK, 1, 2, 3]).is_err());
    }
}
