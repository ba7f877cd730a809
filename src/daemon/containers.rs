//! Container operations. The daemon keeps each container's record; the zone's shim owns the
//! process. State changes to `Stopped` only from the shim's exit event (or its report after a
//! daemon restart), never by polling.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;
use uuid::Uuid;

use super::Daemon;
use super::error::RequestError;
use super::shims::ShimCallError;
use crate::container::spec::{self, Overrides, ShimInputs, SpecInputs};
use crate::container::{self, Container, ContainerState, ExitInfo};
use crate::image::ImageError;
use crate::rpc::{ContainerCreateRequest, ContainerInfo, Ticket};
use crate::shim::protocol::{
    ContainerStatus, ExitStatus, FailureKind, LogSpec, RootfsSpec, ShimEvent, ShimRequest,
    ShimResponse,
};
use crate::zone::{Zone, ZoneState};

/// Size at which a container's log rotates, and how many files are kept.
const LOG_MAX_SIZE: u64 = 16 << 20;
const LOG_MAX_FILES: u32 = 4;
/// How long `stop` waits after SIGKILL before it reports failure.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// Default grace period between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: u32 = 10;
/// How long parked fds wait for their client.
const TICKET_LIFETIME: Duration = Duration::from_secs(30);

fn format_time(at: Timestamp) -> String {
    super::format_timestamp(at)
}

fn timestamp(at: SystemTime) -> Timestamp {
    Timestamp::try_from(at).unwrap_or_else(|_| Timestamp::now())
}

fn exit_info(status: ExitStatus, oom_killed: bool, finished_at: SystemTime) -> ExitInfo {
    ExitInfo {
        code: status.shell_code(),
        signal: match status {
            ExitStatus::Signaled(signal) => Some(signal),
            ExitStatus::Code(_) => None,
        },
        oom_killed,
        finished_at: timestamp(finished_at),
    }
}

impl Daemon {
    pub(super) fn container_dir(&self, id: Uuid) -> PathBuf {
        self.config.root.join("containers").join(id.to_string())
    }

    fn log_path(&self, id: Uuid) -> PathBuf {
        self.container_dir(id).join("container.log")
    }

    /// Client view of a container.
    pub(super) fn container_info(&self, container: &Container) -> ContainerInfo {
        let zone_name = self
            .registry()
            .get_by_id(container.zone_id)
            .map(|zone| zone.name.clone())
            .unwrap_or_default();
        let exit = container.exit.as_ref();
        ContainerInfo {
            id: container.id.to_string(),
            name: container.name.clone(),
            zone_id: container.zone_id.to_string(),
            zone_name,
            image: container.image.clone(),
            image_digest: container.image_digest.clone(),
            command: container.args.clone(),
            state: container.state.as_str().to_owned(),
            pid: if container.state == ContainerState::Running { container.pid } else { 0 },
            created_at: format_time(container.created_at),
            started_at: container.started_at.map(format_time).unwrap_or_default(),
            finished_at: exit.map(|e| format_time(e.finished_at)).unwrap_or_default(),
            exit_code: exit.map(|e| e.code),
            exit_signal: exit.and_then(|e| e.signal),
            oom_killed: exit.is_some_and(|e| e.oom_killed),
            auto_remove: container.auto_remove,
            ports: container
                .ports
                .iter()
                .map(|p| format!("{}->{}/{}", p.host_port, p.container_port, p.proto.as_str()))
                .collect(),
            tty: container.tty,
            interactive: container.interactive,
        }
    }

    /// Find a container by full id, unique id prefix, or name.
    pub(super) fn find_container(&self, reference: &str) -> Result<Container, RequestError> {
        let containers = self.containers();
        if let Ok(id) = Uuid::parse_str(reference) {
            return containers
                .get(&id)
                .cloned()
                .ok_or_else(|| RequestError::ContainerNotFound(reference.to_owned()));
        }
        if let Some(by_name) = containers.values().find(|c| c.name == reference) {
            return Ok(by_name.clone());
        }
        let prefix = reference.replace('-', "");
        let mut matches = containers
            .values()
            .filter(|c| !prefix.is_empty() && c.id.simple().to_string().starts_with(&prefix));
        match (matches.next(), matches.next()) {
            (Some(found), None) => Ok(found.clone()),
            (Some(_), Some(_)) => Err(RequestError::InvalidArgument(format!(
                "container id prefix {reference:?} is ambiguous"
            ))),
            (None, _) => Err(RequestError::ContainerNotFound(reference.to_owned())),
        }
    }

    /// Persist and publish a container's new record, waking waiters.
    fn save_container(&self, container: Container) -> Result<(), RequestError> {
        self.store.put_container(&container)?;
        self.containers().insert(container.id, container);
        self.container_changed.notify_all();
        Ok(())
    }

    /// Change a container's record in place, under the container lock from read to write, so
    /// that concurrent changes (a start's reply and the exit event of a command that ends at
    /// once) never overwrite each other's fields. None if the container is gone.
    fn update_container(
        &self,
        id: Uuid,
        change: impl FnOnce(&mut Container),
    ) -> Result<Option<Container>, RequestError> {
        let mut containers = self.containers();
        let Some(mut next) = containers.get(&id).cloned() else { return Ok(None) };
        change(&mut next);
        self.store.put_container(&next)?;
        containers.insert(id, next.clone());
        drop(containers);
        self.container_changed.notify_all();
        Ok(Some(next))
    }

    /// Containers of one zone.
    pub(super) fn zone_containers(&self, zone_id: Uuid) -> Vec<Container> {
        self.containers().values().filter(|c| c.zone_id == zone_id).cloned().collect()
    }

    pub fn create_container(
        &self,
        request: ContainerCreateRequest,
    ) -> Result<ContainerInfo, RequestError> {
        let invalid = RequestError::InvalidArgument;
        if !request.name.is_empty() {
            container::validate_name(&request.name)
                .map_err(|e| invalid(format!("invalid container name {:?}: {e}", request.name)))?;
        }
        if request.image.is_empty() {
            return Err(invalid("image: a reference is required".to_owned()));
        }
        super::zones::check_zone_name(&request.zone)?;
        let zone = self.registry().get(&request.zone)?.clone();
        if zone.state != ZoneState::Ready {
            return Err(RequestError::ZoneDeleting { zone: zone.name });
        }
        let record = self.images.inspect(&request.image).map_err(image_error(&request.image))?;
        let (layers, image_config) =
            self.images.rootfs_layers(&record.digest).map_err(image_error(&request.image))?;

        let ports = request
            .ports
            .iter()
            .map(|text| super::network::parse_port(text).map_err(invalid))
            .collect::<Result<Vec<_>, _>>()?;
        if !ports.is_empty() && zone.address.is_none() {
            return Err(invalid(format!(
                "publish: zone {:?} is not bridged (network.mode = \"bridged\" gives it an address)",
                zone.name
            )));
        }
        let id = Uuid::new_v4();
        let name = if request.name.is_empty() { container::default_name(id) } else { request.name };
        {
            let containers = self.containers();
            if containers.values().any(|c| c.name == name) {
                return Err(RequestError::ContainerExists(name));
            }
            for port in &ports {
                let taken = containers.values().find(|c| {
                    c.ports.iter().any(|p| p.host_port == port.host_port && p.proto == port.proto)
                });
                if let Some(holder) = taken {
                    return Err(RequestError::ContainerState {
                        container: holder.name.clone(),
                        state: "publishing that host port",
                        action: "publish it again",
                    });
                }
            }
        }
        let user_spec = if request.user.is_empty() { &image_config.user } else { &request.user };
        let user =
            container::resolve_user(user_spec, &layers).map_err(|e| invalid(e.to_string()))?;
        let overrides = Overrides {
            command: request.command,
            env: request.env,
            working_dir: (!request.working_dir.is_empty()).then_some(request.working_dir),
            tty: request.tty,
        };
        let args = spec::resolve_args(&image_config, &overrides.command)
            .map_err(|e| invalid(e.to_string()))?;
        let env =
            spec::resolve_env(&image_config, &overrides.env, &name, &user.home, overrides.tty)
                .map_err(|e| invalid(e.to_string()))?;
        let cwd = overrides
            .working_dir
            .clone()
            .or_else(|| Some(image_config.working_dir.clone()).filter(|w| !w.is_empty()))
            .unwrap_or_else(|| "/".to_owned());

        let dir = self.container_dir(id);
        let created = CreatedParts { dir: dir.clone(), cgroup: None, in_shim: None };
        let stdio = Stdio {
            tty: request.tty,
            interactive: request.interactive,
            stdin_once: request.interactive && request.stdin_once,
        };
        let result = self.create_container_parts(
            &zone, id, &name, &layers, args, env, cwd, &user, stdio, created,
        );
        let (created, pid, args) = result?;
        let container = Container {
            id,
            name,
            zone_id: zone.id,
            image: record.tags.first().cloned().unwrap_or_else(|| request.image.clone()),
            image_digest: record.digest,
            args,
            state: ContainerState::Created,
            pid,
            created_at: Timestamp::now(),
            started_at: None,
            exit: None,
            auto_remove: request.auto_remove,
            ports,
            tty: request.tty,
            interactive: request.interactive,
        };
        if let Err(error) = self.save_container(container.clone()) {
            self.roll_back_container(&zone, id, created);
            return Err(error);
        }
        if !container.ports.is_empty()
            && let Err(error) = self.refresh_zone_network(&zone.name)
        {
            let _ = self.remove_container(&container);
            return Err(error);
        }
        tracing::info!(container = %container.name, %id, zone = %zone.name, "container created");
        self.events.publish(
            &zone.name,
            "container.created",
            format!("container {} ({id})", container.name),
        );
        Ok(self.container_info(&container))
    }

    /// The kernel-side steps of creating a container; on failure, undoes what it did.
    #[allow(clippy::too_many_arguments)]
    fn create_container_parts(
        &self,
        zone: &Zone,
        id: Uuid,
        name: &str,
        layers: &[PathBuf],
        args: Vec<String>,
        env: Vec<String>,
        cwd: String,
        user: &container::ResolvedUser,
        stdio: Stdio,
        mut created: CreatedParts,
    ) -> Result<(CreatedParts, u32, Vec<String>), RequestError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| RequestError::Io { path, source }
        };
        let steps = (|| {
            let rootfs = RootfsSpec {
                lower_dirs: layers.iter().chain([&self.init_layer]).cloned().collect(),
                upper_dir: created.dir.join("upper"),
                work_dir: created.dir.join("work"),
                merged_dir: created.dir.join("merged"),
            };
            for dir in [&rootfs.upper_dir, &rootfs.work_dir, &rootfs.merged_dir] {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
            }
            let short = container::default_name(id);
            let cgroup = self
                .backend
                .create_container_cgroup(zone, &short)
                .map_err(|source| RequestError::Backend { zone: zone.name.clone(), source })?;
            created.cgroup = Some(short.clone());
            let netns = self.backend.zone_netns(zone);
            let oci = spec::build(SpecInputs {
                hostname: name,
                args,
                env,
                cwd,
                user,
                policy: &zone.policy,
                rootfs: &rootfs.merged_dir,
                netns: netns.as_deref(),
                cgroups_path: &format!(
                    "{}/{}/ctr-{short}",
                    self.config.cgroup_parent,
                    zone.cgroup_name()
                ),
                tty: stdio.tty,
            })
            .map_err(|e| RequestError::InvalidArgument(e.to_string()))?;
            let config_path = created.dir.join("config.json");
            let json = serde_json::to_vec_pretty(&oci)
                .map_err(|e| RequestError::InvalidArgument(format!("encode OCI spec: {e}")))?;
            std::fs::write(&config_path, json).map_err(io(&config_path))?;
            let resolv = crate::net::dns::resolv_conf_from(Path::new("/etc/resolv.conf"), &[])
                .map_err(|source| RequestError::Backend {
                    zone: zone.name.clone(),
                    source: source.into(),
                })?;
            let shim_spec = spec::shim_spec(
                &oci,
                &zone.policy,
                ShimInputs {
                    id: id.to_string(),
                    rootfs,
                    cgroup,
                    log: LogSpec {
                        path: self.log_path(id),
                        max_size: LOG_MAX_SIZE,
                        max_files: LOG_MAX_FILES,
                    },
                    resolv_conf: Some(resolv),
                    hosts: Some(crate::net::dns::hosts_file(name, zone.address)),
                    disabled_layers: self.config.disabled_layers.clone(),
                    interactive: stdio.interactive,
                    stdin_once: stdio.stdin_once,
                },
            )
            .map_err(|e| RequestError::InvalidArgument(e.to_string()))?;
            let args = shim_spec.args.clone();
            let shim = self.shims.get_or_start(zone.numeric_id)?;
            created.in_shim = Some(zone.numeric_id);
            match shim.call(&ShimRequest::CreateContainer(Box::new(shim_spec)))? {
                ShimResponse::Created { pid } => Ok((pid, args)),
                other => Err(RequestError::from(ShimCallError::Unexpected {
                    zone: zone.numeric_id,
                    request: "CreateContainer",
                    response: format!("{other:?}"),
                })),
            }
        })();
        match steps {
            Ok((pid, args)) => Ok((created, pid, args)),
            Err(error) => {
                // The shim may have created the process before a later step failed.
                self.roll_back_container(zone, id, created);
                Err(error)
            }
        }
    }

    fn roll_back_container(&self, zone: &Zone, id: Uuid, created: CreatedParts) {
        if let Some(shim) = created.in_shim.and_then(|zone| self.shims.get(zone)) {
            let _ = shim.call(&ShimRequest::Delete { id: id.to_string() });
        }
        if let Some(short) = &created.cgroup
            && let Err(error) = self.backend.remove_container_cgroup(zone, short)
        {
            tracing::warn!(%error, %id, "roll back container cgroup");
        }
        if let Err(error) = std::fs::remove_dir_all(&created.dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, %id, "roll back container dir");
        }
    }

    pub(super) fn zone_of(&self, container: &Container) -> Result<Zone, RequestError> {
        self.registry().get_by_id(container.zone_id).cloned().ok_or_else(|| {
            RequestError::InvalidArgument(format!(
                "container {} belongs to a zone that no longer exists",
                container.name
            ))
        })
    }

    pub fn start_container(&self, reference: &str) -> Result<ContainerInfo, RequestError> {
        let container = self.find_container(reference)?;
        if container.state != ContainerState::Created {
            return Err(RequestError::ContainerState {
                container: container.name,
                state: container.state.as_str(),
                action: "start",
            });
        }
        let zone = self.zone_of(&container)?;
        let shim = self.shims.get_or_start(zone.numeric_id)?;
        let started = shim.call(&ShimRequest::Start { id: container.id.to_string() });
        // The exit event may have landed already (a command that ends at once): never move a
        // stopped container back to running.
        let started_ok = started.is_ok();
        let current = self
            .update_container(container.id, |current| {
                current.started_at = Some(Timestamp::now());
                if current.state == ContainerState::Created && started_ok {
                    current.state = ContainerState::Running;
                }
            })?
            .unwrap_or(container);
        started?;
        if current.state == ContainerState::Running {
            let registered =
                self.bpf.register_root(&current.id.to_string(), current.pid, zone.numeric_id);
            if let Err(error) = registered {
                tracing::error!(%error, container = %current.name, "register the container's files with the lsm layer");
            }
        }
        tracing::info!(container = %current.name, "container started");
        self.events.publish(
            &zone.name,
            "container.started",
            format!("container {} pid {}", current.name, current.pid),
        );
        Ok(self.container_info(&current))
    }

    /// Block until `predicate` holds for the container's record or `timeout` passes; returns
    /// the record (None if it is gone).
    fn wait_for(
        &self,
        id: Uuid,
        timeout: Option<Duration>,
        predicate: impl Fn(&Container) -> bool,
    ) -> Option<Container> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut containers = self.containers();
        loop {
            let current = containers.get(&id)?;
            if predicate(current) {
                return Some(current.clone());
            }
            let wait = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) => left,
                    None => return Some(current.clone()),
                },
                None => Duration::from_secs(3600),
            };
            containers = self
                .container_changed
                .wait_timeout(containers, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn signal(&self, container: &Container, signal: i32) -> Result<(), RequestError> {
        let zone = self.zone_of(container)?;
        let shim = self.shims.get(zone.numeric_id).ok_or_else(|| RequestError::ContainerState {
            container: container.name.clone(),
            state: container.state.as_str(),
            action: "signal",
        })?;
        shim.call(&ShimRequest::Kill { id: container.id.to_string(), signal })?;
        Ok(())
    }

    pub fn kill_container(&self, reference: &str, signal: i32) -> Result<(), RequestError> {
        let container = self.find_container(reference)?;
        if container.state != ContainerState::Running {
            return Err(RequestError::ContainerState {
                container: container.name,
                state: container.state.as_str(),
                action: "signal",
            });
        }
        if !(1..=64).contains(&signal) {
            return Err(RequestError::InvalidArgument(format!(
                "signal: {signal} is not a signal number (1-64)"
            )));
        }
        self.signal(&container, signal)
    }

    /// SIGTERM, then SIGKILL once `timeout` has passed.
    pub fn stop_container(
        &self,
        reference: &str,
        timeout: u32,
    ) -> Result<ContainerInfo, RequestError> {
        let container = self.find_container(reference)?;
        if container.state != ContainerState::Running {
            return Ok(self.container_info(&container));
        }
        let stopped = |c: &Container| c.state == ContainerState::Stopped;
        let grace = Duration::from_secs(u64::from(if timeout == 0 {
            DEFAULT_STOP_TIMEOUT
        } else {
            timeout
        }));
        self.signal(&container, rustix::process::Signal::TERM.as_raw())?;
        let mut current = self.wait_for(container.id, Some(grace), stopped);
        if current.as_ref().is_some_and(|c| c.state != ContainerState::Stopped) {
            tracing::info!(container = %container.name, "no exit after SIGTERM; sending SIGKILL");
            self.signal(&container, rustix::process::Signal::KILL.as_raw())?;
            current = self.wait_for(container.id, Some(KILL_WAIT), stopped);
        }
        match current {
            Some(c) if c.state == ContainerState::Stopped => Ok(self.container_info(&c)),
            Some(c) => Err(RequestError::ContainerState {
                container: c.name,
                state: c.state.as_str(),
                action: "stop (it survived SIGKILL)",
            }),
            // Removed meanwhile (`--rm`): it stopped.
            None => {
                Ok(self.container_info(&Container { state: ContainerState::Stopped, ..container }))
            }
        }
    }

    pub fn delete_container(&self, reference: &str, force: bool) -> Result<(), RequestError> {
        let container = self.find_container(reference)?;
        if container.state == ContainerState::Running {
            if !force {
                return Err(RequestError::ContainerRunning(container.name));
            }
            self.signal(&container, rustix::process::Signal::KILL.as_raw())?;
            self.wait_for(container.id, Some(KILL_WAIT), |c| c.state == ContainerState::Stopped);
        }
        self.remove_container(&container)
    }

    /// Remove a stopped (or never started) container's process, cgroup, files and record.
    fn remove_container(&self, container: &Container) -> Result<(), RequestError> {
        let zone = self.zone_of(container)?;
        if let Some(shim) = self.shims.get(zone.numeric_id) {
            match shim.call(&ShimRequest::Delete { id: container.id.to_string() }) {
                Ok(_) => {}
                Err(ShimCallError::Failed(f)) if f.kind == FailureKind::NotFound => {}
                Err(error) => return Err(error.into()),
            }
        }
        let short = container::default_name(container.id);
        self.backend
            .remove_container_cgroup(&zone, &short)
            .map_err(|source| RequestError::Backend { zone: zone.name.clone(), source })?;
        let dir = self.container_dir(container.id);
        if let Err(source) = std::fs::remove_dir_all(&dir)
            && source.kind() != std::io::ErrorKind::NotFound
        {
            return Err(RequestError::Io { path: dir, source });
        }
        self.store.delete_container(container.id)?;
        self.containers().remove(&container.id);
        self.container_changed.notify_all();
        if !container.ports.is_empty() {
            self.refresh_zone_network(&zone.name)?;
        }
        tracing::info!(container = %container.name, "container removed");
        self.events.publish(
            &zone.name,
            "container.removed",
            format!("container {}", container.name),
        );
        Ok(())
    }

    pub fn get_container(&self, reference: &str) -> Result<ContainerInfo, RequestError> {
        Ok(self.container_info(&self.find_container(reference)?))
    }

    pub fn list_containers(&self, zone: Option<&str>) -> Result<Vec<ContainerInfo>, RequestError> {
        if let Some(name) = zone {
            super::zones::check_zone_name(name)?;
        }
        let zone_id = zone.map(|name| self.registry().get(name).map(|z| z.id)).transpose()?;
        let mut containers: Vec<Container> = self
            .containers()
            .values()
            .filter(|c| zone_id.is_none_or(|id| c.zone_id == id))
            .cloned()
            .collect();
        containers.sort_by_key(|c| c.created_at);
        Ok(containers.iter().map(|c| self.container_info(c)).collect())
    }

    pub fn wait_container(&self, reference: &str) -> Result<ContainerInfo, RequestError> {
        loop {
            if let Some(info) = self.wait_container_for(reference, Duration::from_secs(3600))? {
                return Ok(info);
            }
        }
    }

    /// Wait up to `timeout` for the container to stop; its final state, or `None` while it
    /// still runs.
    pub fn wait_container_for(
        &self,
        reference: &str,
        timeout: Duration,
    ) -> Result<Option<ContainerInfo>, RequestError> {
        let container = match self.find_container(reference) {
            Err(RequestError::ContainerNotFound(_)) => {
                // Auto-removed before the waiter came: its last record answers.
                let removed = self.removed.lock().unwrap_or_else(|e| e.into_inner());
                let found = removed
                    .values()
                    .map(|(_, c)| c)
                    .find(|c| c.id.to_string() == reference || c.name == reference);
                if let Some(found) = found {
                    return Ok(Some(self.container_info(found)));
                }
                return Err(RequestError::ContainerNotFound(reference.to_owned()));
            }
            other => other?,
        };
        let done = |c: &Container| c.state == ContainerState::Stopped;
        let deadline = Instant::now() + timeout;
        // `--rm` containers vanish once stopped; their last record is what the waiter gets.
        let mut last = container.clone();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.wait_for(container.id, Some(left), |c| done(c) || c != &last) {
                Some(c) if done(&c) => return Ok(Some(self.container_info(&c))),
                Some(c) if c == last && Instant::now() >= deadline => return Ok(None),
                Some(c) => last = c,
                None => {
                    let removed = self.removed.lock().unwrap_or_else(|e| e.into_inner());
                    let final_state =
                        removed.get(&container.id).map(|(_, c)| c.clone()).unwrap_or(last);
                    return Ok(Some(self.container_info(&final_state)));
                }
            }
        }
    }

    /// Attach to a created or running container's stdio. The fds, in order: with a TTY a dup
    /// of its PTY master (for input and `TIOCSWINSZ`; never read it) and an output pipe's read
    /// end; without, the stdin pipe's write end (only for interactive containers whose stdin is
    /// still open), then stdout's and stderr's read ends. The shim tees the container's output
    /// into the pipes from now on; a reader that falls behind loses output. Closing the fds
    /// detaches.
    pub fn attach_container(&self, reference: &str) -> Result<Vec<OwnedFd>, RequestError> {
        let container = self.find_container(reference)?;
        let refused = |container: &Container| RequestError::ContainerState {
            container: container.name.clone(),
            state: container.state.as_str(),
            action: "attach",
        };
        if container.state == ContainerState::Stopped {
            return Err(refused(&container));
        }
        let zone = self.zone_of(&container)?;
        let shim = self.shims.get(zone.numeric_id).ok_or_else(|| refused(&container))?;
        match shim.call_with_fds(&ShimRequest::Attach { id: container.id.to_string() }) {
            Ok((ShimResponse::Attached { .. }, fds)) => {
                tracing::info!(container = %container.name, "attached");
                Ok(fds)
            }
            Ok((other, _)) => Err(ShimCallError::Unexpected {
                zone: zone.numeric_id,
                request: "Attach",
                response: format!("{other:?}"),
            }
            .into()),
            // It stopped between our look at its record and the shim's.
            Err(ShimCallError::Failed(f)) if f.kind == FailureKind::InvalidState => {
                Err(RequestError::ContainerState {
                    container: container.name,
                    state: ContainerState::Stopped.as_str(),
                    action: "attach",
                })
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Park read-only fds of the container's log files (oldest first) under a ticket.
    pub fn container_logs(&self, reference: &str) -> Result<Ticket, RequestError> {
        let container = self.find_container(reference)?;
        let current = self.log_path(container.id);
        let mut paths: Vec<PathBuf> = (1..LOG_MAX_FILES)
            .rev()
            .map(|n| PathBuf::from(format!("{}.{n}", current.display())))
            .filter(|path| path.exists())
            .collect();
        paths.push(current);
        let mut fds = Vec::new();
        for path in paths {
            match std::fs::File::open(&path) {
                Ok(file) => fds.push(OwnedFd::from(file)),
                // Nothing logged yet.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(RequestError::Io { path, source }),
            }
        }
        Ok(self.park_fds(fds))
    }

    /// Hold `fds` for one client claim.
    pub(super) fn park_fds(&self, fds: Vec<OwnedFd>) -> Ticket {
        let ticket = Ticket(Uuid::new_v4().as_u128());
        let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        tickets.retain(|_, (at, _)| at.elapsed() < TICKET_LIFETIME);
        tickets.insert(ticket.0, (Instant::now(), fds));
        ticket
    }

    /// Hand over the fds parked under `ticket`, once.
    pub(crate) fn claim_fds(&self, ticket: Ticket) -> Result<Vec<OwnedFd>, String> {
        let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        match tickets.remove(&ticket.0) {
            Some((at, fds)) if at.elapsed() < TICKET_LIFETIME => Ok(fds),
            _ => Err("unknown or expired ticket".to_owned()),
        }
    }

    /// A shim event: the only way a container becomes `Stopped` while the daemon runs.
    pub(super) fn on_shim_event(&self, zone: u32, event: ShimEvent) {
        let (container_id, status, oom_killed, finished_at) = match event {
            ShimEvent::Exited { container_id, status, oom_killed, finished_at } => {
                (container_id, status, oom_killed, finished_at)
            }
            ShimEvent::ExecExited { exec_id, status, .. } => {
                self.record_exec_exit(&exec_id, status.shell_code());
                return;
            }
        };
        // A `zone verify` probe: its run waits for the code like an exec's waiter.
        if container_id.starts_with(super::verify::PROBE_PREFIX) {
            self.record_exec_exit(&container_id, status.shell_code());
            return;
        }
        let Ok(id) = Uuid::parse_str(&container_id) else {
            tracing::warn!(zone, %container_id, "exit event for a container id the daemon never made");
            return;
        };
        self.record_exit(id, exit_info(status, oom_killed, finished_at));
    }

    fn record_exit(&self, id: Uuid, exit: ExitInfo) {
        let Some(mut container) = self.containers().get(&id).cloned() else { return };
        tracing::info!(container = %container.name, code = exit.code, oom = exit.oom_killed, "container exited");
        let zone = self
            .registry()
            .get_by_id(container.zone_id)
            .map(|z| z.name.clone())
            .unwrap_or_default();
        let (oom_killed, code) = (exit.oom_killed, exit.code);
        self.bpf.forget_root(&id.to_string());
        let stop = |c: &mut Container| {
            c.state = ContainerState::Stopped;
            c.pid = 0;
            c.exit = Some(exit.clone());
        };
        match self.update_container(id, stop) {
            Ok(Some(updated)) => container = updated,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(%error, container = %container.name, "persist container exit");
                stop(&mut container);
            }
        }
        // Published after the record changed, so a watcher that reads the container on this
        // event sees it Stopped.
        if oom_killed {
            self.events.publish(
                &zone,
                "container.oom",
                format!("container {} killed by the OOM killer", container.name),
            );
        }
        self.events.publish(
            &zone,
            "container.exited",
            format!("container {} exited with code {code}", container.name),
        );
        if container.auto_remove {
            let mut removed = self.removed.lock().unwrap_or_else(|e| e.into_inner());
            removed.retain(|_, (at, _)| at.elapsed() < super::FINISHED_RETENTION);
            removed.insert(id, (Instant::now(), container.clone()));
            drop(removed);
            if let Err(error) = self.remove_container(&container) {
                tracing::warn!(%error, container = %container.name, "auto-remove");
            }
        }
    }

    /// After a restart: ask each zone's shim (if it survived) what became of its containers.
    pub(super) fn recover_containers(&self) {
        let zones: Vec<Zone> = self.registry().iter().cloned().collect();
        for zone in zones {
            // Adopted even without containers (`zone verify` starts the shim of an empty zone),
            // so that deleting the zone stops it.
            let shim = self.shims.adopt(zone.numeric_id);
            let containers = self.zone_containers(zone.id);
            if containers.is_empty() {
                continue;
            }
            let states: HashMap<String, ContainerStatus> = match shim {
                Some(shim) => match shim.list() {
                    Ok(states) => states.into_iter().map(|s| (s.id, s.status)).collect(),
                    Err(error) => {
                        tracing::warn!(%error, zone = %zone.name, "list the shim's containers");
                        HashMap::new()
                    }
                },
                None => HashMap::new(),
            };
            for container in containers {
                if container.state == ContainerState::Stopped {
                    continue;
                }
                match states.get(&container.id.to_string()) {
                    Some(ContainerStatus::Running) => {
                        let id = container.id.to_string();
                        if let Err(error) =
                            self.bpf.register_root(&id, container.pid, zone.numeric_id)
                        {
                            tracing::error!(%error, container = %container.name, "register the container's files with the lsm layer");
                        }
                    }
                    Some(ContainerStatus::Created) => {}
                    Some(ContainerStatus::Stopped { status, oom_killed, finished_at }) => {
                        self.record_exit(
                            container.id,
                            exit_info(*status, *oom_killed, *finished_at),
                        );
                    }
                    None => {
                        // Its shim is gone, and the process with it.
                        tracing::warn!(container = %container.name, "container lost with its shim");
                        self.record_exit(
                            container.id,
                            exit_info(ExitStatus::Signaled(9), false, SystemTime::now()),
                        );
                    }
                }
            }
        }
    }
}

/// How a container's stdio is set up (`-t`, `-i`).
#[derive(Debug, Clone, Copy)]
struct Stdio {
    tty: bool,
    interactive: bool,
    stdin_once: bool,
}

/// What a container creation has made so far, for rollback.
struct CreatedParts {
    dir: PathBuf,
    cgroup: Option<String>,
    in_shim: Option<u32>,
}

fn image_error(reference: &str) -> impl FnOnce(ImageError) -> RequestError + '_ {
    move |error| match error.kind() {
        crate::image::ErrorKind::NotFound => RequestError::ImageNotFound(reference.to_owned()),
        _ => RequestError::from(error),
    }
}
