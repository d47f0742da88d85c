//! Cursor pagination. A cursor names the last item of a page by id; ids are time-ordered, so a page boundary
//! does not move when rows are inserted or deleted elsewhere in the list.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

/// An opaque position in a list, handed to clients as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(Uuid);

/// A string that is not a cursor this gateway issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pagination cursor")]
pub struct CursorError;

impl Cursor {
    const VERSION: u8 = 1;

    pub fn after(id: impl Into<Uuid>) -> Self {
        Self(id.into())
    }

    pub fn last_id(&self) -> Uuid {
        self.0
    }

    pub fn encode(&self) -> String {
        let mut raw = [0u8; 17];
        raw[0] = Self::VERSION;
        raw[1..].copy_from_slice(self.0.as_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(text: &str) -> Result<Self, CursorError> {
        let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| CursorError)?;
        match raw.as_slice() {
            [Self::VERSION, rest @ ..] => Uuid::from_slice(rest).map(Self).map_err(|_| CursorError),
            _ => Err(CursorError),
        }
    }
}

/// Which page to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<Cursor>,
    limit: u32,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 200;

    /// A page of at most `limit` items (clamped to 1..=200) after `after`.
    pub fn new(after: Option<Cursor>, limit: u32) -> Self {
        Self { after, limit: limit.clamp(1, Self::MAX_LIMIT) }
    }

    pub fn first(limit: u32) -> Self {
        Self::new(None, limit)
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self::first(Self::DEFAULT_LIMIT)
    }
}

/// One page of a list, and where the next one starts (`None` on the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only proves a next page exists.
    pub fn from_overfetch(mut rows: Vec<T>, request: PageRequest, id_of: impl Fn(&T) -> Uuid) -> Self {
        let limit = request.limit() as usize;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| Cursor::after(id_of(last)))
        } else {
            None
        };
        Self { items: rows, next }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next: self.next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let cursor = Cursor::after(Uuid::now_v7());
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
    }

    #[test]
    fn foreign_strings_are_not_cursors() {
        for bad in ["", "abc", "!!!!", &URL_SAFE_NO_PAD.encode([2u8; 17]), &URL_SAFE_NO_PAD.encode([1u8; 5])] {
            assert_eq!(Cursor::decode(bad), Err(CursorError), "{bad:?}");
        }
    }

    #[test]
    fn limits_are_clamped() {
        assert_eq!(PageRequest::first(0).limit(), 1);
        assert_eq!(PageRequest::first(10_000).limit(), PageRequest::MAX_LIMIT);
    }
}
