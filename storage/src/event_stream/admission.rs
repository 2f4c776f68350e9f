//! Admissions in batches, on a Redis connection of their own (group commit).
//!
//! The edge's requests queue here. One task takes what queued while its previous batch was in
//! Redis and writes it as one transaction in one write: `MULTI`, the `XADD` of each request's
//! entry, one call of the [`VERDICT`] script on them all, `EXEC`. A batch is what arrived during
//! one round trip: one request under light load, dozens under heavy load, so the
//! writes, wake-ups and command dispatches per request fall as the load grows, and a request
//! waits for at most the batch in Redis before its own. Payloads reach Redis once and never
//! enter Lua (see [`VERDICT`]).
//!
//! One connection, not several side by side: Redis runs one command at a time, so a second
//! connection's batch only waited in Redis beside the first, and it halved the batches (about
//! 2.5 requests each at 16 clients in the ingest benchmark's accept path). With one, both the node
//! and Redis spent less CPU per event in each of three edge-only runs in turn with two (node
//! 5.43/5.88/4.84 µs against 6.08/6.06/5.37, Redis 2.67/2.83/2.35 against 3.06/3.07/2.68), and
//! latency under load was no worse.
//!
//! Not through fred: its pipelines flush each command on its own, so a transaction of one
//! request took four writes (and Redis as many reads) where a whole batch takes one here;
//! measured in the ingest benchmark, that cost more than the payload in Lua it saved. fred still
//! serves everything else, including what a batch may need afterwards (reloading the script,
//! counting an unjudged entry).

use std::time::Duration;

use fred::prelude::{ClientLike, KeysInterface};
use fred::types::config::ServerConfig;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::{Admission, VERDICT};
use crate::redis::RedisStore;
use crate::{Result, StorageError};

/// Requests waiting for the connection at most; the edge bounds its requests in flight below it.
const QUEUE: usize = 4_096;
/// A batch's bounds: requests, and payload bytes (a batch still takes at least one request).
const BATCH_REQUESTS: usize = 64;
const BATCH_BYTES: usize = 2 << 20;
/// How long one batch may take, from its write to its last answer, before its connection is
/// given up (and the batch answered with an error, which the clients retry).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// One request's admission.
pub(super) struct Request {
    /// The `XADD`'s stream, then the verdict's other keys: tenant bucket, IP bucket, the
    /// stream's event count.
    pub keys: [String; 4],
    /// The verdict's arguments: max backlog, tenant rate, IP rate (0: none), events.
    pub args: [i64; 4],
    pub payload: Vec<u8>,
}

struct Queued {
    request: Request,
    answer: oneshot::Sender<Result<Admission>>,
}

/// The queue in front of the admission connection; its task stops when the queue is dropped.
#[derive(Debug)]
pub(super) struct Admitter {
    queue: mpsc::Sender<Queued>,
}

impl Admitter {
    /// Starts the connection's task on the current runtime (it connects on its first batch).
    pub(super) fn start(redis: RedisStore) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(redis, receiver));
        Self { queue }
    }

    pub(super) async fn admit(&self, request: Request) -> Result<Admission> {
        let (answer, answered) = oneshot::channel();
        let stopped = || StorageError::Unavailable("the admission connection stopped".into());
        self.queue.send(Queued { request, answer }).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

/// What `EXEC` said of one request: its verdict, or the error in place of the batch's verdicts.
enum Reply {
    Judged(Vec<i64>),
    /// The verdicts failed; `added` says whether the request's `XADD` ran.
    Failed {
        added: bool,
        error: String,
    },
}

async fn run(redis: RedisStore, mut queue: mpsc::Receiver<Queued>) {
    let mut connection: Option<Connection> = None;
    while let Some(batch) = next_batch(&mut queue).await {
        let requests: Vec<&Request> = batch.iter().map(|q| &q.request).collect();
        // Taken for the exchange and put back after a good one: after an error the connection
        // may hold half an answer, so the next batch starts afresh.
        let replies = async {
            let sha = VERDICT.sha(&redis).await?;
            let mut open = match connection.take() {
                Some(open) => open,
                None => Connection::open(&redis).await?,
            };
            match tokio::time::timeout(EXCHANGE_TIMEOUT, open.exchange(&requests, &sha)).await {
                Ok(replies) => {
                    let replies = replies?;
                    connection = Some(open);
                    Ok(replies)
                }
                Err(_) => Err(StorageError::Unavailable(format!(
                    "Redis did not answer a batch of admissions within {EXCHANGE_TIMEOUT:?}"
                ))),
            }
        }
        .await;
        match replies {
            Ok(replies) => settle(&redis, batch, replies).await,
            Err(e) => {
                let message = e.to_string();
                tracing::warn!(error = %message, requests = batch.len(), "A batch of admissions failed.");
                for queued in batch {
                    let _ = queued.answer.send(Err(StorageError::Unavailable(message.clone())));
                }
            }
        }
    }
}

/// The next batch: waits for one request, then takes what else is queued, within the bounds.
async fn next_batch(receiver: &mut mpsc::Receiver<Queued>) -> Option<Vec<Queued>> {
    let first = receiver.recv().await?;
    let mut bytes = first.request.payload.len();
    let mut batch = vec![first];
    while batch.len() < BATCH_REQUESTS && bytes < BATCH_BYTES {
        match receiver.try_recv() {
            Ok(next) => {
                bytes += next.request.payload.len();
                batch.push(next);
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Answers each request of a batch. A verdict that failed after its `XADD` ran (Redis lost the
/// script: a restart, `SCRIPT FLUSH`) left an entry a consumer may already hold, so it is
/// admitted unjudged and counted, and the script is loaded again for the next batches.
async fn settle(redis: &RedisStore, batch: Vec<Queued>, replies: Vec<Reply>) {
    let mut reload = false;
    for (queued, reply) in batch.into_iter().zip(replies) {
        let answer = match reply {
            Reply::Judged(verdict) => verdict_of(&verdict),
            Reply::Failed { added, error } => {
                let missing = error.starts_with("NOSCRIPT");
                reload |= missing;
                let counted = if added { count(redis, &queued.request).await } else { Ok(()) };
                match counted {
                    Ok(()) if added && missing => Ok(Admission::Accepted),
                    Ok(()) => Err(StorageError::Internal(format!("the admission failed in Redis: {error}"))),
                    Err(e) => Err(e),
                }
            }
        };
        let _ = queued.answer.send(answer);
    }
    if reload {
        tracing::warn!("The admission script was missing from Redis; loading it again.");
        if let Err(e) = VERDICT.load(redis).await {
            tracing::warn!(error = %e, "The admission script could not be loaded again.");
        }
    }
}

/// Adds an unjudged entry's events to its stream's count, as the verdict would have.
async fn count(redis: &RedisStore, request: &Request) -> Result<()> {
    let _: i64 = redis.pool().incr_by(&request.keys[3], request.args[3]).await?;
    Ok(())
}

fn verdict_of(verdict: &[i64]) -> Result<Admission> {
    let wait = |ms: i64| Duration::from_millis(u64::try_from(ms).unwrap_or(1000).max(1));
    Ok(match verdict {
        [0, _] => Admission::Accepted,
        [1, ms] => Admission::RateLimited { retry_after: wait(*ms) },
        [2, ms] => Admission::Overloaded { retry_after: wait(*ms) },
        other => return Err(StorageError::Internal(format!("unexpected admission answer {other:?}"))),
    })
}

/// One plain TCP connection speaking RESP2.
struct Connection {
    stream: TcpStream,
    /// Read but not yet decoded.
    buffer: Vec<u8>,
}

impl Connection {
    /// Connects to the server the pool uses, with its credentials and database.
    async fn open(redis: &RedisStore) -> Result<Self> {
        let config = redis.pool().next().client_config();
        let ServerConfig::Centralized { server } = &config.server else {
            return Err(StorageError::Unavailable("admissions need one Redis server, not a cluster".into()));
        };
        let stream = TcpStream::connect((&*server.host, server.port)).await.map_err(io_error)?;
        stream.set_nodelay(true).map_err(io_error)?;
        let mut connection = Self { stream, buffer: Vec::with_capacity(64 * 1024) };
        if let Some(password) = &config.password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &config.username {
                auth.push(user.as_bytes());
            }
            auth.push(password.as_bytes());
            connection.simple(&auth).await?;
        }
        if let Some(db) = config.database {
            connection.simple(&[b"SELECT", db.to_string().as_bytes()]).await?;
        }
        Ok(connection)
    }

    /// Sends one command and expects `+OK`.
    async fn simple(&mut self, args: &[&[u8]]) -> Result<()> {
        let mut out = Vec::new();
        command(&mut out, args);
        self.stream.write_all(&out).await.map_err(io_error)?;
        match self.frame().await? {
            OwnedFrame::SimpleString(ok) if ok == b"OK" => Ok(()),
            other => Err(StorageError::Unavailable(format!("Redis refused the admission connection: {other:?}"))),
        }
    }

    /// Writes a batch's transaction and reads its answers: one [`Reply`] per request.
    async fn exchange(&mut self, batch: &[&Request], sha: &str) -> Result<Vec<Reply>> {
        // Room for it all at once (a batch's bytes are nearly all payload, and a buffer grown
        // on the way copies them again): each request's payload, its stream key twice (the
        // `XADD`'s and the verdict's), its other keys, and 256 bytes for the rest.
        let bytes: usize = batch
            .iter()
            .map(|r| r.payload.len() + r.keys[0].len() + r.keys.iter().map(String::len).sum::<usize>() + 256)
            .sum();
        let mut out = Vec::with_capacity(bytes + 64);
        command(&mut out, &[b"MULTI"]);
        let args: Vec<[String; 4]> =
            batch.iter().map(|r| r.args.map(|a| itoa::Buffer::new().format(a).to_owned())).collect();
        for (request, args) in batch.iter().zip(&args) {
            let events = args[3].as_bytes();
            command(&mut out, &[b"XADD", request.keys[0].as_bytes(), b"*", b"e", &request.payload, b"n", events]);
        }
        let keys = (4 * batch.len()).to_string();
        let mut evalsha: Vec<&[u8]> = Vec::with_capacity(3 + 8 * batch.len());
        evalsha.extend([b"EVALSHA".as_slice(), sha.as_bytes(), keys.as_bytes()]);
        evalsha.extend(batch.iter().flat_map(|r| r.keys.iter().map(String::as_bytes)));
        evalsha.extend(args.iter().flat_map(|a| a.iter().map(String::as_bytes)));
        command(&mut out, &evalsha);
        command(&mut out, &[b"EXEC"]);
        self.stream.write_all(&out).await.map_err(io_error)?;
        drop(out);
        // `+OK` for MULTI and `+QUEUED` (or the error that aborts the transaction) for each
        // command; EXEC's answer says all that matters.
        for _ in 0..batch.len() + 2 {
            self.frame().await?;
        }
        match self.frame().await? {
            OwnedFrame::Array(mut answers) if answers.len() == batch.len() + 1 => {
                let verdicts = answers.pop();
                let added: Vec<bool> = answers.iter().map(|a| matches!(a, OwnedFrame::BulkString(_))).collect();
                Ok(match verdicts {
                    Some(OwnedFrame::Array(numbers)) if numbers.len() == 2 * batch.len() => {
                        let numbers: Vec<i64> =
                            numbers.into_iter().map(|n| if let OwnedFrame::Integer(n) = n { n } else { -1 }).collect();
                        numbers.chunks(2).map(|verdict| Reply::Judged(verdict.to_vec())).collect()
                    }
                    Some(OwnedFrame::Error(error)) => {
                        added.into_iter().map(|added| Reply::Failed { added, error: error.clone() }).collect()
                    }
                    other => {
                        let error = format!("unexpected verdicts {other:?}");
                        added.into_iter().map(|added| Reply::Failed { added, error: error.clone() }).collect()
                    }
                })
            }
            // `EXECABORT`: a command was refused (out of memory, say) and nothing ran.
            OwnedFrame::Error(error) => {
                Err(StorageError::Unavailable(format!("Redis refused the admissions: {error}")))
            }
            other => Err(StorageError::Internal(format!("unexpected answer to EXEC: {other:?}"))),
        }
    }

    /// The next frame, reading as much as it takes.
    async fn frame(&mut self) -> Result<OwnedFrame> {
        loop {
            let decoded = decode(&self.buffer)
                .map_err(|e| StorageError::Internal(format!("undecodable answer from Redis: {e:?}")))?;
            if let Some((frame, used)) = decoded {
                self.buffer.drain(..used);
                return Ok(frame);
            }
            let read = self.stream.read_buf(&mut self.buffer).await.map_err(io_error)?;
            if read == 0 {
                return Err(StorageError::Unavailable("Redis closed the admission connection".into()));
            }
        }
    }
}

/// Appends one command (a RESP array of bulk strings) to `out`.
fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let mut digits = itoa::Buffer::new();
    let mut line = |marker: u8, n: usize, out: &mut Vec<u8>| {
        out.push(marker);
        out.extend_from_slice(digits.format(n).as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    line(b'*', args.len(), out);
    for arg in args {
        line(b'$', arg.len(), out);
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn io_error(e: std::io::Error) -> StorageError {
    StorageError::Unavailable(format!("Redis (admissions): {e}"))
}

#[cfg(test)]
mod tests {
    use super::command;

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, &[b"XADD", b"s", b"*", b"e", b"a\r\nb"]);
        assert_eq!(out, b"*5\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n*\r\n$1\r\ne\r\n$4\r\na\r\nb\r\n");
        // Counts and lengths of more than one digit.
        let mut out = Vec::new();
        let long = [b"x".as_slice(); 12].concat();
        command(&mut out, &[&long; 10].map(Vec::as_slice));
        let expected = format!("*10\r\n{}", "$12\r\nxxxxxxxxxxxx\r\n".repeat(10));
        assert_eq!(out, expected.as_bytes());
    }
}
