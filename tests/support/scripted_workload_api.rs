//! A scripted SPIFFE Workload API server, for what `fedgate agent` never sends: SVIDs of
//! another trust domain, mismatched keys, streams that end. Shared by the Workload API client
//! tests (`tests/workload_api.rs`, `tests/sidecar_workload_api.rs`).
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedgate::ca::Ca;
use fedgate::workload::proto::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use fedgate::workload::proto::*;
use fedgate_federation::{BundleSet, SpiffeId};
use futures_util::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Each `FetchX509SVID` call takes the next script: its messages are sent, then the
/// stream ends. With no script left, the stream stays open and silent.
#[derive(Clone, Default)]
pub struct Scripted {
    pub scripts: Arc<Mutex<VecDeque<Vec<X509svidResponse>>>>,
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl SpiffeWorkloadApi for Scripted {
    type FetchX509SVIDStream = Boxed<X509svidResponse>;
    type FetchX509BundlesStream = Boxed<X509BundlesResponse>;
    type FetchJWTBundlesStream = Boxed<JwtBundlesResponse>;
    type FetchWITSVIDStream = Boxed<WitsvidResponse>;
    type FetchWITBundlesStream = Boxed<WitBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        _: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let script = self.scripts.lock().unwrap().pop_front();
        let stream: Self::FetchX509SVIDStream = match script {
            Some(m) => Box::pin(futures_util::stream::iter(m.into_iter().map(Ok))),
            None => Box::pin(futures_util::stream::pending()),
        };
        Ok(Response::new(stream))
    }
    async fn fetch_x509_bundles(
        &self,
        _: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        Err(Status::unimplemented("scripted"))
    }
    async fn fetch_jwtsvid(
        &self,
        _: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        Err(Status::unimplemented("scripted"))
    }
    async fn fetch_jwt_bundles(
        &self,
        _: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        Err(Status::unimplemented("scripted"))
    }
    async fn validate_jwtsvid(
        &self,
        _: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        Err(Status::unimplemented("scripted"))
    }
    async fn fetch_witsvid(
        &self,
        _: Request<WitsvidRequest>,
    ) -> Result<Response<Self::FetchWITSVIDStream>, Status> {
        Err(Status::unimplemented("scripted"))
    }
    async fn fetch_wit_bundles(
        &self,
        _: Request<WitBundlesRequest>,
    ) -> Result<Response<Self::FetchWITBundlesStream>, Status> {
        Err(Status::unimplemented("scripted"))
    }
}

pub fn serve(socket: &Path, scripted: Scripted) -> CancellationToken {
    let listener = tokio::net::UnixListener::bind(socket).unwrap();
    let shutdown = CancellationToken::new();
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        Some((l.accept().await.map(|(s, _)| s), l))
    });
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(SpiffeWorkloadApiServer::new(scripted))
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
            .unwrap();
    });
    shutdown
}

/// A response for `id` minted by `ca`, with `ca`'s bundle and `federated`.
pub fn response(ca: &Ca, id: &str, federated: &[fedgate_federation::Bundle]) -> X509svidResponse {
    let id = SpiffeId::parse(id).unwrap();
    let issued = ca.issue(&id, Duration::from_secs(600), &[]).unwrap();
    let svid = fedgate_federation::X509Svid::from_pem(
        issued.chain_pem().as_bytes(),
        issued.key_pem().as_bytes(),
    )
    .unwrap();
    let bundles = std::iter::once(ca.bundle().clone()).chain(federated.iter().cloned());
    let snapshot = fedgate::workload::Snapshot {
        trust_domain: ca.trust_domain().clone(),
        bundles: BundleSet::from_bundles(bundles).unwrap(),
        svids: BTreeMap::from([(id.clone(), svid)]),
        jwt_signer: ca.jwt_signer(std::path::Path::new("ca")).map_err(Arc::new),
        jwt_ttl: fedgate::workload::MAX_JWT_TTL,
    };
    fedgate::workload::convert::x509_svid_response(&snapshot, &[id]).unwrap()
}
