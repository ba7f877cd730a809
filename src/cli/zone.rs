//! `rauha zone …` and `rauha policy …`.

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

use super::{CliError, context, output};
use crate::rpc::{IsolationReport, RauhaClient, ZoneCreateRequest};

/// Create, list, inspect, delete and measure zones.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "zone")]
pub struct ZoneCommand {
    #[argh(subcommand)]
    action: ZoneAction,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum ZoneAction {
    Create(Create),
    List(List),
    Inspect(Inspect),
    Delete(Delete),
    Stats(Stats),
    Verify(Verify),
}

/// Create a zone: a cgroup with the policy's limits, and the policy that governs it.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "create")]
struct Create {
    /// zone name: 1-128 bytes of UTF-8, no '/', '\', NUL or control characters, not . or ..
    #[argh(option)]
    name: String,
    /// zone type: non-global (default) or privileged
    #[argh(option, long = "type")]
    zone_type: Option<String>,
    /// policy TOML file (see `rauha policy show`); default: the built-in default policy
    #[argh(option)]
    policy: Option<PathBuf>,
    /// print the created zone as JSON
    #[argh(switch)]
    json: bool,
}

/// List zones.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
struct List {
    /// print JSON instead of a table
    #[argh(switch)]
    json: bool,
}

/// Show everything about one zone, as JSON.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "inspect")]
struct Inspect {
    /// zone name
    #[argh(positional)]
    name: String,
}

/// Delete a zone and every kernel object it owns.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "delete")]
struct Delete {
    /// zone name
    #[argh(positional)]
    name: String,
    /// stop and remove the zone's containers first
    #[argh(switch, short = 'f')]
    force: bool,
}

/// Live resource usage and limits of a zone, read from its cgroups.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "stats")]
struct Stats {
    /// zone name
    #[argh(positional)]
    name: String,
    /// print JSON instead of text
    #[argh(switch)]
    json: bool,
}

/// Attack the zone's boundaries from inside it and report which held, and by which layers.
/// The probes run in a transient process with exactly the zone's container confinement (its
/// namespaces, a child of its cgroup, seccomp, Landlock, capabilities), from this executable
/// itself, so they need no image; they try to see, signal and ptrace a process outside the zone
/// (another zone's when one runs), open and exec its files and files planted on the host,
/// write a foreign cgroup.procs, mount, load a module, write a sysctl, open a device the policy
/// does not allow and connect to addresses it does not allow, and check that its namespaces
/// and cgroup limits are the policy's. A check passes only if the attack was denied. Exits 0
/// when every required boundary held, 1 when one did not.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "verify")]
struct Verify {
    /// zone name
    #[argh(positional)]
    name: String,
    /// print the report as JSON instead of tables
    #[argh(switch)]
    json: bool,
}

/// Apply and show zone policies.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "policy")]
pub struct PolicyCommand {
    #[argh(subcommand)]
    action: PolicyAction,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum PolicyAction {
    Apply(Apply),
    Show(Show),
}

/// Validate a policy file and apply it to a zone in place. Limits and network rules change
/// live; capabilities, syscalls, writable paths and devices bind when a process starts.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "apply")]
struct Apply {
    /// zone name
    #[argh(option)]
    zone: String,
    /// policy TOML file
    #[argh(positional)]
    file: PathBuf,
}

/// Print a zone's effective policy: every key, defaults filled in. Re-applying it is a no-op.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "show")]
struct Show {
    /// zone name
    #[argh(option)]
    zone: String,
}

fn read_file(path: &PathBuf) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|source| CliError::ReadFile { path: path.clone(), source })
}

pub async fn zone(client: &RauhaClient, command: ZoneCommand) -> Result<ExitCode, CliError> {
    match command.action {
        ZoneAction::Create(create) => {
            let policy_toml =
                create.policy.as_ref().map(read_file).transpose()?.unwrap_or_default();
            let request = ZoneCreateRequest {
                name: create.name,
                zone_type: create.zone_type.unwrap_or_default(),
                policy_toml,
            };
            let zone = client.zone_create(context(), request).await??;
            if create.json {
                println!("{}", serde_json::to_string_pretty(&zone)?);
            } else {
                println!("{}", zone.id);
            }
        }
        ZoneAction::List(List { json }) => {
            let zones = client.zone_list(context()).await??;
            if json {
                println!("{}", serde_json::to_string_pretty(&zones)?);
            } else {
                let rows: Vec<Vec<String>> = zones
                    .into_iter()
                    .map(|z| {
                        vec![
                            z.name,
                            z.id,
                            z.zone_type,
                            z.state,
                            z.container_count.to_string(),
                            z.created_at,
                        ]
                    })
                    .collect();
                output::table(&["NAME", "ID", "TYPE", "STATE", "CONTAINERS", "CREATED"], &rows);
            }
        }
        ZoneAction::Inspect(Inspect { name }) => {
            let zone = client.zone_get(context(), name.clone()).await??;
            let policy = client.policy_get(context(), name).await??;
            let mut value = serde_json::to_value(&zone)?;
            value["policy_toml"] = serde_json::Value::String(policy);
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        ZoneAction::Delete(Delete { name, force }) => {
            client.zone_delete(context(), name.clone(), force).await??;
            println!("{name}");
        }
        ZoneAction::Stats(Stats { name, json }) => {
            let stats = client.zone_stats(context(), name).await??;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                println!("Zone:        {}", stats.zone_id);
                println!("Containers:  {}", stats.container_count);
                println!(
                    "CPU:         {:.1}% ({} µs total)",
                    stats.cpu_usage_percent, stats.cpu_usage_usec
                );
                println!(
                    "Memory:      {} / {}",
                    output::bytes(stats.memory_usage_bytes),
                    output::limit(stats.memory_limit_bytes, output::bytes)
                );
                println!(
                    "PIDs:        {} / {}",
                    stats.pids_current,
                    output::limit(stats.pids_max, |n| n.to_string())
                );
                println!("OOM kills:   {}", stats.oom_kills);
                println!(
                    "Network:     rx {} tx {}",
                    output::bytes(stats.network_rx_bytes),
                    output::bytes(stats.network_tx_bytes)
                );
            }
        }
        ZoneAction::Verify(Verify { name, json }) => {
            let report = client.zone_verify(context(), name).await??;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
            }
            if !report.is_isolated {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The verify report as two tables: checks, then layers.
fn print_report(report: &IsolationReport) {
    let ran = report.checks.iter().filter(|c| c.skipped.is_empty()).count();
    if report.is_isolated {
        println!(
            "zone {}: ISOLATED: every required boundary held ({ran} checks ran, {} skipped)",
            report.zone,
            report.checks.len() - ran
        );
    } else {
        println!("zone {}: NOT ISOLATED: not held: {}", report.zone, report.not_held().join(", "));
    }
    println!();
    let rows: Vec<Vec<String>> = report
        .checks
        .iter()
        .map(|c| {
            let result = match (c.skipped.is_empty(), c.passed, c.required) {
                (false, _, _) => "skipped",
                (true, true, _) => "held",
                (true, false, true) => "NOT HELD",
                (true, false, false) => "open by policy",
            };
            vec![
                c.name.clone(),
                c.boundary.clone(),
                result.to_owned(),
                output::or_none(&c.held_by.join(",")).to_owned(),
                c.detail.clone(),
            ]
        })
        .collect();
    output::table(&["CHECK", "BOUNDARY", "RESULT", "HELD BY", "DETAIL"], &rows);
    println!();
    let rows: Vec<Vec<String>> = report
        .layers
        .iter()
        .map(|l| {
            let state = if l.active { "active" } else { "inactive" };
            vec![l.name.clone(), state.to_owned(), l.reason.clone()]
        })
        .collect();
    output::table(&["LAYER", "STATE", "WHY NOT"], &rows);
}

pub async fn policy(client: &RauhaClient, command: PolicyCommand) -> Result<ExitCode, CliError> {
    match command.action {
        PolicyAction::Apply(Apply { zone, file }) => {
            let text = read_file(&file)?;
            let applied = client.policy_apply(context(), zone.clone(), text).await??;
            println!("policy applied to zone {zone}");
            let list = |items: &[String]| output::or_none(&items.join(", ")).to_owned();
            println!("  live:          {}", list(&applied.applied_live));
            println!("  on next start: {}", list(&applied.on_next_start));
            if !applied.unavailable.is_empty() {
                println!("  not enforceable on this host: {}", applied.unavailable.join("; "));
            }
        }
        PolicyAction::Show(Show { zone }) => {
            print!("{}", client.policy_get(context(), zone).await??);
        }
    }
    Ok(ExitCode::SUCCESS)
}
