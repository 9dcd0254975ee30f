//! Keys and personal data at rest.
//!
//! The keyring is a file created on first start (mode 0600) beside the database, or at
//! `BATON_KEY_FILE`. Values are sealed with XChaCha20-Poly1305 under the active key; the
//! sealed bytes carry the key id so that keys can rotate and old values still open. The
//! associated data is `table.column`, so a value copied into another column does not open.
//! A keyed HMAC blind index finds a value without decrypting; the audit chain is keyed with
//! a separate key so that someone holding only the database cannot re-forge it.

use crate::Store;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use baton_domain::Error;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Serialize, Deserialize, Clone)]
pub struct Keyring {
    pub active: String,
    /// Data keys by id (base64 of 32 bytes). Old keys stay so old values open.
    pub keys: BTreeMap<String, String>,
    pub index_key: String,
    pub audit_key: String,
    /// Ed25519 seed that signs trip and person codes, verifiable offline with its public key.
    /// Absent in key files from before codes existed; added on the next start.
    #[serde(default)]
    pub signing_key: String,
    /// Earlier signing seeds, newest first: codes they signed still verify until they expire.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_signing_keys: Vec<String>,
    pub created_at: String,
}

impl std::fmt::Debug for Keyring {
    // Secrets are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("active", &self.active).field("key_ids", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

fn random_key() -> String {
    let mut k = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut k);
    B64.encode(k)
}

impl Keyring {
    pub fn generate() -> Self {
        let mut keys = BTreeMap::new();
        keys.insert("k1".to_string(), random_key());
        Self {
            active: "k1".into(),
            keys,
            index_key: random_key(),
            audit_key: random_key(),
            signing_key: random_key(),
            retired_signing_keys: Vec::new(),
            created_at: chrono::Utc::now().to_rfc3339(),
        }
    }

    /// Load the keyring, or create it if the file does not exist. Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Keyring, bool), Error> {
        if path.exists() {
            let mut k = Self::load(path)?;
            if k.signing_key.is_empty() {
                k.signing_key = random_key();
                k.save(path)?;
            }
            return Ok((k, false));
        }
        let k = Self::generate();
        k.save(path)?;
        Ok((k, true))
    }

    pub fn load(path: &Path) -> Result<Keyring, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::internal(format!("key file {}: {e}", path.display())))?;
        let k: Keyring = serde_json::from_str(&text).map_err(|e| Error::internal(format!("key file {}: {e}", path.display())))?;
        if !k.keys.contains_key(&k.active) {
            return Err(Error::internal("key file: the active key is missing"));
        }
        Ok(k)
    }

    pub fn save(&self, path: &Path) -> Result<(), Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(Error::internal)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(Error::internal)?;
        // Write aside and rename, so a crash never leaves a half-written keyring.
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp).map_err(Error::internal)?;
            f.write_all(text.as_bytes()).map_err(Error::internal)?;
            f.sync_all().map_err(Error::internal)?;
        }
        std::fs::rename(&tmp, path).map_err(Error::internal)
    }

    /// Add a new data key and make it active; returns its id.
    pub fn rotate(&mut self) -> String {
        let n = self.keys.keys().filter_map(|k| k.strip_prefix('k')?.parse::<u32>().ok()).max().unwrap_or(0) + 1;
        let id = format!("k{n}");
        self.keys.insert(id.clone(), random_key());
        self.active = id.clone();
        id
    }
}

pub struct Vault {
    signer: ed25519_dalek::SigningKey,
    /// Public halves of retired signing keys, by key id.
    retired: Vec<([u8; 4], ed25519_dalek::VerifyingKey)>,
    active: String,
    ciphers: BTreeMap<String, XChaCha20Poly1305>,
    index_key: Vec<u8>,
    audit_key: Vec<u8>,
}

fn decode_key(b64: &str) -> Result<Vec<u8>, Error> {
    let k = B64.decode(b64).map_err(|_| Error::internal("key file: a key is not base64"))?;
    if k.len() != 32 {
        return Err(Error::internal("key file: a key is not 32 bytes"));
    }
    Ok(k)
}

impl Vault {
    pub fn new(k: &Keyring) -> Result<Vault, Error> {
        let mut ciphers = BTreeMap::new();
        for (id, b64) in &k.keys {
            let key = decode_key(b64)?;
            let c = XChaCha20Poly1305::new_from_slice(&key).map_err(|_| Error::internal("bad key length"))?;
            ciphers.insert(id.clone(), c);
        }
        let seed: [u8; 32] = decode_key(&k.signing_key)?.try_into().map_err(|_| Error::internal("signing key length"))?;
        let mut retired = Vec::new();
        for b64 in &k.retired_signing_keys {
            let seed: [u8; 32] = decode_key(b64)?.try_into().map_err(|_| Error::internal("signing key length"))?;
            let pk = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
            retired.push((signing_key_id(&pk.to_bytes()), pk));
        }
        Ok(Vault {
            signer: ed25519_dalek::SigningKey::from_bytes(&seed),
            retired,
            active: k.active.clone(),
            ciphers,
            index_key: decode_key(&k.index_key)?,
            audit_key: decode_key(&k.audit_key)?,
        })
    }

    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    /// `[len(key id)][key id][24-byte nonce][ciphertext + tag]`
    pub fn seal(&self, aad: &str, plain: &str) -> Result<Vec<u8>, Error> {
        let cipher = self.ciphers.get(&self.active).ok_or_else(|| Error::internal("active key missing"))?;
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain.as_bytes(), aad: aad.as_bytes() })
            .map_err(|_| Error::internal("encryption failed"))?;
        let id = self.active.as_bytes();
        let mut out = Vec::with_capacity(1 + id.len() + 24 + ct.len());
        out.push(u8::try_from(id.len()).map_err(|_| Error::internal("key id too long"))?);
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn key_id_of(sealed: &[u8]) -> Option<&str> {
        let n = usize::from(*sealed.first()?);
        std::str::from_utf8(sealed.get(1..1 + n)?).ok()
    }

    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<String, Error> {
        let bad = || Error::internal(format!("sealed value for {aad} does not open"));
        let id = Self::key_id_of(sealed).ok_or_else(bad)?;
        let cipher = self.ciphers.get(id).ok_or_else(bad)?;
        let rest = &sealed[1 + id.len()..];
        if rest.len() < 24 + 16 {
            return Err(bad());
        }
        let (nonce, ct) = rest.split_at(24);
        let pt = cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: aad.as_bytes() }).map_err(|_| bad())?;
        String::from_utf8(pt).map_err(|_| bad())
    }

    /// HMAC-SHA256 of the normalised value, domain-separated by kind ("phone", "id_number").
    pub fn blind_index(&self, kind: &str, normalised: &str) -> Vec<u8> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.index_key).unwrap_or_else(|_| unreachable_hmac());
        m.update(kind.as_bytes());
        m.update(&[0]);
        m.update(normalised.as_bytes());
        m.finalize().into_bytes().to_vec()
    }

    /// An Ed25519 signature (codes: verifiable offline by anyone holding the public key).
    pub fn sign(&self, data: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.signer.sign(data).to_bytes()
    }

    pub fn verify(&self, data: &[u8], sig: &[u8]) -> bool {
        use ed25519_dalek::Verifier;
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else { return false };
        self.signer.verifying_key().verify(data, &sig).is_ok()
    }

    /// The public half, for scanners that verify codes offline.
    pub fn code_public_key(&self) -> [u8; 32] {
        self.signer.verifying_key().to_bytes()
    }

    pub fn audit_mac(&self, data: &[u8]) -> Vec<u8> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.audit_key).unwrap_or_else(|_| unreachable_hmac());
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
}

/// A signing key's id: the first 4 bytes of SHA-256 of its public key. Tokens name the key that
/// signed them, so scanners holding several public keys pick the right one.
pub fn signing_key_id(public: &[u8; 32]) -> [u8; 4] {
    use sha2::Digest;
    let h = Sha256::digest(public);
    [h[0], h[1], h[2], h[3]]
}

impl Keyring {
    /// A new signing key; the old one is kept for verifying what it signed. Returns the new key id (hex).
    pub fn rotate_signing(&mut self) -> Result<String, Error> {
        let old = std::mem::replace(&mut self.signing_key, random_key());
        if !old.is_empty() {
            self.retired_signing_keys.insert(0, old);
        }
        let seed: [u8; 32] = decode_key(&self.signing_key)?.try_into().map_err(|_| Error::internal("signing key length"))?;
        Ok(hex::encode(signing_key_id(&ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes())))
    }
}

impl Vault {
    /// The id of the key that signs now.
    pub fn signing_key_id(&self) -> [u8; 4] {
        signing_key_id(&self.code_public_key())
    }

    /// Every public key a scanner needs, by id: the active one first, then the retired ones.
    pub fn signing_public_keys(&self) -> Vec<([u8; 4], [u8; 32])> {
        let mut out = vec![(self.signing_key_id(), self.code_public_key())];
        out.extend(self.retired.iter().map(|(id, pk)| (*id, pk.to_bytes())));
        out
    }
}

// HMAC accepts keys of any length, so this cannot happen; it keeps the lints honest.
#[cold]
fn unreachable_hmac() -> Hmac<Sha256> {
    #[allow(clippy::unwrap_used)]
    <Hmac<Sha256> as Mac>::new_from_slice(b"").unwrap()
}

/// One sealed column to keep under the active key: its name in the row the select returns,
/// its associated data, and the statement that writes it back (`$1` id, `$2` value).
pub struct SealedColumn {
    pub column: &'static str,
    pub aad: &'static str,
    pub update: &'static str,
}

/// After a key rotation: re-seal every value of `columns` (rows from `select`, which returns
/// `id` and the columns) that is not under the active key, in one audited transaction.
pub async fn reseal(store: &Store, object_type: &'static str, select: &'static str, columns: &[SealedColumn]) -> Result<u64, Error> {
    let rows = store.db.fetch_all(crate::db::Q { sql: select, args: vec![] }).await?;
    let active = store.vault.active_key_id().to_string();
    let mut tx = store.db.begin().await?;
    let mut n = 0u64;
    for r in &rows {
        let id: uuid::Uuid = r.get("id")?;
        for c in columns {
            let Some(enc) = r.get::<Option<Vec<u8>>>(c.column)? else { continue };
            if Vault::key_id_of(&enc) == Some(active.as_str()) {
                continue;
            }
            let resealed = store.vault.seal(c.aad, &store.vault.open(c.aad, &enc)?)?;
            tx.execute(crate::db::Q { sql: c.update, args: vec![id.into(), resealed.into()] }).await?;
            n += 1;
        }
    }
    let who = crate::Principal::system("keys-rotate");
    let entry = crate::audit::Entry {
        action: "keys.reseal",
        object_type,
        object_id: active.clone(),
        jurisdiction: "",
        detail: serde_json::json!({"values": n}),
    };
    store.audited(&who, entry, tx).await?;
    Ok(n)
}

/// A freshly generated secret token (sessions, CSRF, API tokens), URL-safe.
pub fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// SHA-256 of a bearer secret: what the database stores instead of the secret.
pub fn token_hash(token: &str) -> Vec<u8> {
    use sha2::Digest;
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_rotate() {
        let mut ring = Keyring::generate();
        let v1 = Vault::new(&ring).unwrap();
        let sealed = v1.seal("users.phone", "13800134567").unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"13800134567"));
        assert_eq!(v1.open("users.phone", &sealed).unwrap(), "13800134567");
        // Another column's associated data refuses it.
        assert!(v1.open("users.id_number", &sealed).is_err());
        // After rotation, new values use k2 and old ones still open.
        assert_eq!(ring.rotate(), "k2");
        let v2 = Vault::new(&ring).unwrap();
        assert_eq!(Vault::key_id_of(&v2.seal("a", "b").unwrap()), Some("k2"));
        assert_eq!(v2.open("users.phone", &sealed).unwrap(), "13800134567");
        // The blind index survives rotation and distinguishes kinds.
        assert_eq!(v1.blind_index("phone", "1"), v2.blind_index("phone", "1"));
        assert_ne!(v1.blind_index("phone", "1"), v1.blind_index("id_number", "1"));
        // Tampering is detected.
        let mut t = sealed.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert!(v1.open("users.phone", &t).is_err());
        assert!(v1.open("users.phone", &t[..5]).is_err());
    }

    #[test]
    fn keyring_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys.json");
        let (a, created) = Keyring::load_or_create(&p).unwrap();
        assert!(created);
        let (b, created) = Keyring::load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(a.keys, b.keys);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(!format!("{a:?}").contains(&a.index_key));
    }
}
