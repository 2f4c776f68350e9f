//! Keyset pagination shared by every list: newest first, by the time-ordered (UUIDv7) id (the
//! event log pages by time and id with its own cursor, cut the same way).

use uuid::Uuid;

/// A page request: at most `limit` rows older than `after` (the previous page's last id).
#[derive(Debug, Clone, Copy)]
pub struct ListQuery {
    pub limit: u32,
    pub after: Option<Uuid>,
}

impl ListQuery {
    pub const MAX_LIMIT: u32 = 200;
    pub const DEFAULT_LIMIT: u32 = 50;

    /// Fetches one row more than asked to learn whether a next page exists.
    pub(crate) fn fetch_limit(&self) -> i64 {
        i64::from(self.limit.clamp(1, Self::MAX_LIMIT)) + 1
    }

    /// Cuts the extra row off and returns the cursor of the next page, if there is one.
    pub(crate) fn page<T>(&self, rows: Vec<T>, id: impl Fn(&T) -> Uuid) -> (Vec<T>, Option<String>) {
        cut_page(rows, self.limit.clamp(1, Self::MAX_LIMIT) as usize, |r| id(r).to_string())
    }
}

/// Rows fetched with one more than `limit`: cuts the extra one off and returns the cursor of
/// the last row kept when there is a next page.
pub(crate) fn cut_page<T>(mut rows: Vec<T>, limit: usize, cursor: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(cursor);
        (rows, next)
    } else {
        (rows, None)
    }
}

impl Default for ListQuery {
    fn default() -> Self {
        Self { limit: Self::DEFAULT_LIMIT, after: None }
    }
}
