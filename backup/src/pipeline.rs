//! Streams: a dump's output compressed (zstd) and hashed (SHA-256) on its way to a store,
//! and a stored part hashed or decompressed on its way back — never held whole in memory.

use std::io::Write;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::store::Staged;
use cutover_core::{Error, ErrorKind, Result};

/// Read and channel granularity.
const CHUNK: usize = 256 * 1024;
/// zstd level: the fastest, so compression keeps up with a dump sharing two cores with
/// the database server (bench/backup).
const LEVEL: i32 = 1;
/// Progress is reported each time this many more bytes went by (and at the end).
const PROGRESS_EVERY: u64 = 8 * 1024 * 1024;

/// What went into a part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Bytes read from the source.
    pub raw_bytes: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// SHA-256 of the stored bytes.
    pub sha256: String,
    /// The source's longest SQL statement, when it was measured.
    pub longest_statement: Option<LongestStatement>,
}

/// The longest SQL statement of a MySQL dump and how it begins: the server refuses a
/// statement longer than its `max_allowed_packet`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LongestStatement {
    /// Its length in bytes, without the final newline.
    pub bytes: u64,
    /// Its first [`STATEMENT_HEAD`] bytes (enough to name the table of an `INSERT`).
    pub head: Vec<u8>,
}

/// How much of a statement's beginning [`StatementMeter`] keeps.
pub const STATEMENT_HEAD: usize = 256;

/// Finds the longest statement of a MySQL dump fed in chunks, at memchr speed. A dump
/// ends each statement with `;` and a newline and writes no raw newline inside a value
/// (they are escaped), so a statement is the lines up to one ending in `;`: an extended
/// `INSERT` puts each row on a line of its own.
#[derive(Debug, Default)]
pub struct StatementMeter {
    current: u64,
    last: u8,
    head: Vec<u8>,
    longest: LongestStatement,
}

impl StatementMeter {
    /// Takes the next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8]) {
        while let Some(i) = memchr::memchr(b'\n', data) {
            self.extend(&data[..i]);
            if self.last == b';' {
                self.end_statement();
            } else {
                self.extend(b"\n");
            }
            data = &data[i + 1..];
        }
        self.extend(data);
    }

    fn extend(&mut self, part: &[u8]) {
        let Some(&last) = part.last() else {
            return;
        };
        if self.head.len() < STATEMENT_HEAD {
            let take = part.len().min(STATEMENT_HEAD - self.head.len());
            self.head.extend_from_slice(&part[..take]);
        }
        self.current += part.len() as u64;
        self.last = last;
    }

    fn end_statement(&mut self) {
        if self.current > self.longest.bytes {
            self.longest = LongestStatement {
                bytes: self.current,
                head: self.head.clone(),
            };
        }
        self.current = 0;
        self.last = 0;
        self.head.clear();
    }

    /// The longest statement, an unterminated last one included.
    pub fn finish(mut self) -> LongestStatement {
        self.end_statement();
        self.longest
    }
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Passes a stream through, counting and hashing what goes by: a part read for a restore
/// is checked against its manifest on the way, instead of in a read of its own first.
pub struct Hashing<R> {
    inner: R,
    seen: std::sync::Arc<std::sync::Mutex<(u64, Sha256)>>,
}

/// What a [`Hashing`] stream saw, once it is done.
#[derive(Clone)]
pub struct Seen(std::sync::Arc<std::sync::Mutex<(u64, Sha256)>>);

impl<R> Hashing<R> {
    /// `inner`, hashed; the [`Seen`] reads the result.
    pub fn new(inner: R) -> (Self, Seen) {
        let seen = std::sync::Arc::new(std::sync::Mutex::new((0, Sha256::new())));
        (
            Self {
                inner,
                seen: seen.clone(),
            },
            Seen(seen),
        )
    }
}

impl Seen {
    /// The bytes and the SHA-256 (lowercase hex) of what went by so far.
    pub fn digest(&self) -> (u64, String) {
        let seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (seen.0, hex(&seen.1.clone().finalize()))
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashing<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = polled {
            let new = &buf.filled()[before..];
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.0 += new.len() as u64;
            seen.1.update(new);
        }
        polled
    }
}

/// A sink for the compressor that hashes, counts and forwards compressed chunks.
struct Forward {
    tx: mpsc::Sender<Vec<u8>>,
    hash: Sha256,
    bytes: u64,
    buf: Vec<u8>,
}

impl Forward {
    fn flush_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the store stopped reading")
        })
    }
}

impl Write for Forward {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.hash.update(data);
        self.bytes += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_buf()
    }
}

fn pipe_error(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Other, what.to_string()).with_source(e)
}

/// Compresses and hashes everything `source` yields into part `name` of `staged`,
/// reporting the raw byte count to `progress` as it goes; with `measure_statements`, also
/// finds the longest SQL statement (on the compressor's thread, which reads every byte
/// anyway).
pub async fn store_compressed(
    source: impl AsyncRead + Send + Unpin,
    staged: &mut dyn Staged,
    name: &str,
    measure_statements: bool,
    progress: impl Fn(u64) + Send,
) -> Result<Written> {
    let (raw_tx, mut raw_rx) = mpsc::channel::<Vec<u8>>(4);
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(4);

    type Compressed = (u64, String, Option<LongestStatement>);
    let compressor = tokio::task::spawn_blocking(move || -> std::io::Result<Compressed> {
        let mut meter = measure_statements.then(StatementMeter::default);
        let sink = Forward {
            tx: out_tx,
            hash: Sha256::new(),
            bytes: 0,
            buf: Vec::with_capacity(CHUNK),
        };
        let mut encoder = zstd::stream::Encoder::new(sink, LEVEL)?;
        while let Some(chunk) = raw_rx.blocking_recv() {
            if let Some(meter) = meter.as_mut() {
                meter.feed(&chunk);
            }
            encoder.write_all(&chunk)?;
        }
        let mut sink = encoder.finish()?;
        sink.flush()?;
        Ok((
            sink.bytes,
            hex(&sink.hash.finalize()),
            meter.map(StatementMeter::finish),
        ))
    });

    let reader = async move {
        let mut source = source;
        let mut total = 0u64;
        let mut reported = 0u64;
        // Reads append to the chunk's spare capacity (no zeroing); a chunk goes to the
        // compressor once full, so small pipe reads cost no allocation each.
        let mut chunk = Vec::with_capacity(CHUNK);
        loop {
            let n = source.read_buf(&mut chunk).await?;
            total += n as u64;
            if n == 0 || chunk.len() >= CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                if !full.is_empty() && raw_tx.send(full).await.is_err() {
                    break; // the compressor failed; its error is reported below
                }
            }
            if n == 0 || total - reported >= PROGRESS_EVERY {
                progress(total);
                reported = total;
            }
            if n == 0 {
                break;
            }
        }
        Ok::<u64, std::io::Error>(total)
    };

    let (raw, stored) = tokio::join!(reader, staged.write_part(name, out_rx));
    let compressed = compressor
        .await
        .map_err(|e| pipe_error("the compressor stopped", e))?;
    stored?;
    let raw_bytes = raw.map_err(|e| pipe_error("reading the dump failed", e))?;
    let (bytes, sha256, longest_statement) =
        compressed.map_err(|e| pipe_error("compressing the dump failed", e))?;
    Ok(Written {
        raw_bytes,
        bytes,
        sha256,
        longest_statement,
    })
}

/// Hashes a stored part: its size and SHA-256.
pub async fn hash(mut source: impl AsyncRead + Unpin) -> Result<(u64, String)> {
    let mut hash = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = source
            .read(&mut buf)
            .await
            .map_err(|e| pipe_error("reading a backup part failed", e))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex(&hash.finalize())))
}

/// Decompresses a stored part into `sink` (a restore tool's stdin), reporting the raw
/// byte count to `progress`.
pub async fn decompress(
    source: impl AsyncRead + Send + Unpin + 'static,
    mut sink: impl AsyncWrite + Send + Unpin,
    progress: impl Fn(u64) + Send,
) -> Result<u64> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
    let handle = tokio::runtime::Handle::current();
    let decoder = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let reader = tokio_util::io::SyncIoBridge::new_with_handle(source, handle);
        let mut decoder = zstd::stream::Decoder::new(reader)?;
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let n = std::io::Read::read(&mut decoder, &mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            chunk.truncate(n);
            if tx.blocking_send(chunk).is_err() {
                return Ok(()); // the consumer stopped; its error is reported
            }
        }
    });
    let mut total = 0u64;
    let mut reported = 0u64;
    let mut write_error = None;
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = sink.write_all(&chunk).await {
            write_error = Some(e);
            break;
        }
        total += chunk.len() as u64;
        if total - reported >= PROGRESS_EVERY {
            progress(total);
            reported = total;
        }
    }
    if write_error.is_none() && total != reported {
        progress(total);
    }
    drop(rx);
    let decoded = decoder
        .await
        .map_err(|e| pipe_error("the decompressor stopped", e))?;
    if let Some(e) = write_error {
        return Err(pipe_error("the restore tool stopped reading", e));
    }
    decoded.map_err(|e| {
        Error::new(ErrorKind::Integrity, "the backup part does not decompress").with_source(e)
    })?;
    sink.shutdown()
        .await
        .map_err(|e| pipe_error("closing the restore tool's input failed", e))?;
    Ok(total)
}

/// Passes a stream through unchanged and sends on `seen` once `marker` has gone by, or
/// when the stream ends or is dropped without it (the receiver then sees the sender go).
pub struct Watch<R> {
    inner: R,
    marker: &'static [u8],
    /// The last `marker.len() - 1` bytes, for a marker split between reads.
    tail: Vec<u8>,
    seen: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<R> Watch<R> {
    /// Watches `inner` for `marker` (not empty).
    pub fn new(inner: R, marker: &'static [u8], seen: tokio::sync::oneshot::Sender<()>) -> Self {
        Self {
            inner,
            marker,
            tail: Vec::new(),
            seen: Some(seen),
        }
    }

    fn look(&mut self, new: &[u8]) {
        if new.is_empty() {
            // End of the stream.
            self.fire();
            return;
        }
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(new);
        if window.windows(self.marker.len()).any(|w| w == self.marker) {
            self.fire();
        } else {
            let keep = self.marker.len().saturating_sub(1).min(window.len());
            self.tail = window.split_off(window.len() - keep);
        }
    }

    fn fire(&mut self) {
        if let Some(tx) = self.seen.take() {
            let _ = tx.send(());
        }
        self.tail = Vec::new();
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Watch<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &polled
            && self.seen.is_some()
        {
            let new = buf.filled()[before..].to_vec();
            self.look(&new);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fires_after(chunks: &[&'static [u8]], marker: &'static [u8]) -> Option<usize> {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let (mut w, r) = tokio::io::duplex(1024);
        let mut watch = Watch::new(r, marker, tx);
        let mut buf = [0u8; 64];
        for (i, chunk) in chunks.iter().enumerate() {
            w.write_all(chunk).await.unwrap();
            let n = watch.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], *chunk, "passed through unchanged");
            if rx.try_recv().is_ok() {
                return Some(i);
            }
        }
        None
    }

    #[test]
    fn the_longest_statement_is_found_across_lines_and_chunk_boundaries() {
        let mut meter = StatementMeter::default();
        // An extended INSERT puts its rows on lines of their own; a value ending in
        // `;` inside a line does not end the statement.
        for chunk in [
            &b"SET x=1;\nINSERT INTO `t"[..],
            b"` VALUES\n(1,'a;b'),\n(2",
            b",'c');\n\nDROP TABLE `u`;",
        ] {
            meter.feed(chunk);
        }
        let longest = meter.finish();
        let statement = b"INSERT INTO `t` VALUES\n(1,'a;b'),\n(2,'c');";
        assert_eq!(longest.bytes, statement.len() as u64);
        assert_eq!(longest.head, statement);

        // The last statement counts without a newline; the head is capped.
        let mut meter = StatementMeter::default();
        meter.feed(b"x;\n");
        meter.feed(&vec![b'y'; STATEMENT_HEAD * 3]);
        let longest = meter.finish();
        assert_eq!(longest.bytes, 3 * STATEMENT_HEAD as u64);
        assert_eq!(longest.head.len(), STATEMENT_HEAD);
        assert_eq!(
            StatementMeter::default().finish(),
            LongestStatement::default()
        );
    }

    #[tokio::test]
    async fn watch_fires_on_the_marker_even_split_between_reads() {
        assert_eq!(
            fires_after(&[b"abc", b"-- Ta", b"ble x"], b"-- Table").await,
            Some(2)
        );
        assert_eq!(fires_after(&[b"x-- Table y"], b"-- Table").await, Some(0));
        assert_eq!(fires_after(&[b"-- Tab", b"le"], b"-- Table").await, Some(1));
        assert_eq!(
            fires_after(&[b"-- Tabl", b"x", b"e"], b"-- Table").await,
            None
        );
    }

    #[tokio::test]
    async fn watch_fires_at_the_end_and_when_dropped() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut watch = Watch::new(&b"no marker here"[..], b"-- Table", tx);
        let mut out = Vec::new();
        watch.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"no marker here");
        assert_eq!(rx.await, Ok(()));

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        drop(Watch::new(&b""[..], b"-- Table", tx));
        assert!(rx.await.is_err(), "the sender went with the stream");
    }
}
