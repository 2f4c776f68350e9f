//! PostgreSQL's binary COPY format, for the columns events have: a header, then per row a field
//! count and length-prefixed fields, then a trailer. Binary COPY skips text parsing on the
//! server; the benchmark's raw baseline writes it.

use uuid::Uuid;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// One COPY stream being built.
#[derive(Debug)]
pub struct CopyWriter {
    buf: Vec<u8>,
    rows: usize,
}

impl Default for CopyWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl CopyWriter {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        Self { buf, rows: 0 }
    }

    pub fn row(&mut self, fields: i16) -> &mut Self {
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self.rows += 1;
        self
    }

    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        // A field longer than 2 GiB cannot reach here: events are at most 32 KB.
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
        self
    }

    pub fn null(&mut self) -> &mut Self {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    pub fn uuid(&mut self, v: &Uuid) -> &mut Self {
        self.field(v.as_bytes())
    }

    pub fn opt_uuid(&mut self, v: Option<&Uuid>) -> &mut Self {
        match v {
            Some(v) => self.uuid(v),
            None => self.null(),
        }
    }

    pub fn text(&mut self, v: &str) -> &mut Self {
        self.field(v.as_bytes())
    }

    pub fn opt_text(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    /// A `timestamptz` from microseconds since the Unix epoch.
    pub fn timestamp_us(&mut self, unix_us: i64) -> &mut Self {
        self.field(&(unix_us - PG_EPOCH_OFFSET_US).to_be_bytes())
    }

    /// A `jsonb` from JSON text (binary jsonb is a version byte, then the text).
    pub fn jsonb(&mut self, json: &str) -> &mut Self {
        let len = i32::try_from(json.len() + 1).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.push(1);
        self.buf.extend_from_slice(json.as_bytes());
        self
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The complete stream, trailer included.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}
