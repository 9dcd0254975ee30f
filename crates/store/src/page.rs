//! Cursor paging: the one way every list pages. A client asks for up to `limit` rows
//! (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) after an opaque `cursor`; the answer
//! carries `next_cursor`, `null` on the last page.
//!
//! Paging is by keyset, never OFFSET: each list orders by its key with the row's id last, so
//! the order is total, and a page is the rows strictly after the last key given. Rows added
//! while a client pages appear or not, but none is skipped or given twice, and a page deep in
//! a list costs what the first does.
//!
//! The cursor is the last row's key with the list's name, as base64url JSON. A cursor that does
//! not decode, or that another list gave, is a field error on `cursor`.

use crate::Check;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use baton_domain::{Error, FieldError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// What a client asks for: `?limit=&cursor=`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The largest first page, for callers inside Baton that read a short list whole (a trip's
    /// alerts for its ledger, a page's choices).
    pub fn largest() -> Self {
        PageQuery { limit: Some(MAX_LIMIT), cursor: None }
    }

    /// The page after `cursor` (the UI's "next page" link).
    pub fn after(cursor: Option<String>) -> Self {
        PageQuery { limit: None, cursor: cursor.filter(|c| !c.is_empty()) }
    }
}

/// A page request checked against its list: how many rows, and the key they come after.
#[derive(Debug, Clone)]
pub struct Page<K> {
    list: &'static str,
    pub limit: i64,
    /// The last key of the page before; `None` for the first page.
    pub after: Option<K>,
}

/// One page of a list.
#[derive(Debug, Clone, Serialize)]
pub struct Paged<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Paged<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Paged<U> {
        Paged { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

/// A `limit` that is not a whole number from 1 to [`MAX_LIMIT`].
pub fn limit_invalid() -> FieldError {
    FieldError::new(
        "limit",
        "out_of_range",
        format!("每页条数应为 1 到 {MAX_LIMIT} 之间的整数"),
        format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
    )
}

fn cursor_invalid() -> FieldError {
    FieldError::new(
        "cursor",
        "cursor_invalid",
        "分页游标无效(不是本列表给出的)，请从第一页重新开始",
        "the cursor is not one this list gave; start again from the first page",
    )
}

impl<K: Serialize + DeserializeOwned> Page<K> {
    /// Check `q` for the list named `list` (the name a cursor carries).
    pub fn read(list: &'static str, q: &PageQuery) -> Result<Self, Error> {
        let mut c = Check::default();
        let limit = match q.limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(_) => {
                c.0.push(limit_invalid());
                DEFAULT_LIMIT
            }
        };
        let after = match q.cursor.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => c.take(decode(list, s)),
        };
        c.done()?;
        Ok(Page { list, limit, after })
    }

    /// How many rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// The page made of `rows`, fetched in key order after [`Page::after`] (at most
    /// [`Page::fetch`] of them), with the cursor after its last row if more follow.
    pub fn finish<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> K) -> Paged<T> {
        let more = rows.len() > self.len();
        rows.truncate(self.len());
        let next_cursor = if more { rows.last().map(|r| encode(self.list, &key(r))) } else { None };
        Paged { items: rows, next_cursor }
    }

    /// The page of a list made in memory, `rows` whole and in key order (`descending` or not):
    /// the rows after the cursor's key.
    pub fn slice<T>(&self, rows: Vec<T>, key: impl Fn(&T) -> K, descending: bool) -> Paged<T>
    where
        K: PartialOrd,
    {
        let past = |r: &T| match &self.after {
            None => true,
            Some(a) if descending => key(r) < *a,
            Some(a) => key(r) > *a,
        };
        let rows: Vec<T> = rows.into_iter().filter(|r| past(r)).take(self.len() + 1).collect();
        self.finish(rows, key)
    }

    /// The parts of the key the page comes after, each `None` on the first page: the SQL
    /// arguments of the keyset condition `($k IS NULL OR (key…, id) > ($k, …))`.
    pub fn parts(&self) -> K::Parts
    where
        K: Key + Clone,
    {
        K::parts(self.after.clone())
    }

    fn len(&self) -> usize {
        usize::try_from(self.limit).unwrap_or(0)
    }
}

/// Every row of a paged list, page after page: for callers inside Baton that need the whole
/// list (a form's choices, the command line), which no page size may cut short.
pub async fn all<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, Error>
where
    F: FnMut(PageQuery) -> Fut,
    Fut: Future<Output = Result<Paged<T>, Error>>,
{
    let mut out = Vec::new();
    let mut q = PageQuery::largest();
    loop {
        let p = fetch(q).await?;
        out.extend(p.items);
        match p.next_cursor {
            Some(c) => q = PageQuery { limit: Some(MAX_LIMIT), cursor: Some(c) },
            None => return Ok(out),
        }
    }
}

/// A list's key (its order columns and the row's id), split into parts to bind.
pub trait Key: Sized {
    type Parts;
    fn parts(k: Option<Self>) -> Self::Parts;
}

impl<A, B> Key for (A, B) {
    type Parts = (Option<A>, Option<B>);
    fn parts(k: Option<Self>) -> Self::Parts {
        k.unzip()
    }
}

impl<A, B, C> Key for (A, B, C) {
    type Parts = (Option<A>, Option<B>, Option<C>);
    fn parts(k: Option<Self>) -> Self::Parts {
        match k {
            Some((a, b, c)) => (Some(a), Some(b), Some(c)),
            None => (None, None, None),
        }
    }
}

impl<A, B, C, D> Key for (A, B, C, D) {
    type Parts = (Option<A>, Option<B>, Option<C>, Option<D>);
    fn parts(k: Option<Self>) -> Self::Parts {
        match k {
            Some((a, b, c, d)) => (Some(a), Some(b), Some(c), Some(d)),
            None => (None, None, None, None),
        }
    }
}

fn encode<K: Serialize>(list: &str, key: &K) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&(list, key)).unwrap_or_default())
}

fn decode<K: DeserializeOwned>(list: &str, s: &str) -> Result<K, FieldError> {
    let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| cursor_invalid())?;
    match serde_json::from_slice::<(String, K)>(&bytes) {
        Ok((l, k)) if l == list => Ok(k),
        _ => Err(cursor_invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn q(limit: Option<i64>, cursor: Option<&str>) -> PageQuery {
        PageQuery { limit, cursor: cursor.map(str::to_string) }
    }

    #[test]
    fn a_list_pages_through_every_row_once() {
        let rows: Vec<(i64, Uuid)> = (0..7).map(|i| (i / 2, Uuid::from_u128(i as u128))).collect();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let p = Page::<(i64, Uuid)>::read("t", &q(Some(3), cursor.as_deref())).unwrap();
            let page = p.slice(rows.clone(), |r| *r, false);
            seen.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, rows);
        let desc: Vec<(i64, Uuid)> = rows.iter().rev().copied().collect();
        let p = Page::<(i64, Uuid)>::read("t", &q(Some(4), None)).unwrap();
        let first = p.slice(desc.clone(), |r| *r, true);
        let p = Page::<(i64, Uuid)>::read("t", &q(Some(4), first.next_cursor.as_deref())).unwrap();
        let second = p.slice(desc.clone(), |r| *r, true);
        assert_eq!([first.items, second.items].concat(), desc);
        assert_eq!(second.next_cursor, None);
    }

    #[test]
    fn bad_cursors_and_limits_are_field_errors() {
        let good = Page::<i64>::read("a", &q(Some(1), None)).unwrap().finish(vec![1, 2], |r| *r).next_cursor.unwrap();
        assert!(Page::<i64>::read("a", &q(None, Some(&good))).is_ok());
        for (limit, cursor, field) in
            [(None, "nonsense!", "cursor"), (None, good.as_str(), "cursor"), (Some(0), "", "limit"), (Some(MAX_LIMIT + 1), "", "limit")]
        {
            let list = if cursor == good { "b" } else { "a" };
            match Page::<i64>::read(list, &q(limit, Some(cursor))) {
                Err(Error::Invalid(f)) => assert_eq!((f.len(), f[0].field.as_str()), (1, field)),
                other => panic!("{other:?}"),
            }
        }
    }
}
