//! The feed of a file job: a reader thread, then decode, route by key hash
//! and inject barriers between chunks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use ractor::ActorRef;
use tokio::sync::Semaphore;
use weir_actors::DeadLetter;
use weir_actors::runtime::{Envelope, InputBatch, PartitionMsg};
use weir_state::KeyCodec;

use crate::checkpoint::Coordinator;
use crate::outlet::SinkOutlet;
use crate::partitioner::partition_of;
use crate::source::Source;
use crate::telemetry::{Advance, BatchDone, Metrics, PartitionMetrics};
use crate::{Error, Result};

use super::aligned::FeedEnd;
use crate::runtime::{Decode, decode_checked, too_large};

/// Sends barrier `id` at input `position` to every partition and to the
/// sinks' feed input. Everything routed before was sent before it.
pub(super) fn inject<K, V, O>(
    actors: &[ActorRef<PartitionMsg<K, V>>],
    outlet: &SinkOutlet<O>,
    id: u64,
    position: u64,
) -> Result<()>
where
    K: Send + 'static,
    V: Send + 'static,
    O: Send + 'static,
{
    weir_actors::crash_point!("checkpoint-inject");
    for (p, actor) in actors.iter().enumerate() {
        actor
            .cast(PartitionMsg::Barrier { id, position })
            .map_err(|e| Error::Actor(format!("partition {p} is gone: {e}")))?;
    }
    outlet.feed_barrier(id);
    Ok(())
}

/// Injects the barrier `coordinator` asks for, if any, at `position`.
pub(super) fn inject_requested<K, V, O>(
    coordinator: Option<&Coordinator>,
    actors: &[ActorRef<PartitionMsg<K, V>>],
    outlet: &SinkOutlet<O>,
    position: u64,
) -> Result<()>
where
    K: Send + 'static,
    V: Send + 'static,
    O: Send + 'static,
{
    match coordinator
        .map(Coordinator::take_request)
        .transpose()?
        .flatten()
    {
        Some(id) => inject(actors, outlet, id, position),
        None => Ok(()),
    }
}

/// What the reader thread hands the feed.
enum Chunk {
    /// Lines read at a position; with a length, the first bytes of one
    /// line of that length, cut at the bound.
    Data(u64, Arc<[u8]>, Option<u64>),
    End,
    Failed(Error),
}

/// How long the feed waits for input before it looks for barriers and
/// shutdown requests.
const IDLE_CHECK: Duration = Duration::from_millis(50);

/// Chunks read ahead.
const READ_AHEAD: usize = 2;

/// Reads `source` on a thread of its own, so that a source that blocks
/// (stdin with no input) never holds up barriers or shutdown. The thread
/// ends when the input does or the feed stops taking chunks (or, blocked in
/// a read, with the process).
fn read_ahead(mut source: Box<dyn Source>, max_line: usize) -> Result<Receiver<Chunk>> {
    source.bound_lines(max_line);
    let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD);
    std::thread::Builder::new()
        .name("weir-source".into())
        .spawn(move || {
            let mut buf = Vec::new();
            loop {
                let chunk = match source.next_chunk(&mut buf) {
                    Ok(Some(base)) => {
                        Chunk::Data(base, Arc::from(buf.as_slice()), source.cut_line())
                    }
                    Ok(None) => Chunk::End,
                    Err(e) => Chunk::Failed(Error::Io {
                        what: format!("reading {}", source.describe()),
                        source: e,
                    }),
                };
                let last = !matches!(chunk, Chunk::Data(..));
                if tx.send(chunk).is_err() || last {
                    break;
                }
            }
        })
        .map_err(|e| Error::Io {
            what: "starting the source thread".into(),
            source: e,
        })?;
    Ok(rx)
}

/// The source loop: read chunks, decode lines, route records by key hash,
/// inject requested barriers between chunks. Runs on a blocking thread.
#[allow(clippy::too_many_arguments)]
pub(super) fn feed<K, V, O>(
    source: Box<dyn Source>,
    start: u64,
    decoder: Arc<dyn Decode<K, V>>,
    actors: &[ActorRef<PartitionMsg<K, V>>],
    outlet: &SinkOutlet<O>,
    coordinator: Option<&Coordinator>,
    stop: &AtomicBool,
    credits: usize,
    max_record: usize,
    runtime: tokio::runtime::Handle,
    metrics: &Metrics,
) -> Result<FeedEnd>
where
    K: KeyCodec + Send + 'static,
    V: Send + 'static,
    O: Send + 'static,
{
    let chunks = read_ahead(source, max_record)?;
    let mut router = Router::new(decoder, actors, credits, max_record, runtime, metrics);
    let mut end = FeedEnd {
        lines: 0,
        decode_errors: 0,
        position: start,
        stopped: false,
    };
    loop {
        if outlet.has_failed() {
            break;
        }
        if stop.load(Ordering::SeqCst) {
            end.stopped = true;
            break;
        }
        let (base, data, cut) = match chunks.recv_timeout(IDLE_CHECK) {
            Ok(Chunk::Data(base, data, cut)) => (base, data, cut),
            Ok(Chunk::End) => break,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::Failed("the source thread stopped".into()));
            }
            Ok(Chunk::Failed(e)) => return Err(e),
            // No input for a while: barriers still go in, between chunks.
            Err(RecvTimeoutError::Timeout) => {
                inject_requested(coordinator, actors, outlet, end.position)?;
                continue;
            }
        };
        let dead = match cut {
            Some(len) => {
                end.lines += 1;
                end.position = base + len;
                let (raw, reason) = too_large(&data, len, max_record);
                vec![end.reject(base, raw, reason)]
            }
            None => {
                let dead = router.route(base, &data, &mut end);
                end.position = base + data.len() as u64;
                dead
            }
        };
        metrics.input_read(end.position);
        if !dead.is_empty() {
            metrics.unrouted(dead.len() as u64);
            outlet.feed_dead_letters(dead);
        }
        router.send(&data)?;
        inject_requested(coordinator, actors, outlet, end.position)?;
    }
    Ok(end)
}

/// Decodes chunks into per-partition batches and sends them.
struct Router<'a, K, V> {
    decoder: Arc<dyn Decode<K, V>>,
    actors: &'a [ActorRef<PartitionMsg<K, V>>],
    /// Each partition's batch credits.
    credits: Vec<Arc<Semaphore>>,
    progress: Vec<Arc<PartitionMetrics>>,
    /// The records of the current chunk, by partition.
    batches: Vec<Vec<Envelope<K, V>>>,
    key_buf: Vec<u8>,
    /// Longest line decoded.
    max_record: usize,
    runtime: tokio::runtime::Handle,
    metrics: &'a Metrics,
}

impl<'a, K, V> Router<'a, K, V>
where
    K: KeyCodec + Send + 'static,
    V: Send + 'static,
{
    fn new(
        decoder: Arc<dyn Decode<K, V>>,
        actors: &'a [ActorRef<PartitionMsg<K, V>>],
        credits: usize,
        max_record: usize,
        runtime: tokio::runtime::Handle,
        metrics: &'a Metrics,
    ) -> Self {
        let n = actors.len() as u32;
        Self {
            decoder,
            actors,
            credits: (0..n).map(|_| Arc::new(Semaphore::new(credits))).collect(),
            progress: (0..n).map(|p| metrics.partition(p)).collect(),
            batches: (0..n).map(|_| Vec::new()).collect(),
            key_buf: Vec::with_capacity(64),
            max_record,
            runtime,
            metrics,
        }
    }

    /// Decodes the lines of `data`, read at input position `base`, into
    /// the batches; counts them in `end` and returns those that did not
    /// decode as dead letters.
    fn route(&mut self, base: u64, data: &[u8], end: &mut FeedEnd) -> Vec<DeadLetter> {
        let n = self.actors.len() as u32;
        let mut dead = Vec::new();
        let mut start = 0usize;
        while start < data.len() {
            let line_end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
            let mut content_end = line_end;
            if content_end > start && data[content_end - 1] == b'\r' {
                content_end -= 1;
            }
            let line = &data[start..content_end];
            let position = base + start as u64;
            if line.len() > self.max_record {
                end.lines += 1;
                let (raw, reason) = too_large(line, line.len() as u64, self.max_record);
                dead.push(end.reject(position, raw, reason));
            } else if !line.iter().all(u8::is_ascii_whitespace) {
                end.lines += 1;
                match decode_checked(&*self.decoder, line) {
                    Ok(d) => {
                        self.key_buf.clear();
                        d.key.encode_key(&mut self.key_buf);
                        let p = partition_of(&self.key_buf, n) as usize;
                        self.batches[p].push(Envelope {
                            key: d.key,
                            timestamp: d.timestamp,
                            value: d.value,
                            position,
                            raw: start..content_end,
                        });
                    }
                    Err(reason) => dead.push(end.reject(position, line.to_vec(), reason)),
                }
            }
            start = line_end + 1;
        }
        dead
    }

    /// Sends each partition its batch of `data`, once it has a credit.
    fn send(&mut self, data: &Arc<[u8]>) -> Result<()> {
        for (p, records) in self.batches.iter_mut().enumerate() {
            if records.is_empty() {
                continue;
            }
            let permit = self
                .runtime
                .block_on(Arc::clone(&self.credits[p]).acquire_owned())
                .map_err(|_| Error::Actor("batch credits closed".into()))?;
            let count = records.len() as u64;
            let pm = &self.progress[p];
            pm.read(count, 0);
            pm.high_watermark.fetch_add(count as i64, Ordering::Relaxed);
            let done = BatchDone {
                metrics: self.metrics.clone(),
                partition: Arc::clone(pm),
                since: Instant::now(),
                advance: Advance::By(count as i64),
            };
            let batch = InputBatch {
                data: Arc::clone(data),
                records: std::mem::take(records),
            };
            self.actors[p]
                .cast(PartitionMsg::Batch(batch, Some(Box::new((permit, done)))))
                .map_err(|e| Error::Actor(format!("partition {p} is gone: {e}")))?;
        }
        Ok(())
    }
}
