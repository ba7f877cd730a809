//! The gRPC facade (API-GRPC.md) against a real daemon: every rpc and status-code rule of the
//! contract, through a tonic client generated from the same protos. The daemon serves gRPC on a
//! Unix socket in the test's dir; one test uses TCP on loopback inside the daemon's network
//! namespace.
#![cfg(feature = "grpc")]

mod harness;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::TestDaemon;
use rauha::grpc::ListenAddr;
use rauha::grpc::client::{BearerToken, connect};
use rauha::grpc::proto::container::container_service_client::ContainerServiceClient;
use rauha::grpc::proto::container::{
    self as ctr, attach_request, attach_response, exec_stream_request, exec_stream_response,
};
use rauha::grpc::proto::image as img;
use rauha::grpc::proto::image::image_service_client::ImageServiceClient;
use rauha::grpc::proto::zone as zn;
use rauha::grpc::proto::zone::zone_service_client::ZoneServiceClient;
use tonic::Code;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

type Zones = ZoneServiceClient<InterceptedService<Channel, BearerToken>>;
type Containers = ContainerServiceClient<InterceptedService<Channel, BearerToken>>;
type Images = ImageServiceClient<InterceptedService<Channel, BearerToken>>;

/// A daemon serving gRPC, a runtime to drive the client, and the three clients.
struct Grpc {
    d: TestDaemon,
    rt: tokio::runtime::Runtime,
    addr: ListenAddr,
    zones: Zones,
    containers: Containers,
    images: Images,
    _sockets: tempfile::TempDir,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

impl Grpc {
    fn start(test: &str) -> Option<Self> {
        Self::start_with(test, &[], None)
    }

    /// A daemon with `--grpc-listen unix:…` plus `extra` flags; `token` is what the clients
    /// present.
    fn start_with(test: &str, extra: &[&str], token: Option<&str>) -> Option<Self> {
        let sockets = tempfile::Builder::new().prefix("rauha-grpc-").tempdir().expect("temp dir");
        let socket = sockets.path().join("grpc.sock");
        let listen = format!("unix:{}", socket.display());
        let mut args = vec!["--grpc-listen", listen.as_str()];
        args.extend_from_slice(extra);
        let d = TestDaemon::start_with(test, &args)?;
        let rt = runtime();
        let addr = ListenAddr::Unix(socket);
        let (zones, containers, images) = rt.block_on(clients(&addr, token));
        Some(Self { d, rt, addr, zones, containers, images, _sockets: sockets })
    }

    fn block_on<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(future)
    }

    fn create_zone(&self, name: &str, policy: &str) -> zn::CreateZoneResponse {
        let mut zones = self.zones.clone();
        let request = zn::CreateZoneRequest {
            name: name.to_owned(),
            zone_type: String::new(),
            policy_toml: policy.to_owned(),
        };
        self.block_on(zones.create_zone(request))
            .unwrap_or_else(|s| panic!("create zone {name}: {s:?}\n{}", self.d.log()))
            .into_inner()
    }

    fn create_container(&self, zone: &str, name: &str, command: &[&str]) -> String {
        let mut containers = self.containers.clone();
        let request = ctr::CreateContainerRequest {
            zone_name: zone.to_owned(),
            name: name.to_owned(),
            image: "busybox".to_owned(),
            command: command.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let created = self
            .block_on(containers.create_container(request))
            .unwrap_or_else(|s| panic!("create container {name}: {s:?}\n{}", self.d.log()))
            .into_inner();
        assert_eq!(created.state, "Created");
        assert_eq!(created.name, name);
        created.container_id
    }

    fn start_container(&self, id: &str) {
        let mut containers = self.containers.clone();
        let request = ctr::StartContainerRequest { container_id: id.to_owned() };
        self.block_on(containers.start_container(request))
            .unwrap_or_else(|s| panic!("start {id}: {s:?}\n{}", self.d.log()));
    }

    fn container(&self, id: &str) -> Result<ctr::ContainerInfo, tonic::Status> {
        let mut containers = self.containers.clone();
        let request = ctr::GetContainerRequest { container_id: id.to_owned() };
        self.block_on(containers.get_container(request))
            .map(|r| r.into_inner().container.expect("container info"))
    }
}

async fn clients(addr: &ListenAddr, token: Option<&str>) -> (Zones, Containers, Images) {
    let channel = connect(addr).await.expect("connect to the gRPC facade");
    let auth = BearerToken(token.map(str::to_owned));
    (
        ZoneServiceClient::with_interceptor(channel.clone(), auth.clone()),
        ContainerServiceClient::with_interceptor(channel.clone(), auth.clone())
            .max_decoding_message_size(64 << 20),
        ImageServiceClient::with_interceptor(channel, auth),
    )
}

/// Assert a call failed with `code`; returns the message.
#[track_caller]
fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code) -> String {
    match result {
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            assert!(!status.message().is_empty(), "a status says what and why");
            status.message().to_owned()
        }
        Ok(value) => panic!("expected {code:?}, got {value:?}"),
    }
}

/// RFC 3339 in UTC with milliseconds, as the contract writes timestamps.
#[track_caller]
fn assert_timestamp(text: &str) {
    assert!(text.ends_with('Z') && text.len() == "2026-11-28T10:15:30.123Z".len(), "{text:?}");
    text.parse::<jiff::Timestamp>().unwrap_or_else(|e| panic!("{text:?}: {e}"));
}

const BAD_NAMES: [&str; 8] = ["", "a/b", "a\\b", "a\0b", "a\nb", "\u{7f}x", ".", ".."];

fn too_long() -> String {
    "x".repeat(129)
}

#[test]
fn zones_lifecycle_policies_stats_and_status_codes() {
    let Some(g) = Grpc::start("grpc_zones") else { return };
    let mut zones = g.zones.clone();
    let create = |name: &str, zone_type: &str, policy: &str| zn::CreateZoneRequest {
        name: name.to_owned(),
        zone_type: zone_type.to_owned(),
        policy_toml: policy.to_owned(),
    };

    // Names: every invalid class is InvalidArgument on create and on lookups, before lookup.
    let long = too_long();
    for bad in BAD_NAMES.iter().copied().chain([long.as_str()]) {
        code(g.block_on(zones.create_zone(create(bad, "", ""))), Code::InvalidArgument);
        let get = zn::GetZoneRequest { name: bad.to_owned() };
        code(g.block_on(zones.get_zone(get)), Code::InvalidArgument);
        let stats = zn::ZoneStatsRequest { zone_name: bad.to_owned() };
        code(g.block_on(zones.zone_stats(stats)), Code::InvalidArgument);
        let delete = zn::DeleteZoneRequest { name: bad.to_owned(), force: true };
        code(g.block_on(zones.delete_zone(delete)), Code::InvalidArgument);
    }
    // 128 bytes of UTF-8 is the longest valid name.
    let longest = "ä".repeat(64);
    let created = g.create_zone(&longest, "");
    assert_eq!(created.name, longest);
    assert_eq!(created.state, "Ready");
    uuid::Uuid::parse_str(&created.zone_id).expect("zone id is a UUID");

    // Types.
    for bad in ["global", "Global-ish", "nonglobal "] {
        let message =
            code(g.block_on(zones.create_zone(create("t", bad, ""))), Code::InvalidArgument);
        assert!(message.contains("zone_type"), "{message}");
    }
    g.block_on(zones.create_zone(create("ng", "non-global", ""))).expect("non-global");
    g.block_on(zones.create_zone(create("pv", "privileged", ""))).expect("privileged");
    let get = |zones: &mut Zones, name: &str| {
        g.block_on(zones.get_zone(zn::GetZoneRequest { name: name.to_owned() }))
            .map(|r| r.into_inner().zone.expect("zone info"))
    };
    let ng = get(&mut zones, "ng").expect("get ng");
    assert_eq!(
        (ng.zone_type.as_str(), ng.state.as_str(), ng.container_count),
        ("NonGlobal", "Ready", 0)
    );
    assert_timestamp(&ng.created_at);
    assert_eq!(get(&mut zones, "pv").expect("get pv").zone_type, "Privileged");
    assert_eq!(get(&mut zones, &longest).expect("get longest").zone_type, "NonGlobal");

    // Duplicates, unknown zones.
    let message = code(g.block_on(zones.create_zone(create("ng", "", ""))), Code::AlreadyExists);
    assert!(message.contains("ng"), "{message}");
    code(get(&mut zones, "nowhere"), Code::NotFound);
    let listed = g.block_on(zones.list_zones(zn::ListZonesRequest {})).expect("list").into_inner();
    let mut names: Vec<String> = listed.zones.iter().map(|z| z.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["ng".to_owned(), "pv".to_owned(), longest.clone()]);

    // Policies: broken TOML and unknown network modes are InvalidArgument, even for an unknown
    // zone (validation before lookup); a good policy on an unknown zone is NotFound.
    let broken = "[resources\nmemory_limit = 1";
    let quantum = "[network]\nmode = \"quantum\"\n";
    for policy in [broken, quantum] {
        code(g.block_on(zones.create_zone(create("p", "", policy))), Code::InvalidArgument);
        for zone in ["ng", "nowhere"] {
            let apply = zn::ApplyPolicyRequest {
                zone_name: zone.to_owned(),
                policy_toml: policy.to_owned(),
            };
            let message = code(g.block_on(zones.apply_policy(apply)), Code::InvalidArgument);
            if policy == quantum {
                assert!(message.contains("quantum"), "{message}");
            }
        }
    }
    let good = "[network]\nmode = \"bridged\"\n[resources]\nmemory_limit = \"1Gi\"\n";
    let apply = |zone: &str| zn::ApplyPolicyRequest {
        zone_name: zone.to_owned(),
        policy_toml: good.to_owned(),
    };
    code(g.block_on(zones.apply_policy(apply("nowhere"))), Code::NotFound);
    g.block_on(zones.apply_policy(apply("ng")))
        .unwrap_or_else(|s| panic!("apply: {s:?}\n{}", g.d.log()));
    let policy = g
        .block_on(zones.get_policy(zn::GetPolicyRequest { zone_name: "ng".to_owned() }))
        .expect("get policy")
        .into_inner()
        .policy_toml;
    assert!(policy.contains("mode = \"bridged\""), "{policy}");
    assert!(policy.contains("memory_limit = \"1Gi\""), "{policy}");
    let unknown = zn::GetPolicyRequest { zone_name: "nowhere".to_owned() };
    code(g.block_on(zones.get_policy(unknown)), Code::NotFound);

    // Stats: the limit in force in the cgroup.
    let stats = g
        .block_on(zones.zone_stats(zn::ZoneStatsRequest { zone_name: "ng".to_owned() }))
        .expect("stats")
        .into_inner();
    assert_eq!(stats.memory_limit_bytes, 1_073_741_824);
    assert_eq!(stats.zone_id, ng.id);
    assert_eq!(stats.container_count, 0);
    assert!(stats.cpu_usage_percent >= 0.0);
    let unknown = zn::ZoneStatsRequest { zone_name: "nowhere".to_owned() };
    code(g.block_on(zones.zone_stats(unknown)), Code::NotFound);

    // VerifyIsolation: argument rules, then the daemon's verify (the attack probes).
    let verify = |name: &str| zn::VerifyIsolationRequest { zone_name: name.to_owned() };
    code(g.block_on(zones.verify_isolation(verify("a/b"))), Code::InvalidArgument);
    code(g.block_on(zones.verify_isolation(verify("nowhere"))), Code::NotFound);
    let report = g
        .block_on(zones.verify_isolation(verify("ng")))
        .unwrap_or_else(|s| panic!("verify: {s:?}\n{}", g.d.log()))
        .into_inner();
    assert!(report.is_isolated, "{report:#?}");
    let named = |name: &str| {
        report.checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("{name}"))
    };
    let mount = named("mount");
    assert!(mount.passed);
    assert!(mount.detail.starts_with("mounts: held by seccomp, capabilities: "), "{mount:?}");
    // No other zone runs a container: those attacks are skipped, not passed.
    let skipped = named("signal_zone");
    assert!(!skipped.passed && skipped.detail.starts_with("skipped: "), "{skipped:?}");
    // Every enforcement layer has an entry: passed = active, the reason when not.
    for layer in ["seccomp", "landlock", "capabilities", "cgroup-bpf"] {
        let entry = named(&format!("layer:{layer}"));
        assert!(entry.passed && entry.detail == "active", "{entry:?}");
    }
    let lsm = named("layer:lsm");
    assert!(lsm.passed || lsm.detail.starts_with("inactive: "), "{lsm:?}");
    let boundaries = report
        .checks
        .iter()
        .filter(|c| !c.name.starts_with("layer:") && !c.detail.starts_with("skipped: "));
    assert!(boundaries.clone().count() > 20);
    for check in boundaries {
        assert!(check.passed, "{check:?}");
    }

    // Delete; the second delete finds nothing.
    for name in ["ng", "pv", longest.as_str()] {
        let delete = zn::DeleteZoneRequest { name: name.to_owned(), force: false };
        g.block_on(zones.delete_zone(delete.clone())).expect("delete");
        code(g.block_on(zones.delete_zone(delete)), Code::NotFound);
        code(get(&mut zones, name), Code::NotFound);
    }
    let listed = g.block_on(zones.list_zones(zn::ListZonesRequest {})).expect("list").into_inner();
    assert!(listed.zones.is_empty(), "{listed:?}");
}

async fn next(stream: &mut tonic::Streaming<zn::ZoneEvent>) -> zn::ZoneEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an event within 10 s")
        .expect("stream ok")
        .expect("stream open")
}

#[test]
fn watch_events_streams_history_then_new_events_of_one_zone() {
    let Some(g) = Grpc::start("grpc_events") else { return };
    g.create_zone("a", "");
    g.create_zone("b", "");
    let mut zones = g.zones.clone();
    let watch = |name: &str| zn::WatchEventsRequest { zone_name: name.to_owned() };
    code(g.block_on(zones.watch_events(watch("nowhere"))), Code::NotFound);
    code(g.block_on(zones.watch_events(watch("a/b"))), Code::InvalidArgument);

    g.block_on(async {
        let mut only_a = zones.watch_events(watch("a")).await.expect("watch a").into_inner();
        let mut all = zones.watch_events(watch("")).await.expect("watch all").into_inner();
        // History first.
        let first = next(&mut only_a).await;
        assert_eq!((first.zone_name.as_str(), first.event_type.as_str()), ("a", "zone.created"));
        assert_timestamp(&first.timestamp);
        let (x, y) = (next(&mut all).await, next(&mut all).await);
        assert_eq!((x.zone_name.as_str(), y.zone_name.as_str()), ("a", "b"));
        // Then new events, filtered by zone.
        let mut zones = g.zones.clone();
        for zone in ["b", "a"] {
            let apply = zn::ApplyPolicyRequest {
                zone_name: zone.to_owned(),
                policy_toml: "[resources]\npids_max = 77\n".to_owned(),
            };
            zones.apply_policy(apply).await.expect("apply");
        }
        let event = next(&mut only_a).await;
        assert_eq!((event.zone_name.as_str(), event.event_type.as_str()), ("a", "policy.applied"));
        assert!(event.message.contains("resources"), "{event:?}");
        let (x, y) = (next(&mut all).await, next(&mut all).await);
        assert_eq!((x.zone_name.as_str(), y.zone_name.as_str()), ("b", "a"));
    });
}

#[test]
fn containers_lifecycle_logs_and_status_codes() {
    let Some(g) = Grpc::start("grpc_containers") else { return };
    g.d.import_busybox();
    g.create_zone("z", "");
    let mut containers = g.containers.clone();
    let request = |zone: &str, image: &str| ctr::CreateContainerRequest {
        zone_name: zone.to_owned(),
        image: image.to_owned(),
        command: vec!["true".to_owned()],
        ..Default::default()
    };
    // The zone is checked first, then the image, which must be local.
    code(g.block_on(containers.create_container(request("nowhere", "nosuch"))), Code::NotFound);
    code(g.block_on(containers.create_container(request("a/b", "busybox"))), Code::InvalidArgument);
    let message =
        code(g.block_on(containers.create_container(request("z", "nosuch:1"))), Code::NotFound);
    assert!(message.contains("pull"), "{message}");
    let mut bad_env = request("z", "busybox");
    bad_env.env.insert("A=B".to_owned(), "c".to_owned());
    code(g.block_on(containers.create_container(bad_env)), Code::InvalidArgument);

    // Every container-id field: not a UUID → InvalidArgument; unknown UUID → NotFound.
    let unknown = uuid::Uuid::new_v4().to_string();
    for (id, expected) in [
        ("web", Code::InvalidArgument),
        ("", Code::InvalidArgument),
        (unknown.as_str(), Code::NotFound),
    ] {
        let id = id.to_owned();
        code(
            g.block_on(
                containers.start_container(ctr::StartContainerRequest { container_id: id.clone() }),
            ),
            expected,
        );
        code(
            g.block_on(containers.stop_container(ctr::StopContainerRequest {
                container_id: id.clone(),
                timeout_seconds: 1,
            })),
            expected,
        );
        code(
            g.block_on(containers.delete_container(ctr::DeleteContainerRequest {
                container_id: id.clone(),
                force: true,
            })),
            expected,
        );
        code(g.container(&id), expected);
        let exec = ctr::ExecInContainerRequest {
            container_id: id.clone(),
            command: vec!["true".into()],
            ..Default::default()
        };
        code(g.block_on(containers.exec_in_container(exec)), expected);
        let logs = ctr::ContainerLogsRequest { container_id: id.clone(), follow: false, tail: 0 };
        code(g.block_on(containers.container_logs(logs)), expected);
    }

    // An echo container: Stopped as soon as its exit is announced.
    let mut echo = request("z", "busybox");
    echo.name = "echo".to_owned();
    echo.command =
        ["sh", "-c", "echo hello $WHO in $(pwd); sleep 0.2; echo oops >&2; sleep 0.2; echo bye"]
            .map(str::to_owned)
            .to_vec();
    echo.env.insert("WHO".to_owned(), "grpc".to_owned());
    echo.working_dir = "/tmp".to_owned();
    let created =
        g.block_on(containers.create_container(echo.clone())).expect("create").into_inner();
    assert_eq!(created.state, "Created");
    let id = created.container_id;
    let info = g.container(&id).expect("get");
    assert_eq!(
        (info.name.as_str(), info.zone_name.as_str(), info.state.as_str()),
        ("echo", "z", "Created")
    );
    assert!(info.image.contains("busybox"), "{info:?}");
    assert_timestamp(&info.created_at);
    assert_eq!(info.started_at, "");
    code(g.block_on(containers.create_container(echo)), Code::AlreadyExists);
    g.block_on(async {
        let mut zones = g.zones.clone();
        let watch = zn::WatchEventsRequest { zone_name: "z".to_owned() };
        let mut events = zones.watch_events(watch).await.expect("watch").into_inner();
        let mut containers = g.containers.clone();
        let start = ctr::StartContainerRequest { container_id: id.clone() };
        containers.start_container(start).await.expect("start");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = tokio::time::timeout(left, events.message())
                .await
                .expect("container.exited within 20 s")
                .expect("events")
                .expect("events open");
            if event.event_type == "container.exited" {
                break;
            }
        }
        let get = ctr::GetContainerRequest { container_id: id.clone() };
        let info =
            containers.get_container(get).await.expect("get").into_inner().container.expect("info");
        assert_eq!(info.state, "Stopped", "right after the exit event");
        assert_eq!(info.pid, 0);
        assert_timestamp(&info.started_at);
    });

    // Logs: both streams, in order, with when each line was written; tail.
    let logs = |id: &str, tail: u32, follow: bool| ctr::ContainerLogsRequest {
        container_id: id.to_owned(),
        follow,
        tail,
    };
    let collect = |request: ctr::ContainerLogsRequest| -> Vec<ctr::ContainerLogEntry> {
        let mut containers = g.containers.clone();
        g.block_on(async move {
            let mut stream = containers.container_logs(request).await.expect("logs").into_inner();
            let mut entries = Vec::new();
            while let Some(entry) = tokio::time::timeout(Duration::from_secs(20), stream.message())
                .await
                .expect("logs end within 20 s")
                .expect("logs stream")
            {
                entries.push(entry);
            }
            entries
        })
    };
    // Separate pipes: the sleeps in the command make the order across streams definite.
    let entries = collect(logs(&id, 0, false));
    let lines: Vec<(&str, &str)> =
        entries.iter().map(|e| (e.source.as_str(), e.line.as_str())).collect();
    assert_eq!(lines, [("stdout", "hello grpc in /tmp"), ("stderr", "oops"), ("stdout", "bye")]);
    entries.iter().for_each(|e| assert_timestamp(&e.timestamp));
    let last = collect(logs(&id, 1, false));
    assert_eq!(last.iter().map(|e| e.line.as_str()).collect::<Vec<_>>(), ["bye"]);
    // Follow on a stopped container ends at once.
    assert_eq!(collect(logs(&id, 0, true)).len(), 3);

    // Follow: new lines as they come, and the stream ends when the container stops.
    let ticker = g.create_container(
        "z",
        "ticker",
        &["sh", "-c", "for i in 1 2 3; do echo tick$i; sleep 0.3; done"],
    );
    g.start_container(&ticker);
    let started = Instant::now();
    let followed = collect(logs(&ticker, 0, true));
    assert_eq!(
        followed.iter().map(|e| e.line.as_str()).collect::<Vec<_>>(),
        ["tick1", "tick2", "tick3"]
    );
    assert!(started.elapsed() >= Duration::from_millis(500), "follow waited for the lines");
    assert_eq!(g.container(&ticker).expect("ticker").state, "Stopped");

    // List, by zone and all.
    let list = |zone: &str| {
        let mut containers = g.containers.clone();
        g.block_on(
            containers.list_containers(ctr::ListContainersRequest { zone_name: zone.to_owned() }),
        )
        .map(|r| r.into_inner().containers)
    };
    assert_eq!(list("z").expect("list z").len(), 2);
    assert_eq!(list("").expect("list all").len(), 2);
    code(list("nowhere"), Code::NotFound);
    code(list("a/b"), Code::InvalidArgument);

    // Stop with a timeout, delete rules.
    let sleeper = g.create_container("z", "sleeper", &["sleep", "1000"]);
    g.start_container(&sleeper);
    let running = g.container(&sleeper).expect("sleeper");
    assert_eq!(running.state, "Running");
    assert!(running.pid > 0);
    let delete =
        |id: &str, force: bool| ctr::DeleteContainerRequest { container_id: id.to_owned(), force };
    code(
        g.block_on(containers.delete_container(delete(&sleeper, false))),
        Code::FailedPrecondition,
    );
    let started = Instant::now();
    let stop = ctr::StopContainerRequest { container_id: sleeper.clone(), timeout_seconds: 1 };
    g.block_on(containers.stop_container(stop)).expect("stop");
    assert!(started.elapsed() < Duration::from_secs(8), "SIGKILL after the 1 s timeout");
    assert_eq!(g.container(&sleeper).expect("sleeper").state, "Stopped");
    g.block_on(containers.delete_container(delete(&sleeper, false))).expect("delete stopped");
    code(g.block_on(containers.delete_container(delete(&sleeper, false))), Code::NotFound);

    // A zone with containers: FailedPrecondition without force; an image in use stays.
    let mut zones = g.zones.clone();
    let mut images = g.images.clone();
    let busy = g.create_container("z", "busy", &["sleep", "1000"]);
    g.start_container(&busy);
    let delete_zone = |force: bool| zn::DeleteZoneRequest { name: "z".to_owned(), force };
    let message = code(g.block_on(zones.delete_zone(delete_zone(false))), Code::FailedPrecondition);
    assert!(message.contains("container"), "{message}");
    let remove = img::RemoveImageRequest { reference: "busybox".to_owned() };
    code(g.block_on(images.remove(remove.clone())), Code::FailedPrecondition);
    let zone = g
        .block_on(zones.get_zone(zn::GetZoneRequest { name: "z".to_owned() }))
        .expect("zone")
        .into_inner()
        .zone
        .expect("zone");
    assert_eq!(zone.container_count, 3);
    // Force removes the zone with its running container.
    g.block_on(zones.delete_zone(delete_zone(true)))
        .unwrap_or_else(|s| panic!("force delete: {s:?}\n{}", g.d.log()));
    for id in [&id, &ticker, &busy] {
        code(g.container(id), Code::NotFound);
    }
    code(g.block_on(zones.delete_zone(delete_zone(true))), Code::NotFound);
    g.block_on(images.remove(remove.clone())).expect("remove the unused image");
    code(g.block_on(images.remove(remove)), Code::NotFound);
}

#[test]
fn exec_captures_streams_and_relays_a_tty() {
    let Some(g) = Grpc::start("grpc_exec") else { return };
    g.d.import_busybox();
    g.create_zone("z", "");
    let id = g.create_container("z", "box", &["sleep", "1000"]);
    let mut containers = g.containers.clone();
    let exec = |command: &[&str]| ctr::ExecInContainerRequest {
        container_id: id.clone(),
        command: command.iter().map(|s| s.to_string()).collect(),
        env: [("WHO".to_owned(), "exec".to_owned())].into_iter().collect(),
    };
    // Not running yet.
    code(g.block_on(containers.exec_in_container(exec(&["true"]))), Code::FailedPrecondition);
    g.start_container(&id);
    code(g.block_on(containers.exec_in_container(exec(&[]))), Code::InvalidArgument);

    let done = g
        .block_on(containers.exec_in_container(exec(&[
            "sh",
            "-c",
            "echo out $WHO; echo err >&2; exit 3",
        ])))
        .unwrap_or_else(|s| panic!("exec: {s:?}\n{}", g.d.log()));
    assert!(done.metadata().get(rauha::grpc::TRUNCATED_METADATA).is_none());
    let done = done.into_inner();
    assert_eq!(done.exit_code, 3);
    assert_eq!(String::from_utf8_lossy(&done.stdout), "out exec\n");
    assert_eq!(String::from_utf8_lossy(&done.stderr), "err\n");

    // More than the cap: kept up to it, and said so.
    let big = g
        .block_on(containers.exec_in_container(exec(&["sh", "-c", "head -c 20000000 /dev/zero"])))
        .expect("big exec");
    assert_eq!(
        big.metadata().get(rauha::grpc::TRUNCATED_METADATA).and_then(|v| v.to_str().ok()),
        Some("stdout")
    );
    let big = big.into_inner();
    assert_eq!(big.exit_code, 0);
    assert_eq!(big.stdout.len(), rauha::grpc::EXEC_CAPTURE_LIMIT);
    assert!(String::from_utf8_lossy(&big.stderr).contains("truncated"), "{:?}", big.stderr);

    let start = |command: &[&str], tty: bool| ctr::ExecStreamRequest {
        message: Some(exec_stream_request::Message::Start(ctr::ExecStreamStart {
            container_id: id.clone(),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: Default::default(),
            tty,
        })),
    };
    let stdin = |data: &str| ctr::ExecStreamRequest {
        message: Some(exec_stream_request::Message::StdinData(data.as_bytes().to_vec())),
    };
    let resize = |rows, cols| ctr::ExecStreamRequest {
        message: Some(exec_stream_request::Message::Resize(ctr::ExecStreamResize { rows, cols })),
    };
    // Runs a session; returns (stdout, stderr, messages after the exit code, exit code).
    let session = |messages: Vec<ctr::ExecStreamRequest>| {
        let mut containers = g.containers.clone();
        g.block_on(async move {
            let mut responses =
                containers.exec_stream(tokio_stream::iter(messages)).await?.into_inner();
            let (mut out, mut err, mut code, mut after) = (Vec::new(), Vec::new(), None, 0);
            while let Some(response) =
                tokio::time::timeout(Duration::from_secs(20), responses.message())
                    .await
                    .expect("exec stream ends within 20 s")?
            {
                if code.is_some() {
                    after += 1;
                }
                match response.message {
                    Some(exec_stream_response::Message::StdoutData(data)) => out.extend(data),
                    Some(exec_stream_response::Message::StderrData(data)) => err.extend(data),
                    Some(exec_stream_response::Message::ExitCode(c)) => code = Some(c),
                    None => {}
                }
            }
            Ok::<_, tonic::Status>((
                String::from_utf8_lossy(&out).into_owned(),
                String::from_utf8_lossy(&err).into_owned(),
                after,
                code,
            ))
        })
    };
    // The first message must be start.
    code(session(vec![stdin("x")]), Code::InvalidArgument);
    code(session(vec![resize(1, 1)]), Code::InvalidArgument);
    code(session(vec![]), Code::InvalidArgument);
    // Without a TTY: stdin in, stdout and stderr apart, exit code last.
    let (out, err, after, exit) = session(vec![
        start(&["sh", "-c", "cat; echo done >&2; exit 4"], false),
        stdin("hello\n"),
        stdin("world\n"),
    ])
    .unwrap_or_else(|s| panic!("exec stream: {s:?}\n{}", g.d.log()));
    assert_eq!((out.as_str(), err.as_str(), after, exit), ("hello\nworld\n", "done\n", 0, Some(4)));
    // With a TTY: resize reaches the PTY (stty reads it after the input line).
    let (out, err, after, exit) = session(vec![
        start(&["sh", "-c", "read line; stty size; exit 5"], true),
        resize(33, 120),
        stdin("go\n"),
    ])
    .unwrap_or_else(|s| panic!("exec tty: {s:?}\n{}", g.d.log()));
    assert!(out.contains("33 120"), "{out:?}");
    assert_eq!((err.as_str(), after, exit), ("", 0, Some(5)));
    // Malformed and unknown ids in start.
    for (bad, expected) in
        [("web", Code::InvalidArgument), ("6f1c1a6e-2f53-4b5e-9a56-0d8e7f3b9c21", Code::NotFound)]
    {
        let message = ctr::ExecStreamRequest {
            message: Some(exec_stream_request::Message::Start(ctr::ExecStreamStart {
                container_id: bad.to_owned(),
                command: vec!["true".to_owned()],
                ..Default::default()
            })),
        };
        code(session(vec![message]), expected);
    }
}

/// Reads an Attach stream to its end: output, the exit code, and messages after it.
async fn attach_output(
    stream: &mut tonic::Streaming<ctr::AttachResponse>,
) -> Result<(String, Option<i32>, usize), tonic::Status> {
    let (mut out, mut code, mut after) = (Vec::new(), None, 0);
    while let Some(response) = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("attach stream ends within 20 s")?
    {
        if code.is_some() {
            after += 1;
        }
        match response.message {
            Some(attach_response::Message::StdoutData(data)) => out.extend(data),
            Some(attach_response::Message::ExitCode(c)) => code = Some(c),
            None => {}
        }
    }
    Ok((String::from_utf8_lossy(&out).into_owned(), code, after))
}

#[test]
fn attach_relays_output_input_resizes_and_the_exit_code() {
    let Some(g) = Grpc::start("grpc_attach") else { return };
    g.d.import_busybox();
    g.create_zone("z", "");
    let start = |id: &str| ctr::AttachRequest {
        message: Some(attach_request::Message::Start(ctr::AttachStart {
            container_id: id.to_owned(),
        })),
    };
    let stdin = |data: &str| ctr::AttachRequest {
        message: Some(attach_request::Message::StdinData(data.as_bytes().to_vec())),
    };
    let resize = |rows, cols| ctr::AttachRequest {
        message: Some(attach_request::Message::Resize(ctr::AttachResize { rows, cols })),
    };

    // Attached before it starts: everything it writes, stderr in stdout_data, exit code last.
    let id =
        g.create_container("z", "talker", &["sh", "-c", "sleep 1; echo out; echo err >&2; exit 3"]);
    let (output, exit, after) = g
        .block_on({
            let mut containers = g.containers.clone();
            let id = id.clone();
            async move {
                let mut stream =
                    containers.attach(tokio_stream::iter(vec![start(&id)])).await?.into_inner();
                let request = ctr::StartContainerRequest { container_id: id };
                containers.start_container(request).await?;
                attach_output(&mut stream).await
            }
        })
        .unwrap_or_else(|s| panic!("attach: {s:?}\n{}", g.d.log()));
    assert!(output.contains("out\n") && output.contains("err\n"), "{output:?}");
    assert_eq!((exit, after), (Some(3), 0));

    // A running interactive container with a TTY: input and a resize reach it.
    g.d.ok(&["run", "-d", "-it", "--zone", "z", "--name", "shell", "busybox", "sh"]);
    let shell: serde_json::Value =
        serde_json::from_str(&g.d.ok(&["inspect", "shell"])).expect("inspect json");
    let shell_id = shell[0]["id"].as_str().expect("id").to_owned();
    let (output, exit, after) = g
        .block_on({
            let mut containers = g.containers.clone();
            let messages = vec![start(&shell_id), resize(33, 120), stdin("stty size; exit 7\n")];
            async move {
                let mut stream =
                    containers.attach(tokio_stream::iter(messages)).await?.into_inner();
                attach_output(&mut stream).await
            }
        })
        .unwrap_or_else(|s| panic!("attach tty: {s:?}\n{}", g.d.log()));
    assert!(output.contains("33 120"), "{output:?}");
    assert_eq!((exit, after), (Some(7), 0));

    // Leaving (dropping the stream) detaches; the container runs on.
    let sleeper = g.create_container("z", "sleeper", &["sleep", "1000"]);
    g.start_container(&sleeper);
    g.block_on({
        let mut containers = g.containers.clone();
        let messages = vec![start(&sleeper)];
        async move {
            let stream = containers.attach(tokio_stream::iter(messages)).await?.into_inner();
            drop(stream);
            Ok::<_, tonic::Status>(())
        }
    })
    .expect("attach and leave");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(g.container(&sleeper).expect("sleeper").state, "Running");

    // Status codes: start first, ids, and a stopped container.
    let attach = |messages: Vec<ctr::AttachRequest>| {
        let mut containers = g.containers.clone();
        g.block_on(async move {
            let mut stream = containers.attach(tokio_stream::iter(messages)).await?.into_inner();
            attach_output(&mut stream).await
        })
    };
    code(attach(vec![stdin("x")]), Code::InvalidArgument);
    code(attach(vec![resize(1, 1)]), Code::InvalidArgument);
    code(attach(vec![]), Code::InvalidArgument);
    code(attach(vec![start("web")]), Code::InvalidArgument);
    code(attach(vec![start(&uuid::Uuid::new_v4().to_string())]), Code::NotFound);
    code(attach(vec![start(&id)]), Code::FailedPrecondition);
}

#[test]
fn images_list_inspect_remove_and_pull_from_a_local_registry() {
    let registry_dir = tempfile::Builder::new().prefix("rauha-grpc-reg-").tempdir().expect("dir");
    let registries = registry_dir.path().join("registries.toml");
    std::fs::write(
        &registries,
        "[registries.\"docker.io\"]\nmirrors = [\"127.0.0.1:5000\"]\n[registries.\"127.0.0.1:5000\"]\ninsecure = true\n",
    )
    .expect("registries.toml");
    let Some(g) = Grpc::start_with(
        "grpc_images",
        &["--registries", registries.to_str().expect("utf-8")],
        None,
    ) else {
        return;
    };
    g.d.import_busybox();
    let mut images = g.images.clone();
    let listed =
        g.block_on(images.list(img::ListImagesRequest {})).expect("list").into_inner().images;
    assert_eq!(listed.len(), 1);
    let busybox = &listed[0];
    assert_eq!(busybox.tags, ["docker.io/library/busybox:latest"]);
    assert!(busybox.digest.starts_with("sha256:") && busybox.size > 0, "{busybox:?}");
    let inspect = |reference: &str| {
        let mut images = g.images.clone();
        g.block_on(images.inspect(img::InspectImageRequest { reference: reference.to_owned() }))
            .map(|r| r.into_inner())
    };
    let inspected = inspect("busybox").expect("inspect");
    assert_eq!(inspected.digest, busybox.digest);
    assert_eq!(inspected.tags, busybox.tags);
    assert_eq!(inspected.size, busybox.size);
    assert!(
        !inspected.layers.is_empty() && inspected.layers.iter().all(|l| l.starts_with("sha256:"))
    );
    assert!(inspected.config_json.contains("\"Cmd\""), "{}", inspected.config_json);
    assert_eq!(
        inspect("docker.io/library/busybox:latest").expect("full form").digest,
        busybox.digest
    );
    code(inspect("nosuch"), Code::NotFound);
    code(inspect("Bad Reference!"), Code::InvalidArgument);

    // A real registry on loopback in the daemon's netns, holding busybox as library/pullme.
    let registry = Registry::start(&g.d, registry_dir.path());
    registry.push(&g.d, "library/pullme:latest");
    let pull = |reference: &str| {
        let mut images = g.images.clone();
        g.block_on(async move {
            let mut stream = images
                .pull(img::PullRequest { reference: reference.to_owned() })
                .await?
                .into_inner();
            let mut messages = Vec::new();
            while let Some(message) =
                tokio::time::timeout(Duration::from_secs(60), stream.message())
                    .await
                    .expect("pull ends within 60 s")?
            {
                messages.push(message);
            }
            Ok::<_, tonic::Status>(messages)
        })
    };
    let progress = pull("pullme").unwrap_or_else(|s| panic!("pull: {s:?}\n{}", g.d.log()));
    let (last, before) = progress.split_last().expect("progress");
    assert!(last.done, "{last:?}");
    assert!(before.iter().all(|p| !p.done && !p.status.is_empty()), "{before:?}");
    assert!(!before.is_empty(), "progress before done");
    // Same content as the imported busybox: one image, now with both tags.
    let pulled = inspect("pullme").expect("pulled");
    assert!(pulled.tags.contains(&"docker.io/library/pullme:latest".to_owned()), "{pulled:?}");
    // Failures end the stream with a status.
    code(pull("127.0.0.1:5000/library/pullme:nosuchtag"), Code::NotFound);
    code(pull("127.0.0.1:5000/library/nosuchrepo:latest"), Code::NotFound);
    code(pull("127.0.0.1:1/x/y:latest"), Code::Unavailable);
    code(pull("Bad Reference!"), Code::InvalidArgument);
    let remove = img::RemoveImageRequest { reference: "pullme".to_owned() };
    g.block_on(images.remove(remove.clone())).expect("remove");
    code(g.block_on(images.remove(remove)), Code::NotFound);
    code(inspect("pullme"), Code::NotFound);
}

/// `docker-registry` serving a directory on 127.0.0.1:5000 inside the daemon's netns.
struct Registry {
    child: std::process::Child,
}

impl Registry {
    fn start(d: &TestDaemon, dir: &Path) -> Self {
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:5000\n",
                dir.join("data").display()
            ),
        )
        .expect("registry config");
        let child = d
            .netns
            .command("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let probe = d
                .netns
                .command("busybox")
                .args(["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:5000/v2/"])
                .status();
            if probe.is_ok_and(|s| s.success()) {
                break;
            }
            assert!(Instant::now() < deadline, "registry not up in 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child }
    }

    fn push(&self, d: &TestDaemon, name: &str) {
        let layout = d.dir.path().join("busybox-layout");
        let out = d
            .netns
            .command("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://127.0.0.1:5000/{name}"))
            .output()
            .expect("run skopeo");
        assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn token_auth_refuses_missing_and_wrong_tokens() {
    let dir = tempfile::Builder::new().prefix("rauha-grpc-tok-").tempdir().expect("dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").expect("token");
    let Some(g) = Grpc::start_with(
        "grpc_token",
        &["--grpc-token-file", token_file.to_str().expect("utf-8")],
        Some("s3cret-token"),
    ) else {
        return;
    };
    let mut zones = g.zones.clone();
    g.block_on(zones.list_zones(zn::ListZonesRequest {})).expect("the right token works");
    for token in [None, Some("wrong"), Some("s3cret-token ")] {
        let (mut zones, mut containers, _) = g.block_on(clients(&g.addr, token));
        code(g.block_on(zones.list_zones(zn::ListZonesRequest {})), Code::Unauthenticated);
        // Streaming calls too.
        let watch = zn::WatchEventsRequest { zone_name: String::new() };
        code(g.block_on(zones.watch_events(watch)).map(|_| ()), Code::Unauthenticated);
        let logs = ctr::ContainerLogsRequest {
            container_id: uuid::Uuid::new_v4().to_string(),
            follow: false,
            tail: 0,
        };
        code(g.block_on(containers.container_logs(logs)).map(|_| ()), Code::Unauthenticated);
    }
}

#[test]
fn tcp_on_loopback_and_flag_rules() {
    let Some(d) = TestDaemon::start_with("grpc_tcp", &["--grpc-listen", "127.0.0.1:9876"]) else {
        return;
    };
    // The daemon listens in its own netns: connect from a thread that joined it.
    let pid = d.pid().expect("daemon pid");
    let names = std::thread::spawn(move || {
        let netns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("daemon netns");
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&netns),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns");
        let rt = runtime();
        rt.block_on(async {
            let addr = ListenAddr::Tcp("127.0.0.1:9876".parse().expect("addr"));
            let (mut zones, _, _) = clients(&addr, None).await;
            let request = zn::CreateZoneRequest { name: "over-tcp".into(), ..Default::default() };
            zones.create_zone(request).await.expect("create over TCP");
            let zones = zones.list_zones(zn::ListZonesRequest {}).await.expect("list").into_inner();
            zones.zones.into_iter().map(|z| z.name).collect::<Vec<_>>()
        })
    })
    .join()
    .expect("tcp client thread");
    assert_eq!(names, ["over-tcp"]);
    assert!(d.log().contains("any local user can drive the daemon"), "{}", d.log());
    drop(d);

    // Non-loopback without --grpc-allow-remote, bad addresses, token file without listen:
    // the daemon refuses to start and says why.
    for (args, expected) in [
        (vec!["--grpc-listen", "0.0.0.0:9876"], "--grpc-allow-remote"),
        (vec!["--grpc-listen", "localhost:9876"], "unix:PATH"),
        (vec!["--grpc-token-file", "/nonexistent"], "need --grpc-listen"),
        (
            vec!["--grpc-listen", "unix:/tmp/x.sock", "--grpc-token-file", "/nonexistent/token"],
            "/nonexistent/token",
        ),
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let out = std::process::Command::new(harness::RAUHA)
            .arg("daemon")
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--run-dir")
            .arg(dir.path().join("run"))
            .arg("--cgroup-parent")
            .arg(harness::unique_cgroup_parent("flags"))
            .args(&args)
            .output()
            .expect("run daemon");
        assert!(!out.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn twenty_concurrent_clients_create_and_delete_zones_without_errors_or_leaks() {
    let Some(g) = Grpc::start("grpc_concurrent") else { return };
    const CLIENTS: usize = 20;
    const ROUNDS: usize = 5;
    let addr = g.addr.clone();
    let errors: Vec<String> = g.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let addr = addr.clone();
                tokio::spawn(async move {
                    // Each client its own connection.
                    let (mut zones, _, _) = clients(&addr, None).await;
                    let mut errors = Vec::new();
                    for round in 0..ROUNDS {
                        let name = format!("c{client}-r{round}");
                        let request =
                            zn::CreateZoneRequest { name: name.clone(), ..Default::default() };
                        if let Err(s) = zones.create_zone(request).await {
                            errors.push(format!("create {name}: {s:?}"));
                        }
                        let delete = zn::DeleteZoneRequest { name: name.clone(), force: false };
                        if let Err(s) = zones.delete_zone(delete).await {
                            errors.push(format!("delete {name}: {s:?}"));
                        }
                    }
                    errors
                })
            })
            .collect();
        let mut errors = Vec::new();
        for task in tasks {
            errors.extend(task.await.expect("client task"));
        }
        errors
    });
    assert!(errors.is_empty(), "{errors:#?}\n{}", g.d.log());
    let mut zones = g.zones.clone();
    let left = g.block_on(zones.list_zones(zn::ListZonesRequest {})).expect("list").into_inner();
    assert!(left.zones.is_empty(), "{left:?}");
    // No kernel objects left behind: only the parent remains under the daemon's cgroup tree
    // (the harness checks the rest when it drops the daemon).
    let unified = g.d.cgroup_dir("", "");
    let leftover: Vec<PathBuf> = std::fs::read_dir(&unified)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir()
                        && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("zone-"))
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(leftover.is_empty(), "{leftover:?}");
}
