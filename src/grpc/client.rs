//! Connecting a tonic client to the facade: over a Unix socket (`unix:PATH`) or TCP, with an
//! optional bearer token. Used by the integration tests and the benchmark; external Rust
//! clients can use it too.

use hyper_util::rt::TokioIo;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Status};

use super::ListenAddr;

/// A channel to the facade at `addr`. The Unix path needs a placeholder URI for HTTP/2's
/// `:authority`; the connector ignores it.
pub async fn connect(addr: &ListenAddr) -> Result<Channel, tonic::transport::Error> {
    match addr {
        ListenAddr::Tcp(addr) => {
            Endpoint::from_shared(format!("http://{addr}"))?.tcp_nodelay(true).connect().await
        }
        ListenAddr::Unix(path) => {
            let path = path.clone();
            Endpoint::from_static("http://localhost")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move { tokio::net::UnixStream::connect(path).await.map(TokioIo::new) }
                }))
                .await
        }
    }
}

/// Adds `authorization: Bearer <token>` to every call (none without a token).
#[derive(Clone, Default)]
pub struct BearerToken(pub Option<String>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            let value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
                Status::invalid_argument("the token cannot be sent as a header value")
            })?;
            request.metadata_mut().insert(super::AUTHORIZATION, value);
        }
        Ok(request)
    }
}
