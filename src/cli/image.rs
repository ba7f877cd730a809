//! `rauha image …`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use argh::FromArgs;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::{CliError, context, output};
use crate::rpc::{self, ImageInfo, PullEvent, RauhaClient};

/// Pull, import, list, inspect and remove images.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "image")]
pub struct ImageCommand {
    #[argh(subcommand)]
    action: ImageAction,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum ImageAction {
    Pull(Pull),
    Import(Import),
    Ls(Ls),
    Inspect(Inspect),
    Rm(Rm),
    Prune(Prune),
}

/// Pull an image from its registry (or a configured mirror) into the local store.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "pull")]
struct Pull {
    /// image reference: alpine, docker.io/library/alpine:latest, host:port/repo@sha256:…
    #[argh(positional)]
    reference: String,
    /// platform to pick from a multi-platform image, e.g. linux/arm64 (default: this host's)
    #[argh(option)]
    platform: Option<String>,
    /// print only the image digest
    #[argh(switch, short = 'q')]
    quiet: bool,
}

/// Import an OCI image layout (directory or tar) or a `docker save` tarball.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "import")]
struct Import {
    /// path of the layout directory or archive
    #[argh(positional)]
    path: String,
    /// tag the imported image with this reference
    #[argh(option)]
    tag: Option<String>,
}

/// List images.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "ls")]
struct Ls {
    /// print JSON instead of a table
    #[argh(switch)]
    json: bool,
}

/// Show an image's digest, tags, size, config, layers and platform, as JSON.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "inspect")]
struct Inspect {
    /// image reference or digest
    #[argh(positional)]
    reference: String,
}

/// Remove an image tag, and the image with its last tag; refused while a container uses it.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "rm")]
struct Rm {
    /// image reference or digest
    #[argh(positional)]
    reference: String,
}

/// Remove untagged unused images, unreferenced blobs and unpacked layers.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "prune")]
struct Prune {}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

/// Pull `reference`, showing progress (bars on a terminal, lines otherwise, nothing when quiet).
pub async fn pull(
    client: &RauhaClient,
    socket: &Path,
    reference: &str,
    platform: Option<String>,
    quiet: bool,
) -> Result<ImageInfo, CliError> {
    let ticket = client.image_pull(context(), reference.to_owned(), platform).await??;
    let socket = socket.to_owned();
    // The pipe is read on a blocking thread; the pull itself runs in the daemon.
    smol::unblock(move || {
        let mut fds = rpc::fds::claim(&socket, ticket)?;
        let pipe = fds.pop().ok_or(CliError::MissingStream("pull progress"))?;
        let bars = std::io::stderr().is_terminal() && !quiet;
        let multi = MultiProgress::new();
        let mut layers: HashMap<String, ProgressBar> = HashMap::new();
        let style = ProgressStyle::with_template(
            "{prefix:>12} {bar:30} {bytes:>10}/{total_bytes:<10} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        for line in BufReader::new(std::fs::File::from(pipe)).lines() {
            let line = line.map_err(CliError::ReadLog)?;
            let event: PullEvent = serde_json::from_str(&line)?;
            match event {
                PullEvent::Progress { status, layer, current, total } => {
                    if quiet {
                        continue;
                    }
                    if !bars {
                        let layer =
                            if layer.is_empty() { String::new() } else { format!("{layer}: ") };
                        eprintln!("{layer}{status} {current}/{total}");
                        continue;
                    }
                    if layer.is_empty() {
                        let _ = multi.println(&status);
                        continue;
                    }
                    let bar = layers.entry(layer.clone()).or_insert_with(|| {
                        let bar = multi.add(ProgressBar::new(total));
                        bar.set_style(style.clone());
                        bar.set_prefix(layer.clone());
                        bar
                    });
                    bar.set_length(total);
                    bar.set_position(current);
                    bar.set_message(status);
                }
                PullEvent::Done(image) => {
                    for bar in layers.values() {
                        bar.finish();
                    }
                    return Ok(image);
                }
                PullEvent::Failed(error) => return Err(CliError::Api(error)),
            }
        }
        Err(CliError::MissingStream("pull result"))
    })
    .await
}

pub async fn image(
    client: &RauhaClient,
    socket: &Path,
    command: ImageCommand,
) -> Result<ExitCode, CliError> {
    match command.action {
        ImageAction::Pull(Pull { reference, platform, quiet }) => {
            let image = pull(client, socket, &reference, platform, quiet).await?;
            if quiet {
                println!("{}", image.digest);
            } else {
                println!(
                    "pulled {} ({})",
                    image.tags.first().map(String::as_str).unwrap_or(&reference),
                    image.digest
                );
            }
        }
        ImageAction::Import(Import { path, tag }) => {
            // The daemon opens the path, so make it mean what it means here.
            let path = std::fs::canonicalize(&path)
                .map_err(|source| CliError::ReadFile { path: path.into(), source })?;
            let images = client.image_import(context(), path.display().to_string(), tag).await??;
            for image in images {
                println!("imported {} ({})", image.tags.join(", "), image.digest);
            }
        }
        ImageAction::Ls(Ls { json }) => {
            let images = client.image_list(context()).await??;
            if json {
                println!("{}", serde_json::to_string_pretty(&images)?);
            } else {
                let mut rows = Vec::new();
                for image in images {
                    let tags = if image.tags.is_empty() {
                        vec!["<none>".to_owned()]
                    } else {
                        image.tags.clone()
                    };
                    for tag in tags {
                        rows.push(vec![
                            tag,
                            short(&image.digest).to_owned(),
                            image.platform.clone(),
                            output::bytes(image.size),
                            image.created_at.clone(),
                        ]);
                    }
                }
                output::table(&["REFERENCE", "DIGEST", "PLATFORM", "SIZE", "CREATED"], &rows);
            }
        }
        ImageAction::Inspect(Inspect { reference }) => {
            let image = client.image_inspect(context(), reference).await??;
            let mut value = serde_json::to_value(&image)?;
            // Show the config as the JSON it is, not as a string of it.
            if let Ok(config) = serde_json::from_str::<serde_json::Value>(&image.config_json) {
                value["config"] = config;
                if let Some(object) = value.as_object_mut() {
                    object.remove("config_json");
                }
            }
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        ImageAction::Rm(Rm { reference }) => {
            client.image_remove(context(), reference.clone()).await??;
            println!("{reference}");
        }
        ImageAction::Prune(Prune {}) => {
            let summary = client.image_prune(context()).await??;
            println!(
                "removed {} image(s), {} blob(s), {} unpacked layer(s); freed {}",
                summary.images_removed.len(),
                summary.blobs_removed,
                summary.layers_removed,
                output::bytes(summary.bytes_freed)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
