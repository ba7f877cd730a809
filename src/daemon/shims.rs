//! The daemon's side of the per-zone shims: starting one on a zone's first container,
//! re-adopting running ones after a daemon restart, forwarding their events, and stopping them
//! with their zone.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::shim::protocol::{
    ClientError, ContainerState, ShimClient, ShimEvent, ShimFailure, ShimRequest, ShimResponse,
};

/// How long a freshly started shim may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A shim step that failed.
#[derive(Debug, thiserror::Error)]
pub enum ShimCallError {
    #[error("start shim for zone id {zone}: {source}")]
    Spawn { zone: u32, source: std::io::Error },
    #[error("open shim log {}: {source}", path.display())]
    Log { path: PathBuf, source: std::io::Error },
    #[error("open cgroup file {}: {source}", path.display())]
    CgroupFile { path: PathBuf, source: std::io::Error },
    #[error("shim for zone id {zone} did not come up within {START_TIMEOUT:?}: {last}")]
    NotReady { zone: u32, last: String },
    #[error("shim of zone id {zone}: {source}")]
    Client { zone: u32, source: ClientError },
    #[error("{}", .0.message)]
    Failed(ShimFailure),
    #[error("shim of zone id {zone} answered {request} with {response}")]
    Unexpected { zone: u32, request: &'static str, response: String },
}

/// What the daemon does with a shim's events: `(zone numeric id, event)`.
pub type EventSink = Arc<dyn Fn(u32, ShimEvent) + Send + Sync>;

/// One zone's shim.
pub struct ShimHandle {
    zone: u32,
    client: Mutex<ShimClient>,
    /// Present when this daemon started the shim, so it can reap it.
    child: Mutex<Option<Child>>,
}

impl ShimHandle {
    /// Send one request; a shim-side failure becomes [`ShimCallError::Failed`].
    pub fn call(&self, request: &ShimRequest) -> Result<ShimResponse, ShimCallError> {
        let (response, _) = self.call_with_fds(request)?;
        Ok(response)
    }

    /// Send one request and keep the fds its reply carried.
    pub fn call_with_fds(
        &self,
        request: &ShimRequest,
    ) -> Result<(ShimResponse, Vec<OwnedFd>), ShimCallError> {
        let mut client = self.client.lock().unwrap_or_else(|e| e.into_inner());
        match client.call_with_fds(request) {
            Ok((ShimResponse::Error(failure), _)) => Err(ShimCallError::Failed(failure)),
            Ok(reply) => Ok(reply),
            Err(source) => Err(ShimCallError::Client { zone: self.zone, source }),
        }
    }

    /// Every container the shim knows.
    pub fn list(&self) -> Result<Vec<ContainerState>, ShimCallError> {
        match self.call(&ShimRequest::List)? {
            ShimResponse::List(states) => Ok(states),
            other => Err(ShimCallError::Unexpected {
                zone: self.zone,
                request: "List",
                response: format!("{other:?}"),
            }),
        }
    }
}

/// All shims of this daemon, by zone numeric id.
pub struct Shims {
    dir: PathBuf,
    executable: PathBuf,
    cgroup_procs: Vec<PathBuf>,
    sink: EventSink,
    running: Mutex<HashMap<u32, Arc<ShimHandle>>>,
}

impl Shims {
    /// `dir` (existing) holds sockets, logs and per-zone state of the shims; `executable` is
    /// this binary; `cgroup_procs` are the files of the shim cgroup each shim joins before it
    /// execs.
    pub fn new(
        dir: PathBuf,
        executable: PathBuf,
        cgroup_procs: Vec<PathBuf>,
        sink: EventSink,
    ) -> Self {
        Self { dir, executable, cgroup_procs, sink, running: Mutex::new(HashMap::new()) }
    }

    /// The executable the shims run: this binary.
    pub fn executable(&self) -> &std::path::Path {
        &self.executable
    }

    /// The `cgroup.procs` files of the daemon-owned cgroup the shims live in.
    pub fn cgroup_procs(&self) -> &[PathBuf] {
        &self.cgroup_procs
    }

    fn socket(&self, zone: u32) -> PathBuf {
        self.dir.join(format!("zone-{zone}.sock"))
    }

    /// The running shim of `zone`, if there is one.
    pub fn get(&self, zone: u32) -> Option<Arc<ShimHandle>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).get(&zone).cloned()
    }

    /// The zone's shim, started if it is not running.
    pub fn get_or_start(&self, zone: u32) -> Result<Arc<ShimHandle>, ShimCallError> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(handle) = running.get(&zone) {
            return Ok(Arc::clone(handle));
        }
        let child = self.spawn(zone)?;
        let handle = match self.connect(zone, Some(child)) {
            Ok(handle) => handle,
            Err((error, child)) => {
                if let Some(mut child) = child {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(error);
            }
        };
        running.insert(zone, Arc::clone(&handle));
        Ok(handle)
    }

    /// Connect to a shim left running by an earlier daemon; `None` when there is none.
    pub fn adopt(&self, zone: u32) -> Option<Arc<ShimHandle>> {
        let socket = self.socket(zone);
        if !socket.exists() {
            return None;
        }
        match self.connect(zone, None) {
            Ok(handle) => {
                let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
                running.insert(zone, Arc::clone(&handle));
                Some(handle)
            }
            Err((error, _)) => {
                tracing::warn!(%error, zone, "shim socket present but the shim is gone");
                let _ = std::fs::remove_file(&socket);
                None
            }
        }
    }

    fn spawn(&self, zone: u32) -> Result<Child, ShimCallError> {
        let log_path = self.dir.join(format!("zone-{zone}.log"));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| ShimCallError::Log { path: log_path.clone(), source })?;
        let log_err = log
            .try_clone()
            .map_err(|source| ShimCallError::Log { path: log_path.clone(), source })?;
        // Opened before the fork: the child only writes to them.
        let procs: Vec<File> = self
            .cgroup_procs
            .iter()
            .map(|path| {
                File::options()
                    .write(true)
                    .open(path)
                    .map_err(|source| ShimCallError::CgroupFile { path: path.clone(), source })
            })
            .collect::<Result<_, _>>()?;
        let state_dir = self.dir.join(format!("zone-{zone}"));
        let mut command = Command::new(&self.executable);
        command
            .arg("shim")
            .arg("--socket")
            .arg(self.socket(zone))
            .arg("--zone")
            .arg(zone.to_string())
            .arg("--state-dir")
            .arg(&state_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // SAFETY: between fork and exec the closure makes only async-signal-safe syscalls
        // (setsid, write) on fds opened before the fork, and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                // Its own session: the shim outlives the daemon and its terminal.
                rustix::process::setsid()?;
                for file in &procs {
                    rustix::io::write(file.as_fd(), b"0")?;
                }
                Ok(())
            });
        }
        command.spawn().map_err(|source| ShimCallError::Spawn { zone, source })
    }

    fn connect(
        &self,
        zone: u32,
        mut child: Option<Child>,
    ) -> Result<Arc<ShimHandle>, (ShimCallError, Option<Child>)> {
        let socket = self.socket(zone);
        let deadline = Instant::now() + START_TIMEOUT;
        let (client, events) = loop {
            let attempt = ShimClient::connect(&socket)
                .and_then(|client| ShimClient::connect(&socket).map(|events| (client, events)));
            match attempt {
                Ok(pair) => break pair,
                Err(error) => {
                    let exited = child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                    if child.is_none() || exited.is_some() || Instant::now() > deadline {
                        let last = match exited {
                            Some(status) => format!("shim exited ({status}); {error}"),
                            None => error.to_string(),
                        };
                        return Err((ShimCallError::NotReady { zone, last }, child));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        };
        let handle =
            Arc::new(ShimHandle { zone, client: Mutex::new(client), child: Mutex::new(child) });
        self.forward_events(zone, events);
        Ok(handle)
    }

    /// A thread per shim turns its event stream into calls of the daemon's sink.
    fn forward_events(&self, zone: u32, mut events: ShimClient) {
        let sink = Arc::clone(&self.sink);
        let spawned =
            std::thread::Builder::new().name(format!("shim-events-{zone}")).spawn(move || {
                loop {
                    match events.next_event() {
                        Ok(event) => sink(zone, event),
                        Err(error) => {
                            tracing::debug!(%error, zone, "shim event stream ended");
                            return;
                        }
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, zone, "cannot start the shim event thread");
        }
    }

    /// Stop a zone's shim (it kills what still runs) and reap it.
    pub fn stop(&self, zone: u32) {
        let handle = self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&zone);
        let Some(handle) = handle else { return };
        if let Err(error) = handle.call(&ShimRequest::Shutdown) {
            tracing::debug!(%error, zone, "shim shutdown request");
        }
        let child = handle.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket(zone));
    }
}
