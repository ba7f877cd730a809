//! `rauha.container.v1.ContainerService` onto the daemon's container operations.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::proto::container::container_service_server::ContainerService;
use super::proto::container::*;
use super::{blocking, container_id, env_list, optional};
use crate::daemon::Daemon;
use crate::rpc::ContainerCreateRequest;

/// The container service: a handle on the daemon.
pub struct ContainerApi {
    daemon: Arc<Daemon>,
}

impl ContainerApi {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        Self { daemon }
    }
}

fn container_info(info: crate::rpc::ContainerInfo) -> ContainerInfo {
    ContainerInfo {
        id: info.id,
        name: info.name,
        zone_id: info.zone_id,
        zone_name: info.zone_name,
        image: info.image,
        state: info.state,
        pid: info.pid,
        created_at: info.created_at,
        started_at: info.started_at,
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ContainerService for ContainerApi {
    async fn create_container(
        &self,
        request: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let request = request.into_inner();
        let request = ContainerCreateRequest {
            zone: request.zone_name,
            name: request.name,
            image: request.image,
            command: request.command,
            env: env_list(request.env, "env")?,
            working_dir: request.working_dir,
            // The contract's CreateContainerRequest has no user, removal or port fields: the
            // image's user, kept after exit, nothing published.
            ..ContainerCreateRequest::default()
        };
        let info = blocking(&self.daemon, move |d| d.create_container(request)).await?;
        Ok(Response::new(CreateContainerResponse {
            container_id: info.id,
            name: info.name,
            state: info.state,
        }))
    }

    async fn start_container(
        &self,
        request: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        let id = container_id("container_id", &request.into_inner().container_id)?;
        blocking(&self.daemon, move |d| d.start_container(&id)).await?;
        Ok(Response::new(StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        let request = request.into_inner();
        let id = container_id("container_id", &request.container_id)?;
        let timeout = request.timeout_seconds;
        blocking(&self.daemon, move |d| d.stop_container(&id, timeout)).await?;
        Ok(Response::new(StopContainerResponse {}))
    }

    async fn delete_container(
        &self,
        request: Request<DeleteContainerRequest>,
    ) -> Result<Response<DeleteContainerResponse>, Status> {
        let request = request.into_inner();
        let id = container_id("container_id", &request.container_id)?;
        let force = request.force;
        blocking(&self.daemon, move |d| d.delete_container(&id, force)).await?;
        Ok(Response::new(DeleteContainerResponse {}))
    }

    async fn get_container(
        &self,
        request: Request<GetContainerRequest>,
    ) -> Result<Response<GetContainerResponse>, Status> {
        let id = container_id("container_id", &request.into_inner().container_id)?;
        let info = blocking(&self.daemon, move |d| d.get_container(&id)).await?;
        Ok(Response::new(GetContainerResponse { container: Some(container_info(info)) }))
    }

    async fn list_containers(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let zone = optional(request.into_inner().zone_name);
        let containers =
            blocking(&self.daemon, move |d| d.list_containers(zone.as_deref())).await?;
        Ok(Response::new(ListContainersResponse {
            containers: containers.into_iter().map(container_info).collect(),
        }))
    }

    async fn exec_in_container(
        &self,
        request: Request<ExecInContainerRequest>,
    ) -> Result<Response<ExecInContainerResponse>, Status> {
        super::exec::exec_captured(&self.daemon, request.into_inner()).await
    }

    type ContainerLogsStream = BoxStream<ContainerLogEntry>;

    async fn container_logs(
        &self,
        request: Request<ContainerLogsRequest>,
    ) -> Result<Response<Self::ContainerLogsStream>, Status> {
        let request = request.into_inner();
        let id = container_id("container_id", &request.container_id)?;
        let stream = super::logs::stream(&self.daemon, id, request.tail, request.follow).await?;
        Ok(Response::new(Box::pin(stream)))
    }

    type ExecStreamStream = BoxStream<ExecStreamResponse>;

    async fn exec_stream(
        &self,
        request: Request<Streaming<ExecStreamRequest>>,
    ) -> Result<Response<Self::ExecStreamStream>, Status> {
        let stream = super::exec::exec_stream(&self.daemon, request.into_inner()).await?;
        Ok(Response::new(Box::pin(stream)))
    }

    type AttachStream = BoxStream<AttachResponse>;

    async fn attach(
        &self,
        request: Request<Streaming<AttachRequest>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let stream = super::attach::attach(&self.daemon, request.into_inner()).await?;
        Ok(Response::new(Box::pin(stream)))
    }
}
