//! Two roots: the web CA, which browsers are told to trust, signs only the web UI's certificate;
//! the fleet CA signs agents' certificates, the manager's client certificate and the enrollment
//! certificate that the web listener shows only to clients asking for it by ALPN. A certificate
//! bought with an enrollment token is therefore never accepted by a browser that trusts the web
//! root, whatever names it carries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{test_config, Engine, TestDb};
use patch_manager::pki::{CertKind, San};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;

fn der(pem_text: &str) -> CertificateDer<'static> {
    CertificateDer::from(pem::parse(pem_text).unwrap().into_contents())
}

fn roots(pem_text: &str) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(pem_text)).unwrap();
    Arc::new(roots)
}

/// A TLS handshake with the manager trusting `root`, offering `alpn`; answers the negotiated
/// protocol and the leaf certificate, or the handshake error.
async fn handshake(
    addr: std::net::SocketAddr,
    root: &str,
    alpn: &[&[u8]],
) -> Result<(Option<Vec<u8>>, Vec<u8>), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(root))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, session) = tls.get_ref();
    Ok((
        session.alpn_protocol().map(<[u8]>::to_vec),
        session.peer_certificates().unwrap()[0].to_vec(),
    ))
}

fn issued_by(leaf: &[u8], root_pem: &str) -> bool {
    let root = pem::parse(root_pem).unwrap().into_contents();
    let (_, root) = x509_parser::parse_x509_certificate(&root).unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf).unwrap();
    leaf.verify_signature(Some(root.public_key())).is_ok()
}

#[actix_rt::test]
async fn browsers_trust_a_root_that_signs_only_the_web_ui() {
    let db = TestDb::new(Engine::Sqlite);
    let mut config = test_config(&db);
    config.server.tls = patch_manager::config::TlsMode::Internal;
    config.server.public_names = vec!["localhost".into(), "127.0.0.1".into()];
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let (fleet, web) = (
        server.state.pki.ca.cert_pem().to_owned(),
        server.state.pki.web_ca.cert_pem().to_owned(),
    );
    assert_ne!(
        server.state.pki.ca.fingerprint(),
        server.state.pki.web_ca.fingerprint()
    );

    // A browser (no ALPN of ours) gets the web UI's certificate, from the web CA ...
    let (alpn, leaf) = handshake(server.addr, &web, &[b"http/1.1"]).await.unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(issued_by(&leaf, &web) && !issued_by(&leaf, &fleet));
    // ... which the fleet root does not vouch for.
    let refused = handshake(server.addr, &fleet, &[b"http/1.1"]).await;
    assert!(refused.is_err(), "{refused:?}");

    // An enrolling agent asks by ALPN and gets the enrollment certificate, from the fleet CA its
    // token names; HTTP/1.1 is still what is spoken.
    let (alpn, leaf) = handshake(
        server.addr,
        &fleet,
        &[shared::enroll::ENROLL_ALPN, b"http/1.1"],
    )
    .await
    .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(issued_by(&leaf, &fleet) && !issued_by(&leaf, &web));

    // What an enrollment token buys (a fleet-CA certificate, even for the manager's own name if
    // the policy let it through) is refused by a client trusting the web root.
    let (bought, _) = server
        .state
        .pki
        .ca
        .issue_with_new_key(
            CertKind::Agent,
            "localhost",
            &[San::Dns("localhost".into())],
            30,
        )
        .unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots(&web),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    use rustls::client::danger::ServerCertVerifier;
    let verdict = verifier.verify_server_cert(
        &der(&bought.cert_pem),
        &[der(&fleet)],
        &ServerName::try_from("localhost").unwrap(),
        &[],
        UnixTime::now(),
    );
    assert!(verdict.is_err(), "{verdict:?}");

    // The downloads: root.crt is the web root, fleet.crt the fleet root, crl the fleet CRL.
    let base = format!("https://localhost:{}", server.addr.port());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots(&web))
        .with_no_client_auth();
    let client = awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(tls)))
        .finish();
    let mut res = client
        .get(format!("{base}/api/v1/ca/root.crt"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(res.body().await.unwrap().to_vec()).unwrap(),
        web
    );
    let mut res = client
        .get(format!("{base}/api/v1/ca/fleet.crt"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(res.body().await.unwrap().to_vec()).unwrap(),
        fleet
    );
    let mut res = client
        .get(format!("{base}/api/v1/ca/crl"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let number: i64 = res
        .headers()
        .get("x-crl-number")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let crl_pem = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    let crl_der = pem::parse(&crl_pem).unwrap().into_contents();
    use x509_parser::prelude::FromDer;
    let (_, crl) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(&crl_der).unwrap();
    let fleet_der = pem::parse(&fleet).unwrap().into_contents();
    let (_, fleet_x) = x509_parser::parse_x509_certificate(&fleet_der).unwrap();
    crl.verify_signature(fleet_x.public_key()).unwrap();
    assert_eq!(crl.crl_number().unwrap().to_string(), number.to_string());
    server.stop().await;

    // An earlier version signed the web certificate with the fleet CA: such a certificate is
    // replaced from the web CA at the next start.
    let pki = config.data.dir.join("pki");
    let fleet_ca = patch_manager::pki::Ca::load_or_create(
        &config.data.dir.join("ca"),
        patch_manager::pki::manager::FLEET_CA_NAME,
    )
    .unwrap()
    .0;
    let (old, key) = fleet_ca
        .issue_with_new_key(
            CertKind::Web,
            "localhost",
            &[
                San::Dns("localhost".into()),
                San::Ip("127.0.0.1".parse().unwrap()),
            ],
            300,
        )
        .unwrap();
    std::fs::write(pki.join("web.crt"), &old.cert_pem).unwrap();
    std::fs::write(pki.join("web.key"), key).unwrap();
    let server = patch_manager::server::start(config).await.unwrap();
    let (_, leaf) = handshake(server.addr, &web, &[b"http/1.1"]).await.unwrap();
    assert!(issued_by(&leaf, &web), "the old web certificate was kept");
    server.stop().await;
}
