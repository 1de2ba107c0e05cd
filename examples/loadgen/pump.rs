//! The floor under the stream benchmark's phase d (`loadgen stream --floor`): the socket traffic
//! the stream clients received in phase d (as many connections, as many chunks a second, as many
//! bytes a chunk), made by the load generator itself over loopback TCP with no service and no
//! HTTP in between. A writer on a thread of its own (as the service is a process of its own)
//! writes every chunk on its schedule; readers on the stream clients' runtime read and drop them.
//! Whatever ingest loses while it runs is what those messages cost this machine before any
//! stream code runs.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::*;

pub(crate) struct Pump {
    stop: watch::Sender<bool>,
    writer: std::thread::JoinHandle<io::Result<u64>>,
    readers: JoinSet<io::Result<()>>,
    /// Bytes the readers have read.
    read: Arc<AtomicU64>,
}

/// What the pump did: chunks written, bytes read.
pub(crate) struct Pumped {
    pub(crate) chunks: u64,
    pub(crate) bytes: u64,
}

impl Pump {
    /// Opens `connections` connections and starts writing `per_s` chunks of `chunk_bytes` a
    /// second over them, round-robin, on a schedule (open loop).
    pub(crate) async fn start(
        connections: usize,
        per_s: f64,
        chunk_bytes: usize,
        readers: &Handle,
    ) -> Result<Pump, BoxError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let (accepted_tx, accepted_rx) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let writer = std::thread::Builder::new()
            .name("pump-writer".into())
            .spawn(move || {
                runtime.block_on(write(
                    listener,
                    connections,
                    per_s,
                    chunk_bytes,
                    accepted_tx,
                    stopped,
                ))
            })?;
        let read = Arc::new(AtomicU64::new(0));
        let mut reader_tasks = JoinSet::new();
        for _ in 0..connections {
            let read = read.clone();
            reader_tasks.spawn_on(
                async move {
                    let mut socket = TcpStream::connect(address).await?;
                    let mut buffer = vec![0u8; 16 * 1024];
                    loop {
                        match socket.read(&mut buffer).await? {
                            0 => return Ok(()),
                            n => read.fetch_add(n as u64, Relaxed),
                        };
                    }
                },
                readers,
            );
        }
        accepted_rx
            .await
            .map_err(|_| "the pump's writer stopped before every connection was open")?;
        Ok(Pump {
            stop,
            writer,
            readers: reader_tasks,
            read,
        })
    }

    /// Stops writing, closes the connections, and waits for the readers to read what was sent.
    pub(crate) async fn stop(mut self) -> Result<Pumped, BoxError> {
        let _ = self.stop.send(true);
        let chunks = tokio::task::spawn_blocking(move || self.writer.join())
            .await?
            .map_err(|_| "the pump's writer panicked")??;
        while let Some(reader) = self.readers.join_next().await {
            reader??;
        }
        Ok(Pumped {
            chunks,
            bytes: self.read.load(Relaxed),
        })
    }
}

async fn write(
    listener: std::net::TcpListener,
    connections: usize,
    per_s: f64,
    chunk_bytes: usize,
    accepted: tokio::sync::oneshot::Sender<()>,
    mut stopped: watch::Receiver<bool>,
) -> io::Result<u64> {
    let listener = TcpListener::from_std(listener)?;
    let mut sockets = Vec::with_capacity(connections);
    while sockets.len() < connections {
        let (socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        sockets.push(socket);
    }
    let _ = accepted.send(());
    // An SSE message's worth of bytes ending in a blank line, like the service's chunks.
    let mut chunk = vec![b'x'; chunk_bytes.max(2)];
    let n = chunk.len();
    chunk[n - 2..].copy_from_slice(b"\n\n");
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut written = 0u64;
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            _ = tick.tick() => {
                let due = (started.elapsed().as_secs_f64() * per_s) as u64;
                while written < due {
                    let socket = &mut sockets[written as usize % connections];
                    socket.write_all(&chunk).await?;
                    written += 1;
                }
            }
        }
    }
    Ok(written)
}
