//! The tarpc service implementation: each request runs its (blocking, short) kernel and store
//! work on smol's blocking pool, so the executor keeps accepting and answering.

use std::sync::Arc;

use tarpc::context::Context;

use super::Daemon;
use crate::rpc::{
    ApiError, ContainerCreateRequest, ContainerInfo, DaemonInfo, ExecRequest, ImageInfo,
    IsolationReport, PolicyApplied, PruneSummary, Rauha, Ticket, ZoneCreateRequest, ZoneInfo,
    ZoneStats,
};

/// One handle per connection onto the shared daemon.
#[derive(Clone)]
pub struct Server(Arc<Daemon>);

impl Server {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        Self(daemon)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Arc<Daemon>) -> Result<T, super::error::RequestError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let daemon = Arc::clone(&self.0);
        smol::unblock(move || work(&daemon)).await.map_err(|error| {
            tracing::debug!(%error, "request failed");
            ApiError::from(error)
        })
    }
}

impl Rauha for Server {
    async fn daemon_info(self, _: Context) -> DaemonInfo {
        DaemonInfo {
            version: crate::VERSION.to_owned(),
            git_revision: crate::GIT_REVISION.to_owned(),
            features: crate::features().iter().map(|f| f.to_string()).collect(),
            cgroup_layout: self.0.backend.describe(),
            root_dir: self.0.config.root.display().to_string(),
            zone_count: self.0.registry().len() as u32,
            enforcement: self.0.bpf.layers(),
        }
    }

    async fn zone_create(
        self,
        _: Context,
        request: ZoneCreateRequest,
    ) -> Result<ZoneInfo, ApiError> {
        self.blocking(move |d| d.create_zone(request)).await
    }

    async fn zone_list(self, _: Context) -> Result<Vec<ZoneInfo>, ApiError> {
        self.blocking(|d| Ok(d.list_zones())).await
    }

    async fn zone_get(self, _: Context, name: String) -> Result<ZoneInfo, ApiError> {
        self.blocking(move |d| d.get_zone(&name)).await
    }

    async fn zone_delete(self, _: Context, name: String, force: bool) -> Result<(), ApiError> {
        self.blocking(move |d| d.delete_zone(&name, force)).await
    }

    async fn zone_stats(self, _: Context, name: String) -> Result<ZoneStats, ApiError> {
        self.blocking(move |d| d.zone_stats(&name)).await
    }

    async fn policy_apply(
        self,
        _: Context,
        zone: String,
        policy_toml: String,
    ) -> Result<PolicyApplied, ApiError> {
        self.blocking(move |d| d.apply_policy(&zone, &policy_toml)).await
    }

    async fn policy_get(self, _: Context, zone: String) -> Result<String, ApiError> {
        self.blocking(move |d| d.policy_toml(&zone)).await
    }

    async fn zone_verify(self, _: Context, name: String) -> Result<IsolationReport, ApiError> {
        self.blocking(move |d| d.verify_zone(&name)).await
    }

    async fn container_create(
        self,
        _: Context,
        request: ContainerCreateRequest,
    ) -> Result<ContainerInfo, ApiError> {
        self.blocking(move |d| d.create_container(request)).await
    }

    async fn container_start(
        self,
        _: Context,
        container: String,
    ) -> Result<ContainerInfo, ApiError> {
        self.blocking(move |d| d.start_container(&container)).await
    }

    async fn container_stop(
        self,
        _: Context,
        container: String,
        timeout_seconds: u32,
    ) -> Result<ContainerInfo, ApiError> {
        self.blocking(move |d| d.stop_container(&container, timeout_seconds)).await
    }

    async fn container_kill(
        self,
        _: Context,
        container: String,
        signal: i32,
    ) -> Result<(), ApiError> {
        self.blocking(move |d| d.kill_container(&container, signal)).await
    }

    async fn container_delete(
        self,
        _: Context,
        container: String,
        force: bool,
    ) -> Result<(), ApiError> {
        self.blocking(move |d| d.delete_container(&container, force)).await
    }

    async fn container_get(self, _: Context, container: String) -> Result<ContainerInfo, ApiError> {
        self.blocking(move |d| d.get_container(&container)).await
    }

    async fn container_list(
        self,
        _: Context,
        zone: Option<String>,
    ) -> Result<Vec<ContainerInfo>, ApiError> {
        self.blocking(move |d| d.list_containers(zone.as_deref())).await
    }

    async fn container_wait(
        self,
        _: Context,
        container: String,
    ) -> Result<ContainerInfo, ApiError> {
        self.blocking(move |d| d.wait_container(&container)).await
    }

    async fn container_logs(self, _: Context, container: String) -> Result<Ticket, ApiError> {
        self.blocking(move |d| d.container_logs(&container)).await
    }

    async fn container_attach(self, _: Context, container: String) -> Result<Ticket, ApiError> {
        self.blocking(move |d| d.attach_container(&container).map(|fds| d.park_fds(fds))).await
    }

    async fn image_pull(
        self,
        _: Context,
        reference: String,
        platform: Option<String>,
    ) -> Result<Ticket, ApiError> {
        self.blocking(move |d| d.pull_image(reference, platform)).await
    }

    async fn image_import(
        self,
        _: Context,
        path: String,
        tag: Option<String>,
    ) -> Result<Vec<ImageInfo>, ApiError> {
        self.blocking(move |d| d.import_image(&path, tag.as_deref())).await
    }

    async fn image_list(self, _: Context) -> Result<Vec<ImageInfo>, ApiError> {
        self.blocking(|d| d.list_images()).await
    }

    async fn image_inspect(self, _: Context, reference: String) -> Result<ImageInfo, ApiError> {
        self.blocking(move |d| d.inspect_image(&reference)).await
    }

    async fn image_remove(self, _: Context, reference: String) -> Result<(), ApiError> {
        self.blocking(move |d| d.remove_image(&reference)).await
    }

    async fn image_prune(self, _: Context) -> Result<PruneSummary, ApiError> {
        self.blocking(|d| d.prune_images()).await
    }

    async fn events(
        self,
        _: Context,
        zone: Option<String>,
        follow: bool,
    ) -> Result<Ticket, ApiError> {
        self.blocking(move |d| d.events_stream(zone, follow)).await
    }

    async fn container_exec(
        self,
        _: Context,
        request: ExecRequest,
    ) -> Result<(String, Ticket), ApiError> {
        self.blocking(move |d| {
            let (exec_id, fds) = d.exec_container(request)?;
            Ok((exec_id, d.park_fds(fds)))
        })
        .await
    }

    async fn exec_wait(self, _: Context, exec_id: String) -> Result<i32, ApiError> {
        self.blocking(move |d| d.wait_exec(&exec_id)).await
    }
}
