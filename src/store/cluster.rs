//! The private PostgreSQL cluster of the zero-config start (SPEC §7): found among the server
//! binaries of the machine, initialised once under the data directory, run as a child process
//! (as an unprivileged user when we are root), reachable only through a Unix socket in a private
//! directory, and stopped with the service.
//!
//! The process that starts the server owns it (an exclusive lock on `postgres.owner` in the data
//! directory, released when it exits) and stops it when it is done. A one-off command joins a
//! server the service owns; the service never joins one a command owns (that command would stop
//! it on exit), it waits until the command is done and starts its own; a second service on the
//! same data directory is refused.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection};

use crate::ownership::not_only_ours;

/// The superuser of the private cluster.
const SUPERUSER: &str = "postgres";
/// The server's port: only its socket's name, since it listens on no TCP address.
const PORT: u16 = 5432;
const SOCKET_FILE: &str = ".s.PGSQL.5432";
/// Longest path of a Unix socket file (sun_path holds 108 bytes, with the final NUL).
const MAX_SOCKET_PATH: usize = 107;
/// How long a stop waits for the sessions still open to end before cutting them.
const SMART_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found on PATH or under \
         /usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: apt-get install postgresql) \
         or set DATABASE_URL"
    )]
    NotInstalled,
    #[error(
        "running as root, but neither the 'postgres' nor the 'nobody' user exists to run PostgreSQL"
    )]
    NoUnprivilegedUser,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let context = context.into();
    move |source| ClusterError::Io { context, source }
}

/// A running private cluster; dropping it stops the server.
#[derive(Debug)]
pub struct Cluster {
    child: Mutex<Option<Child>>,
    socket_dir: PathBuf,
    log_file: PathBuf,
    /// `postgres.owner`, locked, while this process owns the server.
    _owner: Option<fs::File>,
    /// How this process started the server, to start it again ([`Cluster::keep_running`]).
    launch: Option<Launch>,
}

/// The server's binaries, data directory and user.
#[derive(Debug, Clone)]
struct Launch {
    bin: PathBuf,
    pgdata: PathBuf,
    owner: Option<Owner>,
}

/// What the process using the private cluster is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The service: it runs for as long as it is needed.
    Serve,
    /// A one-off command (`migrate`, `token`, `prune`, `rebuild-status`).
    Command,
}

impl Role {
    fn word(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Command => "command",
        }
    }
}

/// The user the server runs as when we are root.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Cluster {
    /// Initialises the cluster under `data_dir/postgres` if needed, starts it and waits until it
    /// accepts connections.
    ///
    /// The server gets SIGINT (fast shutdown) if the thread that called this dies, so call it
    /// from a thread that lives as long as the cluster is needed (the main thread).
    pub async fn start(data_dir: &Path, role: Role) -> Result<Cluster, ClusterError> {
        let owner = unprivileged_owner()?;
        make_dirs(data_dir).map_err(io(format!("creating {}", data_dir.display())))?;
        let data_dir =
            fs::canonicalize(data_dir).map_err(io(format!("resolving {}", data_dir.display())))?;
        only_its_owner_writes(&data_dir)?;
        let pgdata = data_dir.join("postgres");
        let log_file = data_dir.join("postgres.log");
        let socket_dir = socket_dir_for(&pgdata);
        // One in the data directory is as safe as the data directory.
        let look_at_socket_dir = |connected| {
            if socket_dir == pgdata {
                Ok(())
            } else {
                trusted_socket_dir(&socket_dir, owner, connected)
            }
        };
        let cluster = |child, owner_lock| Cluster {
            child: Mutex::new(child),
            socket_dir: socket_dir.clone(),
            log_file: log_file.clone(),
            _owner: owner_lock,
            launch: None,
        };

        let lock_path = data_dir.join("postgres.owner");
        let mut waiting_told = false;
        let mut unanswered_since: Option<Instant> = None;
        let lock = loop {
            if let Some(lock) = try_to_own(&lock_path, role)? {
                break lock;
            }
            let holder = fs::read_to_string(&lock_path).unwrap_or_default();
            let mut words = holder.split_whitespace();
            let (holder_role, pid) = (words.next(), words.next().unwrap_or("?"));
            match (role, holder_role) {
                (Role::Serve, Some("serve")) => {
                    return Err(ClusterError::Failed(format!(
                        "another calry-hooks service (pid {pid}) runs the private PostgreSQL \
                         cluster of {}: stop it first, or give every instance the same \
                         DATABASE_URL to share one PostgreSQL",
                        data_dir.display()
                    )));
                }
                // The service's server, once it accepts connections: a command uses it as it
                // is and leaves it running.
                (Role::Command, Some("serve")) => {
                    look_at_socket_dir(false)?;
                    let joined = cluster(None, None);
                    let connected = joined.answers().await;
                    if connected.is_ok() {
                        // Again: one made between the look and the connection was not seen.
                        look_at_socket_dir(true)?;
                        tracing::info!(data = %pgdata.display(), "using the private PostgreSQL cluster of the running service");
                        return Ok(joined);
                    }
                    // The service starts its server again when it exits (`keep_running`); one
                    // that stays down is its to report, and this command's to say, not to wait
                    // for in silence.
                    let since = *unanswered_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(30) {
                        return Err(ClusterError::Failed(format!(
                            "the calry-hooks service (pid {pid}) runs the private PostgreSQL \
                             cluster of {}, and it has not accepted connections for 30 s on \
                             {} ({}); its log {} ends with:\n{}",
                            data_dir.display(),
                            socket_dir.join(SOCKET_FILE).display(),
                            connected.err().unwrap_or_default(),
                            log_file.display(),
                            log_tail(&log_file)
                        )));
                    }
                }
                // A command's server (or an owner that has not said who it is yet): the command
                // stops it when it is done, so wait and start one of our own.
                _ if !waiting_told => {
                    tracing::info!(owner = %holder.trim(), "waiting for the process that runs the private PostgreSQL cluster to finish with it");
                    waiting_told = true;
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };

        // Once the cluster is ours: another process may have made it in the meantime.
        let bin = binaries_for(&pgdata)?;
        prepare_dir(&pgdata, owner)?;
        if !pgdata.join("PG_VERSION").exists() {
            initdb(&bin, &pgdata, owner)?;
        }
        // Already running without an owner (started by an older build): use it as it is, and
        // leave it running.
        look_at_socket_dir(false)?;
        let running = cluster(None, Some(lock));
        if socket_dir.join(SOCKET_FILE).exists() && running.answers().await.is_ok() {
            look_at_socket_dir(true)?;
            tracing::info!(data = %pgdata.display(), "using the private PostgreSQL cluster already running");
            return Ok(running);
        }
        let mut lock = running.owner_lock();

        // A server stopped a moment ago (our previous run) may still hold the data directory:
        // try again for a few seconds before giving up.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let child = spawn_postgres(&bin, &pgdata, &socket_dir, &log_file, owner)?;
            let mut started = cluster(Some(child), lock);
            started.launch = Some(Launch {
                bin: bin.clone(),
                pgdata: pgdata.clone(),
                owner,
            });
            match started.wait_ready(deadline).await {
                Ok(()) => {
                    tracing::info!(data = %pgdata.display(), "private PostgreSQL cluster started");
                    return Ok(started);
                }
                Err(err) if Instant::now() < deadline && started.exited() => {
                    lock = started.owner_lock();
                    tracing::debug!(error = %err, "PostgreSQL did not start; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Connection options for `database` on this cluster, as the superuser. Every one is set, so
    /// that none comes from a `PGPORT`, `PGSSLMODE`… meant for another server.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .port(PORT)
            .ssl_mode(PgSslMode::Disable)
            .username(SUPERUSER)
            .database(database)
    }

    /// Whether the server takes a connection within [`super::ACQUIRE_TIMEOUT`]: a server that
    /// is frozen (`SIGSTOP`) or hung takes it on its socket and never answers. Why not, if not.
    async fn answers(&self) -> Result<(), String> {
        let options = self.connect_options("postgres").disable_statement_logging();
        let connect = sqlx::PgConnection::connect_with(&options);
        match tokio::time::timeout(super::ACQUIRE_TIMEOUT, connect).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                Ok(())
            }
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!(
                "no answer within {} s",
                super::ACQUIRE_TIMEOUT.as_secs()
            )),
        }
    }

    async fn wait_ready(&self, deadline: Instant) -> Result<(), ClusterError> {
        loop {
            match self.answers().await {
                Ok(()) => return Ok(()),
                Err(err) => {
                    if self.exited() || Instant::now() >= deadline {
                        return Err(ClusterError::Failed(format!(
                            "PostgreSQL did not start ({err}); its log {} ends with:\n{}",
                            self.log_file.display(),
                            log_tail(&self.log_file)
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Watches the server this process started, for as long as it is polled: one that exits
    /// (killed, or stopped by a full disk its crash recovery could not write to) is started
    /// again, and again every 5 s until it stays up; the service's connections then recover as
    /// after any outage. Poll it from the thread that started the cluster (see
    /// [`Cluster::start`]). A server this process joined is not its to start: that never ends.
    pub async fn keep_running(&self) {
        let Some(launch) = &self.launch else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let exited = match self
                .child
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                Some(server) => server.try_wait().ok().flatten(),
                None => break, // being stopped
            };
            let Some(status) = exited else { continue };
            self.report_exit(status, "starting it again");
            let started = spawn_postgres(
                &launch.bin,
                &launch.pgdata,
                &self.socket_dir,
                &self.log_file,
                launch.owner,
            );
            let ready = match started {
                Ok(server) => {
                    *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(server);
                    self.wait_ready(Instant::now() + Duration::from_secs(30))
                        .await
                }
                Err(err) => Err(err),
            };
            match ready {
                Ok(()) => tracing::info!("private PostgreSQL cluster started again"),
                Err(err) => {
                    tracing::error!(%err, "the private PostgreSQL cluster did not start again; trying again in 5 s");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
        std::future::pending().await
    }

    /// Logs a server that exited on its own, and what this process does next.
    fn report_exit(&self, status: std::process::ExitStatus, next: &str) {
        let log = self.log_file.display();
        if status.success() {
            // A stop someone else asked for (SIGTERM, SIGINT, SIGQUIT: `pg_ctl stop` in any
            // mode): a service manager that signals every process of the service at once,
            // as systemd's default `KillMode=control-group` does, most likely.
            tracing::warn!(%status, %log, "the private PostgreSQL cluster was stopped by another process (a service manager that signals every process of the service? with systemd, KillMode=mixed); {next}");
        } else {
            tracing::error!(%status, %log, "the private PostgreSQL cluster exited; {next}");
        }
    }

    /// The owner's lock, taken out of a cluster given up (its server did not start).
    fn owner_lock(mut self) -> Option<fs::File> {
        self._owner.take()
    }

    fn exited(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// The server this cluster started, if it is still ours to stop.
    fn take_child(&self) -> Option<std::process::Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Stops the server and waits until it has exited (at most 30 s, then kills it). A cluster
    /// that was already running when [`Cluster::start`] joined it is left running; a server that
    /// had already exited is logged as [`Cluster::keep_running`] logs it.
    ///
    /// A smart shutdown first: sessions closed a moment before (the service's own, as it stops)
    /// end on their own instead of being terminated, which PostgreSQL logs as FATAL. Sessions
    /// still open after [`SMART_SHUTDOWN_GRACE`] get a fast shutdown: open transactions are
    /// rolled back, committed ones kept.
    pub async fn stop(self) {
        let Some(mut child) = self.take_child() else {
            return;
        };
        if let Ok(Some(status)) = child.try_wait() {
            return self.report_exit(status, "not started again, as the service is stopping");
        }
        signal(&child, libc::SIGTERM);
        let started = Instant::now();
        let mut fast = false;
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = child.try_wait() {
                if status.success() {
                    tracing::info!("private PostgreSQL cluster stopped");
                } else {
                    // Its shutdown checkpoint failed (a full disk), say: nothing committed is
                    // lost, and its next start recovers from the WAL.
                    let log = self.log_file.display();
                    tracing::error!(%status, %log, "the private PostgreSQL cluster failed while stopping; its next start recovers from its WAL, and its log says why");
                }
                return;
            }
            if !fast && started.elapsed() >= SMART_SHUTDOWN_GRACE {
                fast = true;
                signal(&child, libc::SIGINT);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!("PostgreSQL did not stop within 30 s; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Cluster {
    /// A cluster dropped without [`Cluster::stop`] (an error on the way out) is still asked to
    /// stop (fast), without waiting: a destructor must not block the thread it runs on.
    fn drop(&mut self) {
        if let Some(child) = self.take_child() {
            signal(&child, libc::SIGINT);
        }
    }
}

/// Sends `signal` to the server this process started. Its `Child` is not yet waited for, so its
/// pid is still its own (at most a zombie), never another process's.
fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) with our own child's pid; it touches no memory of ours.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
}

/// The lock on `postgres.owner` that makes this process the owner of the server, with `role`
/// written in it for the others to read; `None` while another process holds it.
fn try_to_own(path: &Path, role: Role) -> Result<Option<fs::File>, ClusterError> {
    let file = open_own_file(
        path,
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .truncate(false),
    )?;
    // SAFETY: flock on a descriptor we own, without waiting.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(None);
    }
    let said = format!("{} {}\n", role.word(), std::process::id());
    file.set_len(0)
        .and_then(|()| std::io::Write::write_all(&mut &file, said.as_bytes()))
        .map_err(io(format!("writing {}", path.display())))?;
    Ok(Some(file))
}

/// The directory holding `initdb` and `postgres` (and the other server tools, such as
/// `pg_resetwal`): the one on PATH, else the newest version under /usr/lib/postgresql.
pub fn binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PATH").and_then(|path| servers_on_path(&path).next()) {
        return Some(dir);
    }
    debian_binaries().into_iter().next()
}

/// Debian's server binaries, `/usr/lib/postgresql/<major>/bin`, the newest first.
fn debian_binaries() -> Vec<PathBuf> {
    // `9.6` before 10.
    let mut versions: Vec<(f64, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<f64>().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort_by(|a, b| b.0.total_cmp(&a.0));
    versions.into_iter().map(|(_, bin)| bin).collect()
}

/// The server tool `name` (`pg_resetwal`) that goes with the server in `bin`: beside it, or
/// beside the program its `postgres` links to (a directory on `PATH` may hold links to the
/// server's programs only, `/usr/local/bin/postgres` to Debian's).
pub fn server_tool(bin: &Path, name: &str) -> Option<PathBuf> {
    let linked = fs::canonicalize(bin.join("postgres")).ok();
    [
        Some(bin.to_path_buf()),
        linked.and_then(|p| Some(p.parent()?.to_path_buf())),
    ]
    .into_iter()
    .flatten()
    .map(|dir| dir.join(name))
    .find(|tool| tool.is_file())
}

/// The server binaries for the cluster in `pgdata`. A new one gets [`binaries`]. One made
/// already needs those of the major version that made it (its `PG_VERSION`), since a server of
/// another major version refuses its data: the first on `PATH` of that version, else Debian's
/// of that version. A newer major version installed beside it is said once, with how to move
/// the data to it (`pg_upgrade`); none of its version is an error saying the ways out.
pub fn binaries_for(pgdata: &Path) -> Result<PathBuf, ClusterError> {
    binaries_for_path(pgdata, std::env::var_os("PATH").as_deref())
}

/// [`binaries_for`], with `path` for `PATH`'s value.
fn binaries_for_path(
    pgdata: &Path,
    path: Option<&std::ffi::OsStr>,
) -> Result<PathBuf, ClusterError> {
    let Ok(made_by) = fs::read_to_string(pgdata.join("PG_VERSION")) else {
        return binaries().ok_or(ClusterError::NotInstalled);
    };
    let made_by = made_by.trim();
    // Each directory once (`PATH` may name one twice, or Debian's), and asked once.
    let mut candidates: Vec<PathBuf> = Vec::new();
    for bin in path
        .into_iter()
        .flat_map(servers_on_path)
        .chain(debian_binaries())
    {
        if !candidates.contains(&bin) {
            candidates.push(bin);
        }
    }
    let found: Vec<(String, PathBuf)> = candidates
        .into_iter()
        .filter_map(|bin| Some((major_version(&bin)?, bin)))
        .collect();
    let number = |version: &str| version.parse::<f64>().unwrap_or(0.0);
    let newest = found
        .iter()
        .max_by(|(a, _), (b, _)| number(a).total_cmp(&number(b)));
    match found.iter().find(|(version, _)| version == made_by) {
        Some((_, bin)) => {
            if let Some((newer, at)) = newest.filter(|(v, _)| number(v) > number(made_by)) {
                tracing::info!(
                    data = %pgdata.display(),
                    "the private PostgreSQL cluster's data is PostgreSQL {made_by}'s, so it runs \
                     on {}; PostgreSQL {newer} is installed too ({}): docs/OPERATIONS.md, \
                     \"PostgreSQL's major version\", says how to move the data to it",
                    bin.display(),
                    at.display()
                );
            }
            Ok(bin.clone())
        }
        None if found.is_empty() => Err(ClusterError::NotInstalled),
        None => {
            // pg_upgrade moves data to a newer major version only.
            let upgrade = match newest.filter(|(v, _)| number(v) > number(made_by)) {
                Some((newer, _)) => format!(
                    ", or move the data to PostgreSQL {newer} with pg_upgrade (docs/OPERATIONS.md, \
                     \"PostgreSQL's major version\")"
                ),
                None => String::new(),
            };
            let found: Vec<String> = found
                .iter()
                .map(|(version, bin)| format!("{version} in {}", bin.display()))
                .collect();
            Err(ClusterError::Failed(format!(
                "the private PostgreSQL cluster in {} was made by PostgreSQL {made_by}, whose \
                 server binaries are not installed (found: {}): a server of another major \
                 version cannot run its data. Install them (Debian/Ubuntu: apt-get install \
                 postgresql-{made_by}){upgrade}",
                pgdata.display(),
                found.join(", ")
            )))
        }
    }
}

/// How long `postgres --version` may take: a real server answers in milliseconds, and one that
/// hangs (a wrapper on `PATH` waiting for something) must not hold the start up for ever.
const VERSION_TIMEOUT: Duration = Duration::from_secs(if cfg!(test) { 1 } else { 10 });

/// The major version of the server in `bin`, from `postgres --version` (`postgres (PostgreSQL)
/// 15.10 (Debian 15.10-0+deb12u1)`: 15; `9.6.24`: 9.6, as its data directory names it). Run as
/// the server would be (as its user when we are root, without our `PG…` variables), and given
/// [`VERSION_TIMEOUT`]: a server that does not answer by then has none.
fn major_version(bin: &Path) -> Option<String> {
    use std::io::Read;
    let program = bin.join("postgres");
    let mut cmd = command(program.clone(), unprivileged_owner().ok().flatten());
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own group, so that whatever it started is stopped with it.
        .process_group(0);
    // "Text file busy" for a moment while a program just written is still open in a process
    // that another thread forked and that has not yet run its own program (tests write fake
    // servers): try again.
    let mut tries = 0;
    let mut child = loop {
        match cmd.spawn() {
            Err(err) if err.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            spawned => break spawned.ok()?,
        }
    };
    let deadline = Instant::now() + VERSION_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                tracing::warn!(program = %program.display(), "`postgres --version` did not answer within {} s: not used", VERSION_TIMEOUT.as_secs());
                // SAFETY: signalling the process group of our own child, not yet waited for (so
                // its id is not reused).
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                let _ = child.wait();
                return None;
            }
        }
    }
    // It has exited, having written what it says; something it left running may still hold
    // the pipe open, so read what is there without waiting for the end.
    let mut stdout = child.stdout.take()?;
    // SAFETY: setting a flag on a descriptor we own.
    unsafe {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stdout);
        libc::fcntl(
            fd,
            libc::F_SETFL,
            libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
        );
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = stdout.read(&mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(out).ok()?;
    let version = text
        .split("(PostgreSQL) ")
        .nth(1)?
        .split_whitespace()
        .next()?;
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().filter(|m| !m.is_empty())?;
    Some(match major {
        "9" => format!("9.{}", parts.next()?),
        _ => major.to_owned(),
    })
}

/// The directories of `path` (`PATH`'s value) holding `initdb` and `postgres`, in order.
/// Relative ones (`.`, or an empty entry) are passed over: they name whatever the working
/// directory holds, which may be a directory anyone can write in, and the service may be root.
fn servers_on_path(path: &std::ffi::OsStr) -> impl Iterator<Item = PathBuf> + '_ {
    std::env::split_paths(path).filter(|dir| dir.is_absolute() && has_both(dir) && only_ours(dir))
}

/// Whether the directory and the two programs in it could have been put there by no one but
/// this user or root ([`not_only_ours`]): a directory on `PATH` that anyone may write in (`/tmp`)
/// would have us run another user's programs.
fn only_ours(dir: &Path) -> bool {
    [dir.to_path_buf(), dir.join("initdb"), dir.join("postgres")]
        .iter()
        .all(|path| fs::File::open(path).is_ok_and(|file| matches!(not_only_ours(&file), Ok(None))))
}

fn has_both(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// PostgreSQL refuses to run as root: then the cluster belongs to `postgres` (or `nobody`).
pub fn unprivileged_owner() -> Result<Option<Owner>, ClusterError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    for name in [c"postgres", c"nobody"] {
        // SAFETY: getpwnam is given a NUL-terminated name; the record is copied out at once,
        // before any other call could overwrite it.
        let entry = unsafe { libc::getpwnam(name.as_ptr()) };
        if !entry.is_null() {
            let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
            return Ok(Some(Owner { uid, gid }));
        }
    }
    Err(ClusterError::NoUnprivilegedUser)
}

/// Creates `dir` with mode 0700 and hands it (and everything in it) to the owner.
fn prepare_dir(dir: &Path, owner: Option<Owner>) -> Result<(), ClusterError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(io(format!("creating {}", dir.display())))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io(format!("setting the mode of {}", dir.display())))?;
    // A tree whose top already belongs to the owner was handed over by an earlier start.
    if let Some(owner) = owner {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(dir).map_err(io(format!("reading {}", dir.display())))?;
        if meta.uid() != owner.uid {
            chown_tree(dir, owner)?;
        }
    }
    Ok(())
}

fn chown_tree(path: &Path, owner: Owner) -> Result<(), ClusterError> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(path).map_err(io(format!("reading {}", path.display())))?;
    if meta.uid() != owner.uid || meta.gid() != owner.gid {
        std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid))
            .map_err(io(format!("changing the owner of {}", path.display())))?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(io(format!("reading {}", path.display())))? {
            let entry = entry.map_err(io(format!("reading {}", path.display())))?;
            chown_tree(&entry.path(), owner)?;
        }
    }
    Ok(())
}

/// The socket lives in the data directory itself unless that path is too long for a socket;
/// then in a directory of its own, `calry-hooks-<hash of the path>` in the temporary directory,
/// made when the server first starts ([`prepare_socket_dir`]). It stays when the server stops:
/// while it is there, no other user can take its name.
fn socket_dir_for(pgdata: &Path) -> PathBuf {
    if pgdata.as_os_str().len() + 1 + SOCKET_FILE.len() <= MAX_SOCKET_PATH {
        return pgdata.to_path_buf();
    }
    // SHA-256, not std's DefaultHasher, whose output may change between Rust releases: a
    // command built by another release must find the running service's server.
    use sha2::{Digest, Sha256};
    use std::os::unix::ffi::OsStrExt;
    let digest = Sha256::digest(pgdata.as_os_str().as_bytes());
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    std::env::temp_dir().join(format!("calry-hooks-{name}"))
}

/// Makes the socket's own directory, private, unless one is there already: then it must be one
/// [`trusted_socket_dir`] takes.
fn prepare_socket_dir(dir: &Path, owner: Option<Owner>) -> Result<(), ClusterError> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            trusted_socket_dir(dir, owner, true)?;
        }
        Err(err) => return Err(io(format!("creating {}", dir.display()))(err)),
    }
    prepare_dir(dir, owner)
}

/// Whether a server found through `socket_dir` can be this data directory's, looked at before a
/// connection through it and after (`connected`: a directory made in between was not there to
/// look at the first time; once ours is there, no one else can take its name). Anyone may create
/// names in the temporary directory, so the socket's own directory there, if it exists, must be
/// a directory, not a link to one, belong to this process's user or the server's, and let no one
/// else write in it: otherwise another user could put a server of theirs behind it (and have the
/// service store its deliveries there), or have the service make private whatever a link names.
fn trusted_socket_dir(
    socket_dir: &Path,
    owner: Option<Owner>,
    connected: bool,
) -> Result<(), ClusterError> {
    use std::os::unix::fs::MetadataExt;
    let meta = match fs::symlink_metadata(socket_dir) {
        Ok(meta) => meta,
        // None: no server behind it, unless one answered through it (and its directory went).
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !connected => return Ok(()),
        Err(err) => return Err(io(format!("reading {}", socket_dir.display()))(err)),
    };
    // SAFETY: geteuid has no preconditions.
    let user = unsafe { libc::geteuid() };
    let ours = meta.uid() == user || owner.is_some_and(|o| o.uid == meta.uid());
    if !meta.file_type().is_dir() || !ours || meta.mode() & 0o022 != 0 {
        return Err(ClusterError::Failed(format!(
            "{} (the private PostgreSQL cluster's socket directory, since the data directory's \
             path is too long for a socket) is not a directory of this user or of the user \
             PostgreSQL runs as that only its owner may write in: another user may have made \
             it. Remove it, or choose a CALRY_HOOKS_DATA_DIR with a shorter path",
            socket_dir.display()
        )));
    }
    Ok(())
}

/// Makes `dir` and the directories above it that are missing, each 0755 whatever the umask:
/// one of 000 would let anyone write in them, one of 077 would keep the server's user out
/// when we are root.
fn make_dirs(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        make_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o755)),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

/// The data directory must be this user's (or root's) and let no one else write in it: another
/// user could put a server of theirs, or links, where the service's cluster, lock and log are.
fn only_its_owner_writes(data_dir: &Path) -> Result<(), ClusterError> {
    use std::os::unix::fs::MetadataExt;
    let dir = fs::File::open(data_dir).map_err(io(format!("opening {}", data_dir.display())))?;
    match not_only_ours(&dir) {
        Ok(None) => Ok(()),
        Ok(Some(why)) => {
            // Root running a command on the data of a service that runs as its own user (as
            // deploy/calry-hooks.service does): taking the directory would break the service.
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            let owner = dir
                .metadata()
                .map(|m| m.uid())
                .ok()
                .filter(|&uid| root && uid != 0);
            let fix = match owner.and_then(crate::ownership::user_name) {
                Some(name) => format!(
                    "If it is the data of a service that runs as {name}, run calry-hooks as \
                     {name} too (runuser -u {name} -- calry-hooks …); else make it yours and \
                     writable by you only (chown, chmod go-w), or choose another"
                ),
                None => "Make it yours and writable by you only (chown, chmod go-w), or choose \
                         another"
                    .to_owned(),
            };
            Err(ClusterError::Failed(format!(
                "the data directory {} (CALRY_HOOKS_DATA_DIR): {why}, who could replace the \
                 private PostgreSQL cluster under it. {fix}",
                data_dir.display()
            )))
        }
        Err(err) => Err(io(format!("reading {}", data_dir.display()))(err)),
    }
}

/// Opens one of the service's own files in the data directory (`postgres.owner`,
/// `postgres.log`): never through a link, and readable by its owner only (it holds the
/// server's log, or a lock others could take).
fn open_own_file(path: &Path, options: &mut fs::OpenOptions) -> Result<fs::File, ClusterError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = options
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io(format!("opening {}", path.display())))?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io(format!("setting the mode of {}", path.display())))?;
    Ok(file)
}

/// A PostgreSQL program, with none of the caller's `PG…` variables: `PGPORT` would move the
/// server's socket, `PGDATA` its data.
fn command(program: PathBuf, owner: Option<Owner>) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir("/");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            cmd.env_remove(name);
        }
    }
    // The service's readiness is the service's to tell systemd (`Type=notify`). Debian's server
    // would tell it too, as soon as it takes connections: systemd ignores a process other than
    // the unit's main one and logs a warning for it (with `NotifyAccess=all`, it would take the
    // service as ready before the migrations).
    cmd.env_remove("NOTIFY_SOCKET");
    if let Some(owner) = owner {
        cmd.uid(owner.uid).gid(owner.gid);
    }
    cmd
}

fn initdb(bin: &Path, pgdata: &Path, owner: Option<Owner>) -> Result<(), ClusterError> {
    tracing::info!(data = %pgdata.display(), "initialising a private PostgreSQL cluster");
    let output = command(bin.join("initdb"), owner)
        .arg("--pgdata")
        .arg(pgdata)
        .args([
            "--username",
            SUPERUSER,
            // Only the owner of the private socket directory can connect at all.
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ])
        .output()
        .map_err(io("running initdb"))?;
    if !output.status.success() {
        return Err(ClusterError::Failed(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

fn spawn_postgres(
    bin: &Path,
    pgdata: &Path,
    socket_dir: &Path,
    log_file: &Path,
    owner: Option<Owner>,
) -> Result<Child, ClusterError> {
    let log = open_own_file(log_file, fs::OpenOptions::new().append(true))?;
    let log_err = log.try_clone().map_err(io("duplicating the log file"))?;
    if socket_dir != pgdata {
        prepare_socket_dir(socket_dir, owner)?;
    }
    let parent = std::process::id() as libc::pid_t;
    let mut cmd = command(bin.join("postgres"), owner);
    cmd.arg("-D")
        .arg(pgdata)
        .arg("-k")
        .arg(socket_dir)
        .args(["-p", &PORT.to_string()])
        .args([
            "-c",
            "listen_addresses=",
            "-c",
            "unix_socket_permissions=0700",
        ])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: a Ctrl-C in the terminal goes to us, and we stop the server
        // only after in-flight deliveries are committed.
        .process_group(0);
    // SAFETY: only async-signal-safe calls between fork and exec. The death signal is set after
    // the uid change (which would clear it) and covers a parent that dies without stopping us.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::raise(libc::SIGINT);
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(io("starting postgres"))
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "calry-hooks-unit-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_servers_major_version_is_read_as_its_data_directory_names_it() {
        use std::os::unix::fs::PermissionsExt;
        let bin = scratch("version");
        let said = |version: &str| {
            let script = format!("#!/bin/sh\necho 'postgres (PostgreSQL) {version}'\n");
            fs::write(bin.join("postgres"), script).unwrap();
            fs::set_permissions(bin.join("postgres"), fs::Permissions::from_mode(0o755)).unwrap();
            major_version(&bin)
        };
        assert_eq!(said("17.6 (Debian 17.6-1)").as_deref(), Some("17"));
        assert_eq!(said("15.10").as_deref(), Some("15"));
        assert_eq!(said("18beta1").as_deref(), Some("18"));
        assert_eq!(said("9.6.24").as_deref(), Some("9.6"));
        assert_eq!(said("").as_deref(), None);
        // And the server of this machine, whose data directories it finds it for.
        let installed = binaries().expect("PostgreSQL's server binaries");
        let version = major_version(&installed).unwrap();
        if let Ok(debian) = installed.strip_prefix("/usr/lib/postgresql") {
            assert_eq!(debian, Path::new(&version).join("bin"));
        }
        let data = scratch("made");
        fs::write(data.join("PG_VERSION"), format!("{version}\n")).unwrap();
        assert_eq!(binaries_for(&data).unwrap(), installed);
        fs::write(data.join("PG_VERSION"), "99\n").unwrap();
        assert!(binaries_for(&data).is_err());
        let _ = fs::remove_dir_all(&bin);
        let _ = fs::remove_dir_all(&data);
    }

    /// A fake server directory in `dir`: `initdb`, and a `postgres` that runs `script`.
    fn fake_server(dir: &Path, script: &str) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        for (program, text) in [("initdb", "exit 1"), ("postgres", script)] {
            fs::write(dir.join(program), format!("#!/bin/sh\n{text}\n")).unwrap();
            fs::set_permissions(dir.join(program), fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir.to_path_buf()
    }

    /// Every directory on `PATH` that holds a server is asked its version, not only the first:
    /// data of 16 runs on a 16 that comes after a 17 on `PATH`.
    #[test]
    fn the_servers_version_is_looked_for_in_every_directory_on_path() {
        let base = scratch("every-path");
        let newer = fake_server(&base.join("17"), "echo 'postgres (PostgreSQL) 17.1'");
        let its = fake_server(&base.join("16"), "echo 'postgres (PostgreSQL) 16.4'");
        let data = base.join("data");
        fs::create_dir(&data).unwrap();
        fs::write(data.join("PG_VERSION"), "16\n").unwrap();
        let path = std::env::join_paths([newer.clone(), its.clone()]).unwrap();
        let chosen = binaries_for_path(&data, Some(&path));
        assert_eq!(chosen.map_err(|e| e.to_string()), Ok(its));
        let _ = fs::remove_dir_all(&base);
    }

    /// `postgres --version` runs as the server would (root's cluster: as its user, not root)
    /// and is not waited for forever: one that hangs counts as no server.
    #[test]
    fn the_servers_version_is_asked_as_its_user_and_not_waited_for_forever() {
        let base = scratch("asked");
        let bin = fake_server(&base.join("uid"), "echo \"postgres (PostgreSQL) $(id -u)\"");
        let user = unprivileged_owner().unwrap().map_or_else(
            // SAFETY: geteuid has no preconditions.
            || unsafe { libc::geteuid() },
            |owner| owner.uid,
        );
        assert_eq!(major_version(&bin), Some(user.to_string()));
        // Hangs, and leaves a process behind that holds its output open.
        let bin = fake_server(&base.join("hangs"), "sleep 30 & exec sleep 30");
        let asked = Instant::now();
        assert_eq!(major_version(&bin), None);
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{:?}",
            asked.elapsed()
        );
        let bin = fake_server(
            &base.join("leaves"),
            "echo 'postgres (PostgreSQL) 15.2'; sleep 30 &",
        );
        let asked = Instant::now();
        assert_eq!(major_version(&bin).as_deref(), Some("15"));
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{:?}",
            asked.elapsed()
        );
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn root_is_told_to_run_as_the_user_whose_data_directory_it_is() {
        // Only root can give a directory to another user (CI runs the tests as root).
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let dir = scratch("theirs-data");
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        let name = crate::ownership::user_name(65534).unwrap();
        let err = only_its_owner_writes(&dir).unwrap_err().to_string();
        for words in [
            format!("it belongs to another user ({name}, uid 65534)"),
            format!("run calry-hooks as {name} too (runuser -u {name} -- calry-hooks …)"),
        ] {
            assert!(err.contains(&words), "{words:?} not in: {err}");
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_server_tool_is_found_beside_the_server_a_link_on_path_names() {
        let base = scratch("tool");
        let real = base.join("lib/15/bin");
        fs::create_dir_all(&real).unwrap();
        for program in ["postgres", "pg_resetwal"] {
            fs::write(real.join(program), "").unwrap();
        }
        let links = base.join("bin");
        fs::create_dir(&links).unwrap();
        std::os::unix::fs::symlink(real.join("postgres"), links.join("postgres")).unwrap();
        let found = real.canonicalize().unwrap().join("pg_resetwal");
        assert_eq!(server_tool(&links, "pg_resetwal"), Some(found));
        assert_eq!(
            server_tool(&real, "pg_resetwal"),
            Some(real.join("pg_resetwal"))
        );
        assert_eq!(server_tool(&links, "pg_upgrade"), None);
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn a_long_data_directory_has_its_socket_under_a_name_no_release_changes() {
        let short = Path::new("/srv/calry/postgres");
        assert_eq!(socket_dir_for(short), short);
        // The first 8 bytes of SHA-256 of the path, as `sha256sum` gives them: a command built
        // by another Rust release must find the running service's server there.
        let long = PathBuf::from(format!("/srv/{}/postgres", "d".repeat(90)));
        let dir = socket_dir_for(&long);
        assert_eq!(dir.parent(), Some(std::env::temp_dir().as_path()));
        assert_eq!(dir.file_name().unwrap(), "calry-hooks-982497f1edeb5c51");
    }

    #[test]
    fn a_socket_directory_is_made_private_and_one_of_ours_is_taken_as_it_is() {
        let base = scratch("own");
        let new = base.join("new");
        prepare_socket_dir(&new, None).unwrap();
        assert_eq!(mode(&new), 0o700);
        let left = base.join("left");
        fs::DirBuilder::new().mode(0o755).create(&left).unwrap();
        prepare_socket_dir(&left, None).unwrap();
        assert_eq!(mode(&left), 0o700);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_socket_directory_another_user_placed_is_refused_and_left_as_it_is() {
        let base = scratch("placed");
        // A link to a directory of ours: following it would make that directory 0700.
        let target = base.join("target");
        fs::DirBuilder::new().mode(0o755).create(&target).unwrap();
        let link = base.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = prepare_socket_dir(&link, None).unwrap_err().to_string();
        assert!(err.contains("another user may have made it"), "{err}");
        assert_eq!(mode(&target), 0o755);
        // A file where the directory should be.
        let file = base.join("file");
        fs::write(&file, b"").unwrap();
        assert!(prepare_socket_dir(&file, None).is_err());
        // A directory of ours that others may write in.
        let open = base.join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(prepare_socket_dir(&open, None).is_err());
        assert_eq!(mode(&open), 0o777);
        // A directory of another user (only root can make one to try).
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let theirs = base.join("theirs");
            fs::create_dir(&theirs).unwrap();
            fs::set_permissions(&theirs, fs::Permissions::from_mode(0o777)).unwrap();
            std::os::unix::fs::chown(&theirs, Some(4242), Some(4242)).unwrap();
            assert!(prepare_socket_dir(&theirs, None).is_err());
            assert_eq!(fs::metadata(&theirs).unwrap().uid(), 4242);
            assert_eq!(mode(&theirs), 0o777);
        }
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_data_directory_others_may_write_in_or_of_another_user_is_refused() {
        let base = scratch("data");
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
        only_its_owner_writes(&base).unwrap();
        for open in [0o757, 0o777] {
            fs::set_permissions(&base, fs::Permissions::from_mode(open)).unwrap();
            let err = only_its_owner_writes(&base).unwrap_err().to_string();
            assert!(err.contains("chmod go-w"), "{open:o}: {err}");
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // Its group may write in it when that is its owner's private group (root's own
            // group, here), not another.
            fs::set_permissions(&base, fs::Permissions::from_mode(0o775)).unwrap();
            only_its_owner_writes(&base).unwrap();
            std::os::unix::fs::chown(&base, None, Some(4242)).unwrap();
            let err = only_its_owner_writes(&base).unwrap_err().to_string();
            assert!(err.contains("users of its group"), "{err}");
            // Nor may it be another user's.
            fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
            std::os::unix::fs::chown(&base, Some(4242), Some(0)).unwrap();
            let err = only_its_owner_writes(&base).unwrap_err().to_string();
            assert!(err.contains("another user (uid 4242)"), "{err}");
        }
        fs::remove_dir_all(&base).unwrap();
    }

    /// The lock and the log are opened never through a link (one another user put there would
    /// have the service write over whatever it names) and are made readable by their owner only
    /// (anyone who can read the lock can take it, and keep the service from starting).
    #[test]
    fn the_services_own_files_are_its_alone_and_never_reached_through_a_link() {
        let base = scratch("files");
        let elsewhere = base.join("elsewhere");
        fs::write(&elsewhere, b"kept\n").unwrap();
        let link = base.join("postgres.log");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        assert!(open_own_file(&link, fs::OpenOptions::new().append(true)).is_err());
        assert_eq!(fs::read(&elsewhere).unwrap(), b"kept\n");
        let lock = base.join("postgres.owner");
        fs::write(&lock, b"").unwrap();
        fs::set_permissions(&lock, fs::Permissions::from_mode(0o644)).unwrap();
        open_own_file(&lock, fs::OpenOptions::new().read(true).write(true)).unwrap();
        assert_eq!(mode(&lock), 0o600);
        let new = base.join("new.log");
        open_own_file(&new, fs::OpenOptions::new().append(true)).unwrap();
        assert_eq!(mode(&new), 0o600);
        fs::remove_dir_all(&base).unwrap();
    }

    /// A server another user put behind the name of the socket's own directory in the temporary
    /// directory is not joined: the start is refused before any connection through it. (It was
    /// taken for the cluster "already running", and deliveries were stored in it.)
    #[tokio::test]
    async fn a_server_behind_a_socket_directory_another_user_made_is_not_joined() {
        let bin = binaries().expect("PostgreSQL's server binaries");
        let owner = unprivileged_owner().unwrap();
        let base = scratch("joined");
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
        let data = base.join("d".repeat(100));
        fs::create_dir(&data).unwrap();
        let socket_dir = socket_dir_for(&data.join("postgres"));
        assert!(!socket_dir.starts_with(&base));
        let _ = fs::remove_dir_all(&socket_dir);
        fs::create_dir(&socket_dir).unwrap();
        fs::set_permissions(&socket_dir, fs::Permissions::from_mode(0o777)).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&socket_dir, Some(4242), Some(4242)).unwrap();
        }
        let theirs = base.join("theirs");
        prepare_dir(&theirs, owner).unwrap();
        initdb(&bin, &theirs, owner).unwrap();
        let mut server = command(bin.join("postgres"), owner)
            .arg("-D")
            .arg(&theirs)
            .arg("-k")
            .arg(&socket_dir)
            .args(["-p", &PORT.to_string(), "-c", "listen_addresses="])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket_dir.join(SOCKET_FILE).exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let started = Cluster::start(&data, Role::Serve).await;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGINT) };
        server.wait().unwrap();
        let _ = fs::remove_dir_all(&socket_dir);
        fs::remove_dir_all(&base).unwrap();
        let err = started
            .expect_err("another user's server was joined")
            .to_string();
        assert!(err.contains("another user may have made it"), "{err}");
    }

    /// A relative directory on `PATH` is not searched, even when it holds both programs, nor one
    /// that anyone may write in.
    #[test]
    fn the_server_binaries_are_not_looked_for_in_relative_or_open_directories() {
        let base = scratch("path");
        let planted = base.join("planted");
        fs::create_dir(&planted).unwrap();
        for program in ["initdb", "postgres"] {
            fs::write(planted.join(program), b"#!/bin/sh\n").unwrap();
        }
        // The same directory, named from the working directory up.
        let cwd = std::env::current_dir().unwrap();
        let up: PathBuf = cwd.components().skip(1).map(|_| "..").collect();
        let relative = up.join(planted.strip_prefix("/").unwrap());
        assert!(has_both(&relative), "{}", relative.display());
        let absolute_then = std::env::join_paths([relative.clone(), planted.clone()]).unwrap();
        // Found by its absolute name, passed over by its relative one.
        assert_eq!(
            servers_on_path(&absolute_then).next(),
            Some(planted.clone())
        );
        let only_relative = std::env::join_paths([relative, PathBuf::from("")]).unwrap();
        assert_eq!(servers_on_path(&only_relative).next(), None);
        // Nor in one that anyone may write in, by its absolute name either.
        fs::set_permissions(&planted, fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(servers_on_path(&absolute_then).next(), None);
        fs::remove_dir_all(&base).unwrap();
    }

    /// What the log says of stopping a server: stopped when it was running and exited cleanly;
    /// when it failed while stopping (its shutdown checkpoint on a full disk), that, as an error;
    /// and, when it had already exited (stopped by another process), that, not "stopped".
    #[tokio::test]
    async fn a_server_that_had_already_exited_is_not_said_to_be_stopped_by_this_process() {
        #[derive(Clone, Default)]
        struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let dir = scratch("stop");
        let cluster = |program: &str, args: &[&str]| Cluster {
            child: Mutex::new(Some(
                Command::new(program)
                    .args(args)
                    .current_dir(&dir)
                    .stdin(Stdio::piped())
                    .spawn()
                    .unwrap(),
            )),
            socket_dir: dir.clone(),
            log_file: dir.join("postgres.log"),
            _owner: None,
            launch: None,
        };
        let logged = || String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();

        // A server that exits with `code` once stopped: 0 when it stopped cleanly, not 0 when its
        // shutdown failed (a checkpoint on a full disk). Stopped once it is ready for the signal.
        for code in [0, 1] {
            captured.0.lock().unwrap().clear();
            let ready = dir.join("ready");
            let _ = fs::remove_file(&ready);
            // `read` (a builtin: no process of its own) waits on a pipe no one writes to.
            let script = format!("trap 'exit {code}' TERM; touch ready; read line");
            let server = cluster("sh", &["-c", &script]);
            while !ready.exists() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            server.stop().await;
            let said = logged();
            if code == 0 {
                assert!(
                    said.contains("private PostgreSQL cluster stopped"),
                    "{said}"
                );
            } else {
                assert!(!said.contains("cluster stopped"), "{said}");
                assert!(
                    said.contains("ERROR") && said.contains("failed while stopping"),
                    "{said}"
                );
            }
        }

        captured.0.lock().unwrap().clear();
        let exited = cluster("true", &[]);
        let pid = exited.child.lock().unwrap().as_ref().unwrap().id();
        // Exited, not yet waited for: a zombie, as a server stopped by someone else is until
        // this process looks.
        while !fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap()
            .contains(") Z ")
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        exited.stop().await;
        let said = logged();
        assert!(!said.contains("cluster stopped"), "{said}");
        assert!(
            said.contains("WARN")
                && said.contains("stopped by another process")
                && said.contains("not started again, as the service is stopping"),
            "{said}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
