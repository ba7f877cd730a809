//! `rauha.image.v1.ImageService` onto the daemon's image operations. A pull's progress comes
//! from the same pipe of JSON lines the CLI reads.

use std::io::BufRead;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::proto::image::image_service_server::ImageService;
use super::proto::image::*;
use super::{blocking, status};
use crate::daemon::Daemon;
use crate::rpc::{ApiError, ErrorKind, PullEvent};

/// The image service: a handle on the daemon.
pub struct ImageApi {
    daemon: Arc<Daemon>,
}

impl ImageApi {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        Self { daemon }
    }
}

type PullStream = Pin<Box<dyn Stream<Item = Result<PullProgress, Status>> + Send>>;

#[tonic::async_trait]
impl ImageService for ImageApi {
    type PullStream = PullStream;

    async fn pull(&self, request: Request<PullRequest>) -> Result<Response<PullStream>, Status> {
        let reference = request.into_inner().reference;
        // A malformed reference fails here, before the stream starts.
        let pipe = blocking(&self.daemon, move |d| {
            let ticket = d.pull_image(reference.clone(), None).map_err(ApiError::from)?;
            let mut fds = d.claim_fds(ticket).map_err(|reason| {
                ApiError::new(
                    ErrorKind::Internal,
                    format!("pull {reference}: claim progress: {reason}"),
                )
            })?;
            fds.pop().ok_or_else(|| {
                ApiError::new(ErrorKind::Internal, format!("pull {reference}: no progress pipe"))
            })
        })
        .await?;
        let (sender, receiver) = mpsc::channel(64);
        tokio::task::spawn_blocking(move || relay_pull(pipe, &sender));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn list(
        &self,
        _: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let images = blocking(&self.daemon, |d| d.list_images()).await?;
        let images = images
            .into_iter()
            .map(|image| ImageInfo {
                digest: image.digest,
                tags: image.tags,
                size: image.size,
                created_at: image.created_at,
            })
            .collect();
        Ok(Response::new(ListImagesResponse { images }))
    }

    async fn remove(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        let reference = request.into_inner().reference;
        blocking(&self.daemon, move |d| d.remove_image(&reference)).await?;
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn inspect(
        &self,
        request: Request<InspectImageRequest>,
    ) -> Result<Response<InspectImageResponse>, Status> {
        let reference = request.into_inner().reference;
        let image = blocking(&self.daemon, move |d| d.inspect_image(&reference)).await?;
        Ok(Response::new(InspectImageResponse {
            digest: image.digest,
            tags: image.tags,
            size: image.size,
            config_json: image.config_json,
            layers: image.layers,
        }))
    }
}

/// Turn the pull's JSON lines into messages: progress, then `done = true` or the failure's
/// status. A pipe that ends without either is a fault of the daemon.
fn relay_pull(pipe: std::os::fd::OwnedFd, sender: &mpsc::Sender<Result<PullProgress, Status>>) {
    let reader = std::io::BufReader::new(std::fs::File::from(pipe));
    for line in reader.lines() {
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                let _ = sender
                    .blocking_send(Err(Status::internal(format!("pull: read progress: {error}"))));
                return;
            }
        };
        let message = match serde_json::from_str::<PullEvent>(&line) {
            Ok(PullEvent::Progress { status, layer, current, total }) => {
                // The contract promises non-empty statuses.
                if status.is_empty() {
                    continue;
                }
                Ok(PullProgress { status, layer, current, total, done: false })
            }
            Ok(PullEvent::Done(image)) => {
                let _ = sender.blocking_send(Ok(PullProgress {
                    status: format!("pulled {}", image.digest),
                    layer: String::new(),
                    current: image.size,
                    total: image.size,
                    done: true,
                }));
                return;
            }
            Ok(PullEvent::Failed(error)) => {
                let _ = sender.blocking_send(Err(status(error)));
                return;
            }
            Err(error) => Err(Status::internal(format!("pull: unreadable progress line: {error}"))),
        };
        let failed = message.is_err();
        // A client that went away stops the relay; the pull itself finishes in the daemon.
        if sender.blocking_send(message).is_err() || failed {
            return;
        }
    }
    let _ = sender
        .blocking_send(Err(Status::internal("pull: the progress pipe closed without a result")));
}
