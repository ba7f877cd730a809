//! Image operations: thin mappings onto the image service, plus the pull job whose progress
//! travels to the client through a pipe handed over on the fd channel.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use async_compat::Compat;

use super::Daemon;
use super::error::RequestError;
use crate::image::{ImageRecord, PruneReport};
use crate::rpc::{ApiError, ImageInfo, PruneSummary, PullEvent, Ticket};

impl From<&ImageRecord> for ImageInfo {
    fn from(record: &ImageRecord) -> Self {
        ImageInfo {
            digest: record.digest.clone(),
            tags: record.tags.clone(),
            size: record.size,
            created_at: record.created_at.clone(),
            platform: record.platform.clone(),
            layers: record.layers.clone(),
            config_json: record.config_json.clone(),
        }
    }
}

impl From<PruneReport> for PruneSummary {
    fn from(report: PruneReport) -> Self {
        PruneSummary {
            images_removed: report.images_removed,
            blobs_removed: report.blobs_removed,
            layers_removed: report.layers_removed,
            bytes_freed: report.bytes_freed,
        }
    }
}

/// Write one event as a JSON line. Progress may be dropped when the client is slow (the pipe
/// is non-blocking then); the final event is written by [`finish`] in blocking mode.
fn send(pipe: &OwnedFd, event: &PullEvent) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
    line.push(b'\n');
    std::fs::File::from(pipe.try_clone()?).write_all(&line)
}

fn finish(pipe: &OwnedFd, event: &PullEvent) {
    if let Err(error) = rustix::fs::fcntl_setfl(pipe, rustix::fs::OFlags::empty())
        .map_err(std::io::Error::from)
        .and_then(|()| send(pipe, event))
    {
        tracing::debug!(%error, "pull client went away before the result");
    }
}

impl Daemon {
    fn in_use(&self, record: &ImageRecord) -> bool {
        self.containers().values().any(|c| c.image_digest == record.digest)
    }

    /// Start a pull in the background; progress and result go to the ticket's pipe.
    pub fn pull_image(
        self: &Arc<Self>,
        reference: String,
        platform: Option<String>,
    ) -> Result<Ticket, RequestError> {
        // Reject a malformed reference before starting anything.
        reference.parse::<crate::image::Reference>().map_err(RequestError::from)?;
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| RequestError::Io { path: "pipe".into(), source: e.into() })?;
        rustix::fs::fcntl_setfl(&write, rustix::fs::OFlags::NONBLOCK)
            .map_err(|e| RequestError::Io { path: "pipe".into(), source: e.into() })?;
        let ticket = self.park_fds(vec![read]);
        let images = self.images.clone();
        let write = Arc::new(write);
        smol::spawn(Compat::new(async move {
            let progress_pipe = Arc::clone(&write);
            let result = images
                .pull(&reference, platform.as_deref(), move |p| {
                    let event = PullEvent::Progress {
                        status: p.status,
                        layer: p.layer,
                        current: p.current,
                        total: p.total,
                    };
                    // A slow reader loses progress lines, never the pull.
                    let _ = send(&progress_pipe, &event);
                })
                .await;
            let event = match result {
                Ok(record) => {
                    tracing::info!(image = %reference, digest = %record.digest, "image pulled");
                    PullEvent::Done(ImageInfo::from(&record))
                }
                Err(error) => {
                    tracing::warn!(image = %reference, %error, "pull failed");
                    PullEvent::Failed(ApiError::from(RequestError::from(error)))
                }
            };
            smol::unblock(move || finish(&write, &event)).await;
        }))
        .detach();
        Ok(ticket)
    }

    pub fn import_image(
        &self,
        path: &str,
        tag: Option<&str>,
    ) -> Result<Vec<ImageInfo>, RequestError> {
        let records = self.images.import(Path::new(path), tag).map_err(RequestError::from)?;
        Ok(records.iter().map(ImageInfo::from).collect())
    }

    pub fn list_images(&self) -> Result<Vec<ImageInfo>, RequestError> {
        Ok(self.images.list().map_err(RequestError::from)?.iter().map(ImageInfo::from).collect())
    }

    pub fn inspect_image(&self, reference: &str) -> Result<ImageInfo, RequestError> {
        Ok(ImageInfo::from(&self.images.inspect(reference).map_err(RequestError::from)?))
    }

    pub fn remove_image(&self, reference: &str) -> Result<(), RequestError> {
        self.images.remove(reference, |record| self.in_use(record)).map_err(RequestError::from)
    }

    pub fn prune_images(&self) -> Result<PruneSummary, RequestError> {
        Ok(self.images.prune(|record| self.in_use(record)).map_err(RequestError::from)?.into())
    }
}
