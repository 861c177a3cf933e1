//! HTTPS and the live event stream as a browser or an API client uses them: a client trusting
//! the manager's web CA, JSON calls with a bearer token, sign-in, and the event WebSocket opened
//! with a single-use ticket.

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// An HTTPS client trusting the manager's web CA.
pub fn client(server: &patch_manager::server::RunningServer) -> awc::Client {
    client_trusting(server.state.pki.web_ca.cert_pem())
}

/// An HTTPS client trusting the CA in `ca_pem` (a manager's web CA).
pub fn client_trusting(ca_pem: &str) -> awc::Client {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(tls)))
        .timeout(Duration::from_secs(30))
        .finish()
}

pub async fn api(
    c: &awc::Client,
    method: &str,
    url: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = c.request(method.parse().unwrap(), url);
    if let Some(b) = bearer {
        req = req.insert_header(("authorization", format!("Bearer {b}")));
    }
    let mut res = match body {
        Some(b) => req.send_json(&b).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let bytes = res.body().limit(8 << 20).await.unwrap();
    (
        res.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

pub async fn sign_in(c: &awc::Client, base: &str, user: &str, password: &str) -> String {
    let (status, body) = api(
        c,
        "POST",
        &format!("{base}/api/v1/auth/login"),
        None,
        Some(json!({ "username": user, "password": password, "client": "api" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// A client WebSocket.
pub trait Socket:
    futures_util::Stream<Item = Result<awc::ws::Frame, awc::error::WsProtocolError>>
    + futures_util::Sink<awc::ws::Message, Error = awc::error::WsProtocolError>
    + Unpin
{
}

impl<T> Socket for T where
    T: futures_util::Stream<Item = Result<awc::ws::Frame, awc::error::WsProtocolError>>
        + futures_util::Sink<awc::ws::Message, Error = awc::error::WsProtocolError>
        + Unpin
{
}

pub async fn open_stream(c: &awc::Client, base: &str, bearer: &str) -> impl Socket {
    let (status, ticket) = api(
        c,
        "POST",
        &format!("{base}/api/v1/events/ticket"),
        Some(bearer),
        None,
    )
    .await;
    assert_eq!(status, 201, "{ticket}");
    let url = format!(
        "{}/api/v1/events/ws?ticket={}",
        base.replace("https://", "wss://"),
        ticket["ticket"].as_str().unwrap()
    );
    let mut socket = c.ws(url).connect().await.unwrap().1;
    first_frame_is_resync(&mut socket).await;
    socket
}

/// Every event stream begins with a `Resync` (what changed between the client's read and its
/// subscription is on no stream): reads it.
pub async fn first_frame_is_resync(socket: &mut impl Socket) {
    use futures_util::StreamExt;
    let frame = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
        .await
        .expect("no first frame")
        .expect("stream closed")
        .unwrap();
    let awc::ws::Frame::Text(text) = frame else {
        panic!("first frame {frame:?}")
    };
    let event: shared::fleet::LiveEvent = serde_json::from_slice(&text).unwrap();
    assert_eq!(event, shared::fleet::LiveEvent::Resync);
}

/// First-run setup with the manager's setup token (in `data`): the Admin `admin` /
/// `tangerine-Orbit-42`, signed in; answers the bearer token.
pub async fn first_admin(c: &awc::Client, base: &str, data: &std::path::Path) -> String {
    let token = std::fs::read_to_string(data.join("setup-token")).unwrap();
    let (status, body) = api(
        c,
        "POST",
        &format!("{base}/api/v1/setup"),
        None,
        Some(json!({ "token": token.trim(), "username": "admin",
                     "password": "tangerine-Orbit-42" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    sign_in(c, base, "admin", "tangerine-Orbit-42").await
}

/// A manager and one real agent over an isolated apt root holding `packages`, reached over HTTPS
/// by an Admin: the root, the fleet, the client, the base URL and the Admin's bearer token.
pub async fn apt_fleet(
    packages: &[&str],
) -> (super::AptRoot, super::Fleet, awc::Client, String, String) {
    let apt = super::AptRoot::new();
    apt.install(packages);
    let fleet = super::fleet_with(Some(apt.apt_config.clone())).await;
    let base = format!("https://127.0.0.1:{}", fleet.server.addr.port());
    let c = client(&fleet.server);
    let admin = first_admin(&c, &base, &fleet.server.state.config.data.dir).await;
    (apt, fleet, c, base, admin)
}
