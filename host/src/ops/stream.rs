//! Bulk streams: a directory sent as tar, a file sent as is, a stream received into a file that
//! appears only once its end frame's digest checked out.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use vcontainer_protocol::{AgentMsg, HostMsg, StreamDigest, DATA_CHUNK_LEN};

use crate::session::{ConnReader, ConnWriter, SessionError};
use crate::util::host_tar::Limits;

/// Called with the running byte count of a stream.
pub type StreamProgress<'a> = &'a mut (dyn FnMut(u64) + Send);

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("cannot create a temporary file next to {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("writing {path} failed: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("stream for {path} failed: {source}")]
    Stream { path: PathBuf, source: SessionError },
}

impl ReceiveError {
    /// The stream broke because the connection to the agent was lost (see
    /// [`SessionError::is_connection_lost`]).
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, ReceiveError::Stream { source, .. } if source.is_connection_lost())
    }
}

/// The most a guest may send for one output file. The guest is untrusted: without a cap a
/// runaway or hostile agent could fill the host's disk. Storage cannot exceed the state disk.
pub const MAX_RECEIVE_BYTES: u64 = crate::state::DEFAULT_STATE_DISK_SIZE + (1 << 30);

/// An archive from the guest may be as large as what the state disk can hold.
impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: MAX_RECEIVE_BYTES,
            max_entries: 1_000_000,
        }
    }
}

/// Receives `Data` frames until `End`, verifies the digest, and only then puts the file at
/// `dest`. Until then it is a [`super::partial::PartialOutput`]: any failure, even SIGKILL,
/// leaves nothing, and no partial output ever looks complete.
/// More than `limit` bytes is an error.
pub async fn receive_to_file(
    reader: &mut ConnReader,
    dest: &Path,
    limit: u64,
    progress: StreamProgress<'_>,
) -> Result<u64, ReceiveError> {
    let mut tmp =
        super::partial::PartialOutput::create(dest).map_err(|source| ReceiveError::Create {
            path: dest.to_path_buf(),
            source,
        })?;
    let write_err = |source| ReceiveError::Write {
        path: dest.to_path_buf(),
        source,
    };
    let stream_err = |source| ReceiveError::Stream {
        path: dest.to_path_buf(),
        source,
    };
    let mut digest = StreamDigest::new();
    let stall = crate::session::stall_timeout();
    loop {
        match reader.recv_within(stall).await.map_err(stream_err)? {
            AgentMsg::Data(chunk) => {
                digest
                    .update_capped(&chunk, limit)
                    .map_err(|e| stream_err(SessionError::Protocol(e)))?;
                tmp.file().write_all(&chunk).map_err(write_err)?;
                progress(digest.bytes());
            }
            AgentMsg::End(end) => {
                let end = digest
                    .verify(&end)
                    .map_err(|e| stream_err(SessionError::Protocol(e)))?;
                tmp.file().sync_all().map_err(write_err)?;
                tmp.persist(dest).map_err(write_err)?;
                return Ok(end.bytes);
            }
            other => return Err(stream_err(SessionError::unexpected("Data or End", &other))),
        }
    }
}

/// Sends `request` and receives the stream it answers with into `dest` (see [`receive_to_file`]).
pub async fn request_to_file(
    transport: &dyn crate::transport::Transport,
    request: vcontainer_protocol::Request,
    dest: &Path,
    limit: u64,
    progress: StreamProgress<'_>,
) -> Result<u64, super::OpError> {
    let conn = crate::session::AgentConn::request(transport, request).await?;
    let (mut reader, _writer, _) = conn.into_split();
    Ok(receive_to_file(&mut reader, dest, limit, progress).await?)
}

/// A `Write` that hands each chunk to an async task, capped at the protocol's chunk size.
struct ChunkSender {
    tx: mpsc::Sender<Vec<u8>>,
}

impl Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(DATA_CHUNK_LEN);
        self.tx
            .blocking_send(buf[..n].to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "stream receiver went away"))?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Forwards chunks from a producer thread as `Data` frames, then sends `End`.
async fn forward_chunks(
    writer: &mut ConnWriter,
    mut rx: mpsc::Receiver<Vec<u8>>,
    progress: StreamProgress<'_>,
) -> Result<StreamDigest, SessionError> {
    let mut digest = StreamDigest::new();
    while let Some(chunk) = rx.recv().await {
        digest.update(&chunk);
        writer.send(&HostMsg::Data(chunk)).await?;
        progress(digest.bytes());
    }
    Ok(digest)
}

/// Runs a blocking producer that writes into a [`ChunkSender`], and streams what it writes.
pub(super) async fn stream_from_producer<F>(
    writer: &mut ConnWriter,
    what: String,
    progress: StreamProgress<'_>,
    produce: F,
) -> Result<u64, super::OpError>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(4);
    let producer = tokio::task::spawn_blocking(move || {
        let mut sink = io::BufWriter::with_capacity(DATA_CHUNK_LEN, ChunkSender { tx });
        produce(&mut sink)?;
        sink.flush()
    });
    let forwarded = forward_chunks(writer, rx, progress).await;
    let produced = producer
        .await
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|r| r);
    // A broken connection wins: the producer then only failed because its receiver went away.
    // Otherwise a producer failure (unreadable file, …) wins, and the agent sees no End frame.
    let digest = forwarded?;
    produced.map_err(|source| super::OpError::Io {
        context: what,
        source,
    })?;
    let end = digest.finish();
    writer.send(&HostMsg::End(end)).await?;
    Ok(end.bytes)
}

/// Sends the contents of `dir` as a tar stream (entries relative to `dir`), never following
/// symlinks out of it.
pub async fn send_dir_as_tar(
    writer: &mut ConnWriter,
    dir: &Path,
    progress: StreamProgress<'_>,
) -> Result<u64, super::OpError> {
    let dir = dir.to_path_buf();
    let what = format!("reading {}", dir.display());
    stream_from_producer(writer, what, progress, move |sink| {
        let mut builder = tar::Builder::new(sink);
        builder.follow_symlinks(false);
        builder.mode(tar::HeaderMode::Deterministic);
        builder.append_dir_all(".", &dir)?;
        builder.finish()
    })
    .await
}

/// Sends a file's bytes as they are (e.g. a storage tar to seed the engine with).
pub async fn send_file(
    writer: &mut ConnWriter,
    path: &Path,
    progress: StreamProgress<'_>,
) -> Result<u64, super::OpError> {
    let mut file = File::open(path).map_err(|source| super::OpError::Io {
        context: format!("cannot open {}", path.display()),
        source,
    })?;
    let what = format!("reading {}", path.display());
    stream_from_producer(writer, what, progress, move |sink| {
        let mut buf = vec![0u8; DATA_CHUNK_LEN];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            sink.write_all(&buf[..n])?;
        }
    })
    .await
}
