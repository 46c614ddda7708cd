//! Attachments over plain HTTP, on a port of their own: file bytes never
//! cross Redis or a WebSocket, and the gateways stay stateless.
//!
//! - `POST /files?name=<file name>`: [`upload`], streamed into GridFS.
//! - `GET /files/<id>` and `GET /files/<id>/thumbnail`: [`download`].
//!
//! Who asks is told by a Bearer session token ([`access`]) or a signed URL
//! ([`signing`]); what a file is, by its bytes ([`sniff`], [`picture`]).
//! Every answer, refusals included, carries `X-Content-Type-Options:
//! nosniff` and a Content-Security-Policy that lets nothing run: a file is
//! data, never a page.
//!
//! The message side (attaching files to `SEND_MESSAGE`, the URLs in
//! messages) is [`crate::attachments`]; the collections are
//! [`crate::store::files`]; never-attached files are removed by [`sweep`].

pub mod access;
pub mod download;
pub mod errors;
pub mod picture;
pub mod signing;
pub mod sniff;
pub mod sweep;
pub mod upload;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post};
use shared_proto::bus::Bus;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::settings::FilesSettings;
use crate::store::Store;
use crate::store::files::FileStore;
use signing::UrlSigner;

/// Pictures decoded at once by one replica: each may take up to
/// `max_pixels` × 4 bytes while it is decoded.
const DECODES_AT_ONCE: usize = 2;

/// What the file routes share.
pub struct FileService {
    pub store: Store,
    pub files: FileStore,
    pub bus: Bus,
    pub settings: FilesSettings,
    pub signer: UrlSigner,
    pub decodes: Semaphore,
}

impl FileService {
    pub fn new(store: Store, bus: Bus, settings: FilesSettings, signer: UrlSigner) -> Self {
        FileService {
            files: store.files.clone(),
            store,
            bus,
            settings,
            signer,
            decodes: Semaphore::new(DECODES_AT_ONCE),
        }
    }
}

/// The routes, with the headers every answer carries.
pub fn router(service: Arc<FileService>) -> Router {
    Router::new()
        .route("/files", post(upload::upload))
        .route("/files/{id}", get(download::original))
        .route("/files/{id}/thumbnail", get(download::thumbnail))
        .layer(axum::middleware::map_response(secure))
        .with_state(service)
}

async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; img-src 'self'; sandbox"),
    );
    response
}

/// Serves the routes on `listen` until `shutdown`.
pub async fn serve(
    listen: &str,
    service: Arc<FileService>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    info!(addr = %listener.local_addr()?, "serving /files");
    let app = router(service);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    }))
}
