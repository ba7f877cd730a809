//! `rauha.zone.v1.ZoneService` onto the daemon's zone operations and event bus.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::proto::zone::zone_service_server::ZoneService;
use super::proto::zone::*;
use super::{blocking, optional};
use crate::daemon::{Daemon, Event};
use crate::rpc::ZoneCreateRequest;

/// The zone service: a handle on the daemon.
pub struct ZoneApi {
    daemon: Arc<Daemon>,
}

impl ZoneApi {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        Self { daemon }
    }
}

fn zone_info(info: crate::rpc::ZoneInfo) -> ZoneInfo {
    ZoneInfo {
        id: info.id,
        name: info.name,
        zone_type: info.zone_type,
        state: info.state,
        container_count: info.container_count,
        created_at: info.created_at,
    }
}

fn zone_event(event: Event) -> ZoneEvent {
    ZoneEvent {
        zone_name: event.zone,
        event_type: event.event_type,
        message: event.message,
        timestamp: event.timestamp,
    }
}

/// One boundary check as the contract's `IsolationCheck` (see the module docs of `grpc`).
fn check(check: crate::rpc::IsolationCheck) -> IsolationCheck {
    let detail = if !check.skipped.is_empty() {
        check.detail
    } else {
        let result = match (check.passed, check.required) {
            (true, _) => "held",
            (false, true) => "NOT HELD",
            (false, false) => "open by policy",
        };
        let by = if check.held_by.is_empty() {
            String::new()
        } else {
            format!(" by {}", check.held_by.join(", "))
        };
        format!("{}: {result}{by}: {}", check.boundary, check.detail)
    };
    IsolationCheck { name: check.name, passed: check.passed, detail }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<ZoneEvent, Status>> + Send>>;

#[tonic::async_trait]
impl ZoneService for ZoneApi {
    async fn create_zone(
        &self,
        request: Request<CreateZoneRequest>,
    ) -> Result<Response<CreateZoneResponse>, Status> {
        let request = request.into_inner();
        let request = ZoneCreateRequest {
            name: request.name,
            zone_type: request.zone_type,
            policy_toml: request.policy_toml,
        };
        let info = blocking(&self.daemon, move |d| d.create_zone(request)).await?;
        Ok(Response::new(CreateZoneResponse {
            zone_id: info.id,
            name: info.name,
            state: info.state,
        }))
    }

    async fn delete_zone(
        &self,
        request: Request<DeleteZoneRequest>,
    ) -> Result<Response<DeleteZoneResponse>, Status> {
        let DeleteZoneRequest { name, force } = request.into_inner();
        blocking(&self.daemon, move |d| d.delete_zone(&name, force)).await?;
        Ok(Response::new(DeleteZoneResponse {}))
    }

    async fn get_zone(
        &self,
        request: Request<GetZoneRequest>,
    ) -> Result<Response<GetZoneResponse>, Status> {
        let name = request.into_inner().name;
        let info = blocking(&self.daemon, move |d| d.get_zone(&name)).await?;
        Ok(Response::new(GetZoneResponse { zone: Some(zone_info(info)) }))
    }

    async fn list_zones(
        &self,
        _: Request<ListZonesRequest>,
    ) -> Result<Response<ListZonesResponse>, Status> {
        let zones =
            blocking(&self.daemon, |d| Ok::<_, crate::rpc::ApiError>(d.list_zones())).await?;
        Ok(Response::new(ListZonesResponse { zones: zones.into_iter().map(zone_info).collect() }))
    }

    async fn apply_policy(
        &self,
        request: Request<ApplyPolicyRequest>,
    ) -> Result<Response<ApplyPolicyResponse>, Status> {
        let ApplyPolicyRequest { zone_name, policy_toml } = request.into_inner();
        blocking(&self.daemon, move |d| d.apply_policy(&zone_name, &policy_toml)).await?;
        Ok(Response::new(ApplyPolicyResponse {}))
    }

    async fn get_policy(
        &self,
        request: Request<GetPolicyRequest>,
    ) -> Result<Response<GetPolicyResponse>, Status> {
        let zone_name = request.into_inner().zone_name;
        let policy_toml = blocking(&self.daemon, move |d| d.policy_toml(&zone_name)).await?;
        Ok(Response::new(GetPolicyResponse { policy_toml }))
    }

    async fn zone_stats(
        &self,
        request: Request<ZoneStatsRequest>,
    ) -> Result<Response<ZoneStatsResponse>, Status> {
        let zone_name = request.into_inner().zone_name;
        let stats = blocking(&self.daemon, move |d| d.zone_stats(&zone_name)).await?;
        Ok(Response::new(ZoneStatsResponse {
            zone_id: stats.zone_id,
            container_count: stats.container_count,
            cpu_usage_percent: stats.cpu_usage_percent,
            memory_usage_bytes: stats.memory_usage_bytes,
            memory_limit_bytes: stats.memory_limit_bytes,
            network_rx_bytes: stats.network_rx_bytes,
            network_tx_bytes: stats.network_tx_bytes,
            pids_current: stats.pids_current,
        }))
    }

    async fn verify_isolation(
        &self,
        request: Request<VerifyIsolationRequest>,
    ) -> Result<Response<VerifyIsolationResponse>, Status> {
        let zone_name = request.into_inner().zone_name;
        let report = blocking(&self.daemon, move |d| d.verify_zone(&zone_name)).await?;
        let mut checks: Vec<IsolationCheck> = report.checks.into_iter().map(check).collect();
        checks.extend(report.layers.into_iter().map(|layer| IsolationCheck {
            name: format!("layer:{}", layer.name),
            passed: layer.active,
            detail: if layer.active {
                "active".to_owned()
            } else {
                format!("inactive: {}", layer.reason)
            },
        }));
        Ok(Response::new(VerifyIsolationResponse { is_isolated: report.is_isolated, checks }))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let zone = optional(request.into_inner().zone_name);
        let (history, receiver) = blocking(&self.daemon, move |d| d.follow_events(zone)).await?;
        // History first, then new events; a client that goes away drops the receiver, and the
        // bus forgets the follower at its next publish.
        let events =
            futures::stream::iter(history).chain(receiver).map(|event| Ok(zone_event(event)));
        Ok(Response::new(Box::pin(events)))
    }
}
