//! The daemon role: start-up (lock, store, recovery), the request handlers, and the accept loop
//! on the local socket.

mod containers;
mod enforcement;
mod error;
mod events;
mod exec;
mod handlers;
mod images;
mod network;
mod peer;
mod shims;
mod verify;
mod zones;

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use argh::FromArgs;
use async_compat::Compat;
use futures::StreamExt;
use tarpc::server::{BaseChannel, Channel};

use crate::rpc::Rauha;
use smol::net::unix::{UnixListener, UnixStream};
use uuid::Uuid;

use crate::backend::linux::LinuxBackend;
use crate::backend::{IsolationBackend, ZoneKernelInfo};
use crate::container::Container;
use crate::image::{ImageService, RegistryConfig};
use crate::shim::protocol::Layer;
use crate::store::Store;
use crate::zone::{Zone, ZoneRegistry, ZoneState};
pub use events::Event;
pub use zones::format_timestamp;

/// Default state dir (`--root`, `RAUHA_ROOT`).
pub const DEFAULT_ROOT: &str = "/var/lib/rauha";
/// Default runtime dir (`--run-dir`, `RAUHA_RUN`).
pub const DEFAULT_RUN: &str = "/run/rauha";

/// rauhad: the Rauha daemon. Serves the API on a Unix socket; the only writer of state.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "daemon")]
pub struct DaemonArgs {
    /// state dir holding meta.redb (default $RAUHA_ROOT or /var/lib/rauha)
    #[argh(option)]
    pub root: Option<PathBuf>,
    /// runtime dir for sockets and pid files (default $RAUHA_RUN or /run/rauha)
    #[argh(option)]
    pub run_dir: Option<PathBuf>,
    /// API socket path (default $RAUHA_SOCKET or RUN_DIR/rauhad.sock)
    #[argh(option)]
    pub socket: Option<PathBuf>,
    /// group (name or gid) whose members may use the socket besides root; the socket is
    /// chowned to it and made mode 0660
    #[argh(option)]
    pub group: Option<String>,
    /// cgroup path, relative to each hierarchy's root, under which zone cgroups live
    /// (default $RAUHA_CGROUP_PARENT or "rauha")
    #[argh(option)]
    pub cgroup_parent: Option<String>,
    /// bridge that bridged zones attach to (default rauha0)
    #[argh(option)]
    pub bridge: Option<String>,
    /// subnet zone addresses come from (default 10.89.0.0/16)
    #[argh(option)]
    pub subnet: Option<String>,
    /// the bridge's address in the subnet, the zones' gateway (default: the subnet's first)
    #[argh(option)]
    pub gateway: Option<std::net::Ipv4Addr>,
    /// registry configuration (mirrors, insecure registries, credentials)
    /// (default $RAUHA_REGISTRIES or /etc/rauha/registries.toml; a missing file means defaults)
    #[argh(option)]
    pub registries: Option<PathBuf>,
    /// serve the gRPC API (API-GRPC.md) on ADDR too: IP:PORT on a loopback address
    /// ([::1]:9876, 127.0.0.1:9876) or unix:PATH; off when not given
    #[cfg(feature = "grpc")]
    #[argh(option)]
    pub grpc_listen: Option<String>,
    /// file holding a token every gRPC call must present as `authorization: Bearer TOKEN`
    #[cfg(feature = "grpc")]
    #[argh(option)]
    pub grpc_token_file: Option<PathBuf>,
    /// allow --grpc-listen on a non-loopback address (plaintext: anyone who can reach it can
    /// drive the daemon)
    #[cfg(feature = "grpc")]
    #[argh(switch)]
    pub grpc_allow_remote: bool,
    /// TEST ONLY, never for production: switch off one always-on enforcement layer (seccomp,
    /// landlock or caps) for every container and exec this daemon starts, so tests can show the
    /// remaining layers still hold each boundary; repeatable; logged as an error at start
    #[argh(option)]
    pub unsafe_disable_layer: Vec<String>,
    /// keep every zone's BPF enforcement attached while the daemon is down: links and maps are
    /// pinned under /sys/fs/bpf/rauha/ (bpffs is mounted if needed) and adopted at the next
    /// start (or $RAUHA_PIN=1); without it, pins an earlier --pin run left are removed at start
    #[argh(switch)]
    pub pin: bool,
}

/// Start-up failures; each stops the daemon with a message naming the step.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("load zones: {0}")]
    Record(#[from] crate::zone::ZoneRecordError),
    #[error("isolation backend: {0}")]
    Backend(#[from] crate::backend::BackendError),
    #[error("images: {0}")]
    Image(#[from] crate::image::ImageError),
    #[error("create {}: {source}", path.display())]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("start-up reconciliation: {0}")]
    Reconcile(String),
    #[error("create runtime dir {}: {source}", path.display())]
    RunDir { path: PathBuf, source: std::io::Error },
    #[error("another daemon is serving on {}", path.display())]
    SocketInUse { path: PathBuf },
    #[error("remove stale socket {}: {source}", path.display())]
    StaleSocket { path: PathBuf, source: std::io::Error },
    #[error("bind {}: {source}", path.display())]
    Bind { path: PathBuf, source: std::io::Error },
    #[error("set owner and mode of {}: {source}", path.display())]
    SocketMode { path: PathBuf, source: std::io::Error },
    #[error("install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("--pin: {0}")]
    Pin(crate::enforce::bpf::BpfError),
    #[error(transparent)]
    InitLayer(#[from] crate::container::init_layer::InitLayerError),
    #[cfg(feature = "grpc")]
    #[error(transparent)]
    Grpc(#[from] crate::grpc::GrpcError),
}

/// Resolved daemon settings.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub root: PathBuf,
    pub run_dir: PathBuf,
    pub socket: PathBuf,
    pub group: Option<u32>,
    pub cgroup_parent: String,
    pub registries: PathBuf,
    pub net: crate::net::NetConfig,
    /// The gRPC facade's settings, when `--grpc-listen` is given.
    #[cfg(feature = "grpc")]
    pub grpc: Option<crate::grpc::GrpcConfig>,
    /// Enforcement layers switched off (`--unsafe-disable-layer`, test only; empty by default).
    pub disabled_layers: Vec<Layer>,
    /// Pin the BPF links and maps so enforcement outlives the daemon (`--pin`, `RAUHA_PIN`).
    pub pin: bool,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

impl DaemonConfig {
    /// Flags first, then environment, then defaults.
    pub fn resolve(args: DaemonArgs) -> Result<Self, StartError> {
        let root = args.root.or_else(|| env_path("RAUHA_ROOT")).unwrap_or(DEFAULT_ROOT.into());
        let run_dir = args.run_dir.or_else(|| env_path("RAUHA_RUN")).unwrap_or(DEFAULT_RUN.into());
        let socket =
            args.socket.or_else(|| env_path("RAUHA_SOCKET")).unwrap_or(run_dir.join("rauhad.sock"));
        let group = args
            .group
            .map(|spec| peer::resolve_group(&spec, Path::new("/etc/group")))
            .transpose()
            .map_err(StartError::Config)?;
        let cgroup_parent = args
            .cgroup_parent
            .or_else(|| std::env::var("RAUHA_CGROUP_PARENT").ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| "rauha".to_owned());
        let parent = Path::new(&cgroup_parent);
        if parent.is_absolute()
            || parent.components().any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(StartError::Config(format!(
                "--cgroup-parent: {cgroup_parent:?} must be a relative path without . or .."
            )));
        }
        let registries = args
            .registries
            .or_else(|| env_path("RAUHA_REGISTRIES"))
            .unwrap_or_else(|| "/etc/rauha/registries.toml".into());
        let mut net = crate::net::NetConfig::default();
        if let Some(bridge) = args.bridge {
            net.bridge = bridge;
        }
        if let Some(subnet) = args.subnet {
            net.subnet =
                subnet.parse().map_err(|e| StartError::Config(format!("--subnet: {e}")))?;
            net.gateway = std::net::Ipv4Addr::from(u32::from(net.subnet.network()) + 1);
        }
        if let Some(gateway) = args.gateway {
            net.gateway = gateway;
        }
        crate::net::ipam::Ipam::new(&net)
            .map_err(|e| StartError::Config(format!("--subnet/--gateway: {e}")))?;
        let mut disabled_layers = Vec::new();
        for name in &args.unsafe_disable_layer {
            let layer = Layer::from_name(name).ok_or_else(|| {
                StartError::Config(format!(
                    "--unsafe-disable-layer: unknown layer {name:?} (expected seccomp, landlock or caps)"
                ))
            })?;
            if !disabled_layers.contains(&layer) {
                disabled_layers.push(layer);
            }
        }
        let pin = args.pin
            || match std::env::var("RAUHA_PIN").ok().as_deref() {
                None | Some("" | "0" | "false") => false,
                Some("1" | "true") => true,
                Some(other) => {
                    return Err(StartError::Config(format!(
                        "RAUHA_PIN: {other:?} is not one of 1, true, 0, false"
                    )));
                }
            };
        #[cfg(feature = "grpc")]
        let grpc = match args.grpc_listen {
            Some(listen) => Some(crate::grpc::GrpcConfig::resolve(
                &listen,
                args.grpc_token_file.as_deref(),
                args.grpc_allow_remote,
                group,
            )?),
            None if args.grpc_token_file.is_some() || args.grpc_allow_remote => {
                return Err(StartError::Config(
                    "--grpc-token-file and --grpc-allow-remote need --grpc-listen".to_owned(),
                ));
            }
            None => None,
        };
        Ok(Self {
            root,
            run_dir,
            socket,
            group,
            cgroup_parent,
            registries,
            net,
            disabled_layers,
            pin,
            #[cfg(feature = "grpc")]
            grpc,
        })
    }
}

/// The daemon's state, shared by every request handler.
pub struct Daemon {
    config: DaemonConfig,
    store: Store,
    backend: Box<dyn IsolationBackend>,
    images: ImageService,
    shims: shims::Shims,
    /// Held across each zone mutation's kernel and store work, which serialises them.
    zones: Mutex<ZoneRegistry>,
    kernel: Mutex<HashMap<Uuid, ZoneKernelInfo>>,
    cpu_samples: Mutex<HashMap<Uuid, (Instant, u64)>>,
    containers: Mutex<BTreeMap<Uuid, Container>>,
    /// Signalled on every container record change (exit events wake `wait` and `stop`).
    container_changed: Condvar,
    /// Last records of auto-removed containers, with when they were removed, for waiters that
    /// arrive after the removal; forgotten after a while, or they would pile up.
    removed: Mutex<HashMap<Uuid, (Instant, Container)>>,
    /// File descriptors parked for a client's claim on the fd channel.
    tickets: Mutex<HashMap<u128, (Instant, Vec<OwnedFd>)>>,
    events: events::EventBus,
    /// Exit codes of exec sessions by exec id (`None` while running), with when they changed.
    exits: Mutex<HashMap<String, (Instant, Option<i32>)>>,
    exec_done: Condvar,
    /// The eBPF layers: cgroup programs per zone, the LSM layer, deny events.
    bpf: enforcement::BpfEnforcement,
    /// The top-most lower layer of every container rootfs: its mount points.
    init_layer: PathBuf,
}

impl Daemon {
    /// Lock the state dir, load every record, finish interrupted deletions, make the kernel
    /// match the store and re-adopt running shims.
    pub fn start(config: DaemonConfig) -> Result<Arc<Self>, StartError> {
        let store = Store::open(&config.root)?;
        let backend =
            LinuxBackend::new(&config.cgroup_parent, &config.run_dir, config.net.clone())?;
        let shim_procs = backend.shim_procs_files()?;
        let registries = RegistryConfig::load(&config.registries)?;
        let images = ImageService::open(&config.root.join("images"), store.database(), registries)?;
        let zones = store
            .load_zones()?
            .into_iter()
            .map(Zone::from_record)
            .collect::<Result<Vec<_>, _>>()?;
        let containers = store.load_containers()?;
        let init_layer = crate::container::init_layer::ensure(
            &config.root.join(crate::container::init_layer::DIR_NAME),
        )?;
        let shim_dir = config.run_dir.join("shims");
        std::fs::create_dir_all(&shim_dir)
            .map_err(|source| StartError::StateDir { path: shim_dir.clone(), source })?;
        // Zone nodes sit one level below the cgroup parent in the cgroup2 hierarchy.
        let zone_level = config.cgroup_parent.split('/').filter(|c| !c.is_empty()).count() + 1;
        let pins = crate::enforce::bpf_pin::PinDir::for_state_dir(&config.root);
        let bpf = enforcement::BpfEnforcement::start(zone_level as u32, pins, config.pin)
            .map_err(StartError::Pin)?;
        let executable = std::env::current_exe()
            .map_err(|source| StartError::StateDir { path: "/proc/self/exe".into(), source })?;
        let daemon = Arc::new_cyclic(|weak: &std::sync::Weak<Daemon>| {
            let weak = weak.clone();
            let sink: shims::EventSink = Arc::new(move |zone, event| {
                if let Some(daemon) = weak.upgrade() {
                    daemon.on_shim_event(zone, event);
                }
            });
            Self {
                shims: shims::Shims::new(shim_dir, executable, shim_procs, sink),
                config,
                store,
                backend: Box::new(backend),
                images,
                zones: Mutex::new(ZoneRegistry::from_zones(zones.iter().cloned())),
                kernel: Mutex::new(HashMap::new()),
                cpu_samples: Mutex::new(HashMap::new()),
                containers: Mutex::new(containers.into_iter().map(|c| (c.id, c)).collect()),
                container_changed: Condvar::new(),
                removed: Mutex::new(HashMap::new()),
                tickets: Mutex::new(HashMap::new()),
                events: events::EventBus::default(),
                exits: Mutex::new(HashMap::new()),
                exec_done: Condvar::new(),
                bpf,
                init_layer,
            }
        });
        daemon.recover(zones)?;
        daemon.recover_containers();
        daemon.remove_stale_probes();
        daemon.finish_bpf_start()?;
        // After recovery, which names the zones: a pinned ring may hold denies from while no
        // daemon ran, and they are reported under their zone's name like any other.
        let weak = Arc::downgrade(&daemon);
        daemon.bpf.forward_events(move |zone, event| {
            if let Some(daemon) = weak.upgrade() {
                let event_type = format!("deny.{}", event.hook.event_name());
                daemon.events.publish(zone, &event_type, enforcement::deny_message(event));
            }
        });
        Ok(daemon)
    }

    fn registry(&self) -> MutexGuard<'_, ZoneRegistry> {
        self.zones.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn containers(&self) -> MutexGuard<'_, BTreeMap<Uuid, Container>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn recover(&self, zones: Vec<Zone>) -> Result<(), StartError> {
        let (deleting, live): (Vec<Zone>, Vec<Zone>) =
            zones.into_iter().partition(|zone| zone.state == ZoneState::Deleting);
        for zone in &deleting {
            self.finish_deletion(zone).map_err(|e| StartError::Reconcile(e.to_string()))?;
            self.registry().remove(&zone.name);
            tracing::info!(zone = %zone.name, "finished a deletion interrupted by the last daemon");
        }
        let with_network: Vec<(&Zone, crate::backend::ZoneNetwork)> = {
            let registry = self.registry();
            live.iter().map(|zone| (zone, self.zone_network(&registry, zone))).collect()
        };
        let report = self
            .backend
            .reconcile(&with_network)
            .map_err(|e| StartError::Reconcile(e.to_string()))?;
        for name in &report.recreated {
            tracing::warn!(zone = %name, "re-created the zone's missing kernel object");
        }
        for orphan in &report.removed_orphans {
            tracing::warn!(object = %orphan, "removed a kernel object that no zone owns");
        }
        let mut kernel = self.kernel.lock().unwrap_or_else(|e| e.into_inner());
        for zone in &live {
            let info = self
                .backend
                .zone_info(zone)
                .map_err(|e| StartError::Reconcile(format!("zone {:?}: {e}", zone.name)))?;
            let rules = enforcement::ZoneRules::from_policy(&zone.policy)
                .map_err(|e| StartError::Reconcile(format!("zone {:?}: {e}", zone.name)))?;
            self.bpf.attach_zone(zone, Path::new(&info.cgroup_path), &rules).map_err(|e| {
                StartError::Reconcile(format!("zone {:?}: re-attach bpf programs: {e}", zone.name))
            })?;
            kernel.insert(zone.id, info);
        }
        drop(kernel);
        self.bpf
            .sync_peers(self.registry().iter())
            .map_err(|e| StartError::Reconcile(format!("bpf peer-address maps: {e}")))?;
        self.bpf
            .sync_comms(self.registry().iter())
            .map_err(|e| StartError::Reconcile(format!("lsm allowed-comms map: {e}")))?;
        tracing::info!(
            zones = live.len(),
            recreated = report.recreated.len(),
            orphans_removed = report.removed_orphans.len(),
            bpf_attached = self.bpf.attached_zones(),
            bpf_adopted = self.bpf.adopted_zones(),
            "reconciled kernel state with the store"
        );
        Ok(())
    }

    /// The BPF side's last start-up step, once zones and containers are recovered.
    fn finish_bpf_start(&self) -> Result<(), StartError> {
        let registry = self.registry();
        let live: Vec<(&Zone, PathBuf)> = registry
            .iter()
            .map(|zone| (zone, PathBuf::from(self.kernel_info(zone.id).cgroup_path)))
            .collect();
        self.bpf.finish_start(&live).map_err(|e| StartError::Reconcile(format!("bpf pins: {e}")))
    }
}

/// How long the last word of something finished (an exec's exit code, an auto-removed
/// container's record) answers a waiter that comes late, before it is forgotten.
const FINISHED_RETENTION: Duration = Duration::from_secs(600);

/// Entry point of the daemon role.
pub fn run(args: DaemonArgs) -> ExitCode {
    limit_malloc_arenas();
    init_logging();
    let result = DaemonConfig::resolve(args).and_then(|config| smol::block_on(serve(config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("rauhad: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Arenas glibc may create when `MALLOC_ARENA_MAX` does not say otherwise.
const MALLOC_ARENAS: i32 = 2;

/// Caps glibc's malloc arenas. By default it grows one per concurrently allocating thread up to
/// 8 × cores; the daemon's short-lived threads (blocking pools, BPF loaders, RPC workers) would
/// each leave an arena holding ~130 KiB of freed memory, which showed as RSS creeping up for
/// the first few thousand zone create/delete cycles although the live heap stayed flat. The
/// daemon's allocation rate is far too low for arena contention to matter.
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX takes any positive count.
    if unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS) } != 1 {
        eprintln!("rauhad: could not limit malloc arenas (mallopt M_ARENA_MAX); continuing");
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person watching; logs captured to files stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

async fn serve(config: DaemonConfig) -> Result<(), StartError> {
    for layer in &config.disabled_layers {
        tracing::error!(
            %layer,
            "UNSAFE: enforcement layer {layer} is DISABLED for every container (test-only \
             --unsafe-disable-layer); zones are NOT fully isolated"
        );
    }
    let daemon = smol::unblock({
        let config = config.clone();
        move || Daemon::start(config)
    })
    .await?;
    // Bound before the API socket, so a client that sees the daemon ready finds gRPC up too.
    #[cfg(feature = "grpc")]
    let _grpc = match config.grpc.clone() {
        Some(grpc) => Some(crate::grpc::start(Arc::clone(&daemon), grpc)?),
        None => None,
    };
    let listener = bind_socket(&config).await?;
    tracing::info!(
        socket = %config.socket.display(),
        root = %config.root.display(),
        cgroups = %daemon.backend.describe(),
        "rauhad ready"
    );

    let mut signals =
        async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int])
            .map_err(StartError::Signals)?;
    let server = handlers::Server::new(Arc::clone(&daemon));
    loop {
        let next = futures::future::select(Box::pin(listener.accept()), signals.next()).await;
        match next {
            futures::future::Either::Left((Ok((stream, _)), _)) => {
                accept(stream, config.group, server.clone(), Arc::clone(&daemon))
            }
            futures::future::Either::Left((Err(error), _)) => {
                tracing::warn!(%error, "accept failed");
            }
            futures::future::Either::Right((signal, _)) => {
                tracing::info!(?signal, "shutting down");
                break;
            }
        }
    }
    if let Err(error) = std::fs::remove_file(&config.socket) {
        tracing::warn!(%error, socket = %config.socket.display(), "remove socket");
    }
    daemon.bpf.log_shutdown();
    Ok(())
}

fn accept(stream: UnixStream, group: Option<u32>, server: handlers::Server, daemon: Arc<Daemon>) {
    let verdict = peer::admit(&stream, group);
    if let crate::rpc::Handshake::Refused(reason) = &verdict {
        tracing::warn!(%reason, "refused a client");
    }
    smol::spawn(Compat::new(async move {
        match crate::rpc::admit(stream, verdict).await {
            Some(crate::rpc::Admitted::Rpc(transport)) => {
                BaseChannel::with_defaults(*transport)
                    .execute(server.serve())
                    .for_each(|response| async move {
                        smol::spawn(Compat::new(response)).detach();
                    })
                    .await;
            }
            Some(crate::rpc::Admitted::Fds(stream)) => {
                let claimed = smol::unblock(move || {
                    crate::rpc::fds::serve_claim(stream, |ticket| daemon.claim_fds(ticket))
                })
                .await;
                if let Err(error) = claimed {
                    tracing::debug!(%error, "fd claim");
                }
            }
            None => {}
        }
    }))
    .detach();
}

/// Bind the API socket, replacing a stale one but never a live daemon's, and restrict it to
/// root and the configured group.
async fn bind_socket(config: &DaemonConfig) -> Result<UnixListener, StartError> {
    let path = &config.socket;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|source| StartError::RunDir { path: dir.to_owned(), source })?;
    }
    std::fs::create_dir_all(&config.run_dir)
        .map_err(|source| StartError::RunDir { path: config.run_dir.clone(), source })?;
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(StartError::SocketInUse { path: path.clone() });
        }
        std::fs::remove_file(path)
            .map_err(|source| StartError::StaleSocket { path: path.clone(), source })?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|source| StartError::Bind { path: path.clone(), source })?;
    let mode_error = |source| StartError::SocketMode { path: path.clone(), source };
    if let Some(gid) = config.group {
        std::os::unix::fs::chown(path, Some(0), Some(gid)).map_err(mode_error)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(mode_error)?;
    Ok(listener)
}
