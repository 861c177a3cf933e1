//! Rotation and revocation while the manager keeps polling: the agent's certificate and the
//! manager's client certificate are replaced with no failed poll; a revoked client certificate
//! is refused by the agent once the new CRL is pushed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use patch_manager::pki::{renewal, rotation};
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// Serial of the certificate the agent presents to a new connection.
async fn agent_serial(addr: SocketAddr) -> String {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    #[derive(Debug)]
    struct Capture(std::sync::Mutex<Option<Vec<u8>>>);
    impl ServerCertVerifier for Capture {
        fn verify_server_cert(
            &self,
            ee: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            *self.0.lock().unwrap() = Some(ee.to_vec());
            Err(rustls::Error::General("captured".into()))
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("unused".into()))
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("unused".into()))
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let capture = std::sync::Arc::new(Capture(std::sync::Mutex::new(None)));
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(capture.clone())
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from("agent01.test").unwrap(),
            tcp,
        )
        .await;
    let der = capture
        .0
        .lock()
        .unwrap()
        .clone()
        .expect("server certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.raw_serial_as_string().replace(':', "")
}

/// Polls the rotation test waits for in each phase (before, after the agent's renewal, after
/// the manager's rotation).
const POLLS_PER_PHASE: u32 = 10;

/// Waits until the poll loop has completed `n` more polls than it had on entry; fails with
/// `phase` if that takes more than 30 s.
async fn polls_completed(completed: &mut tokio::sync::watch::Receiver<u32>, n: u32, phase: &str) {
    let target = *completed.borrow() + n;
    let waited = tokio::time::timeout(
        Duration::from_secs(30),
        completed.wait_for(|&done| done >= target),
    )
    .await
    .map(|r| r.map(|_| ()));
    match waited {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("the poll loop ended before {n} polls {phase}"),
        Err(_) => panic!(
            "the poll loop did not complete {n} polls {phase} within 30 s (at {} of {target})",
            *completed.borrow()
        ),
    }
}

#[actix_rt::test]
async fn rotation_under_polling_and_revocation() {
    let fleet = common::fleet_of_one().await;
    let state = fleet.server.state.clone();
    let addr = fleet.agent.addr;
    let first_agent_serial = agent_serial(addr).await;

    // The poll loop: a health request every 20 ms (pacing, so that polls interleave with the
    // rotation steps), each on a client made from the manager's current certificate files. It
    // publishes how many polls it has completed; the test waits for polls, not for time.
    let (count_tx, mut completed) = tokio::sync::watch::channel(0u32);
    let (failures, stop) = (Rc::new(Cell::new(0u32)), Rc::new(Cell::new(false)));
    let poller = {
        let (state, failures, stop) = (state.clone(), failures.clone(), stop.clone());
        actix_rt::spawn(async move {
            while !stop.get() {
                let ok = match rotation::client(&state, addr, None) {
                    Ok(c) => c.health().await.is_ok(),
                    Err(_) => false,
                };
                if !ok {
                    failures.set(failures.get() + 1);
                }
                count_tx.send_modify(|n| *n += 1);
                actix_rt::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    polls_completed(&mut completed, POLLS_PER_PHASE, "before any rotation").await;

    // Agent certificate: renewed through the agent, new connections see the new one.
    let issued = renewal::renew_agent(&state, fleet.host_id).await.unwrap();
    assert_ne!(issued.serial, first_agent_serial);
    assert_eq!(
        agent_serial(addr).await,
        issued.serial,
        "the agent serves the renewed certificate"
    );
    polls_completed(
        &mut completed,
        POLLS_PER_PHASE,
        "after the agent's certificate was renewed",
    )
    .await;

    // Manager client certificate: rotated; polls continue with the new one.
    let old_client = (
        std::fs::read_to_string(&state.pki.client_cert).unwrap(),
        std::fs::read_to_string(&state.pki.client_key).unwrap(),
    );
    let old_serial = {
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(old_client.0.as_bytes())
            .map(|c: rustls::pki_types::CertificateDer| c.to_vec())
            .unwrap();
        x509_parser::parse_x509_certificate(&der)
            .unwrap()
            .1
            .raw_serial_as_string()
            .replace(':', "")
    };
    let new_client = rotation::rotate_manager_client(&state).await.unwrap();
    assert_ne!(new_client.serial, old_serial);
    polls_completed(
        &mut completed,
        POLLS_PER_PHASE,
        "after the manager's client certificate was rotated",
    )
    .await;

    stop.set(true);
    poller.await.unwrap();
    let polls = *completed.borrow();
    assert!(
        polls >= 3 * POLLS_PER_PHASE,
        "the poll loop barely ran: {polls}"
    );
    assert_eq!(
        failures.get(),
        0,
        "{} of {polls} polls failed during rotation",
        failures.get(),
    );

    // The rotation revoked the old client certificate; the courier delivers the new CRL in the
    // background, and from then on the agent refuses that certificate and accepts the new one.
    let status = common::crl_delivered(&state).await;
    assert_eq!((status.agents, status.reason.as_str()), (1, "rotation"));
    let dir = tempfile::tempdir().unwrap();
    let (old_cert, old_key) = (dir.path().join("old.crt"), dir.path().join("old.key"));
    std::fs::write(&old_cert, &old_client.0).unwrap();
    std::fs::write(&old_key, &old_client.1).unwrap();
    let old = patch_manager::agent_client::AgentClient::new(
        state.pki.ca.cert_pem(),
        &old_cert,
        &old_key,
        addr,
        None,
    )
    .unwrap();
    assert!(
        old.health().await.is_err(),
        "the previous client certificate is still accepted after rotation"
    );
    // Revoking it again by hand: nothing changes.
    assert!(!rotation::revoke(&state, &old_serial, "again")
        .await
        .unwrap());
    assert!(rotation::client(&state, addr, None)
        .unwrap()
        .health()
        .await
        .is_ok());

    fleet.agent.stop().await;
    fleet.server.stop().await;
}

#[actix_rt::test]
async fn certificates_near_expiry_are_renewed_through_the_agent() {
    let fleet = common::fleet_of_one().await;
    let state = fleet.server.state.clone();
    let pinned = || {
        use diesel::prelude::*;
        use patch_manager::db::schema::hosts;
        let mut conn = state.db.conn().unwrap();
        hosts::table
            .filter(hosts::id.eq(fleet.host_id))
            .select(hosts::cert_fingerprint)
            .first::<Option<String>>(&mut *conn)
            .unwrap()
            .unwrap()
    };
    let pin_at_enrollment = pinned();
    let pinned_client = |pin: &str| rotation::client(&state, fleet.agent.addr, Some(pin)).unwrap();
    assert!(
        pinned_client(&pin_at_enrollment).health().await.is_ok(),
        "the agent presents the certificate pinned at enrollment"
    );
    assert!(
        pinned_client(&"00".repeat(32)).health().await.is_err(),
        "an agent presenting any other certificate is refused"
    );
    // Fresh certificates (365 days) are not due.
    assert!(renewal::renew_due(&state, state.clock.now())
        .await
        .unwrap()
        .is_empty());
    // 340 days later on the manager's clock, fewer than 30 remain: the agent's certificate is
    // renewed through it.
    const LATER_SECS: i64 = 340 * 24 * 3600;
    state.clock.advance(LATER_SECS);
    let renewed = renewal::renew_due(&state, state.clock.now()).await.unwrap();
    state.clock.advance(-LATER_SECS);
    assert_eq!(renewed.len(), 1, "{renewed:?}");
    let (host, serial) = &renewed[0];
    assert_eq!(*host, fleet.host_id);
    assert_eq!(
        &agent_serial(fleet.agent.addr).await,
        serial.as_ref().unwrap()
    );
    // The host now points at the new certificate, and nothing is due today.
    assert!(renewal::renew_due(&state, state.clock.now())
        .await
        .unwrap()
        .is_empty());
    let fp: Option<String> = {
        use diesel::prelude::*;
        use patch_manager::db::schema::hosts;
        let mut conn = state.db.conn().unwrap();
        hosts::table
            .filter(hosts::id.eq(fleet.host_id))
            .select(hosts::cert_fingerprint)
            .first(&mut *conn)
            .unwrap()
    };
    let listed = {
        let mut conn = state.db.conn().unwrap();
        patch_manager::db::certificates::list(&mut conn).unwrap()
    };
    let newest = listed
        .iter()
        .find(|c| &c.serial == serial.as_ref().unwrap())
        .unwrap();
    assert_eq!(fp.as_deref(), Some(newest.fingerprint_sha256.as_str()));
    assert_eq!(newest.host_id, Some(fleet.host_id));
    // The pin follows the renewal: the new certificate is accepted, the old pin no longer is.
    assert!(pinned_client(&pinned()).health().await.is_ok());
    assert!(
        pinned_client(&pin_at_enrollment).health().await.is_err(),
        "after renewal the agent presents the new certificate, not the old pinned one"
    );
    fleet.agent.stop().await;
    fleet.server.stop().await;
}

/// The number of the CRL an agent holds on disk.
fn agent_crl_number(config: &patch_agent::config::AgentConfig) -> String {
    use x509_parser::prelude::FromDer;
    let pem_text = std::fs::read_to_string(&config.tls.crl).unwrap();
    let der = pem::parse(pem_text).unwrap().into_contents();
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der).unwrap();
    crl.crl_number().unwrap().to_string()
}

#[actix_rt::test]
async fn the_crl_reaches_an_agent_that_was_down_when_it_was_issued() {
    let fleet = common::fleet_of_one().await;
    let state = fleet.server.state.clone();
    let enrolled = common::crl_delivered(&state).await;
    assert_eq!(
        enrolled.agents, 1,
        "the enrollment answer carried the CRL in force"
    );
    assert_eq!(
        agent_crl_number(&fleet.agent_config),
        enrolled.number.to_string()
    );

    // The agent is down when the manager's client certificate is rotated (which revokes the
    // previous one): the revocation answers at once, and the delivery is pending with the reason.
    fleet.agent.stop().await;
    let mut rounds = state.crl.rounds();
    let rotated = patch_manager::pki::certificates::rotate_client(
        &state,
        &patch_manager::audit::Requester::named("test", None),
    )
    .await
    .unwrap();
    assert!(!rotated.is_empty());
    let status = loop {
        rounds.changed().await.unwrap();
        let status = patch_manager::pki::crl::status(&state).await.unwrap();
        if status.pending.first().is_some_and(|p| p.attempts > 0) {
            break status;
        }
    };
    assert!(status.number > enrolled.number);
    assert_eq!((status.agents, status.delivered), (1, 0), "{status:?}");
    let pending = &status.pending[0];
    assert_eq!(pending.acked_number, Some(enrolled.number));
    assert!(pending.last_error.is_some() && pending.next_attempt_at.is_some());

    // Back up: the next successful contact with the agent (here a certificate renewal; an
    // Admin's "retry now" or the end of the backoff do the same) brings the delivery forward, and
    // the agent holds the new CRL.
    let agent = common::run_agent(&fleet.agent_config, None);
    renewal::renew_agent(&state, fleet.host_id).await.unwrap();
    let done = common::crl_delivered(&state).await;
    assert_eq!(done.number, status.number);
    assert_eq!(
        agent_crl_number(&fleet.agent_config),
        status.number.to_string()
    );

    // The first failure and the delivery are audited, the later failures of the same agent not.
    use diesel::prelude::*;
    use patch_manager::db::schema::audit_log as a;
    let mut conn = state.db.conn().unwrap();
    let failures: i64 = a::table
        .filter(a::action.eq("crl.delivery_failed"))
        .count()
        .get_result(&mut *conn)
        .unwrap();
    assert_eq!(failures, 1);
    let delivered: i64 = a::table
        .filter(a::action.eq("crl.delivered"))
        .count()
        .get_result(&mut *conn)
        .unwrap();
    assert!(delivered >= 1);
    drop(conn);

    // The manager's client certificate in use cannot be revoked (agents would refuse the manager,
    // this CRL's push included): rotating is the way.
    let by = patch_manager::audit::Requester::named("test", None);
    let certs = patch_manager::pki::certificates::list(&state)
        .await
        .unwrap();
    let in_use = certs
        .iter()
        .find(|c| {
            c.kind == shared::vocab::CertKind::ManagerClient
                && c.state != shared::vocab::CertState::Revoked
                && c.state != shared::vocab::CertState::Superseded
        })
        .unwrap();
    let refused =
        patch_manager::pki::certificates::revoke(&state, &by, in_use.id.into(), "test").await;
    assert!(refused.is_err(), "{refused:?}");
    // Revoking the agent's certificate: the manager stops trusting that agent too.
    let agent_cert = certs
        .iter()
        .find(|c| {
            c.kind == shared::vocab::CertKind::Agent && c.state == shared::vocab::CertState::Valid
        })
        .unwrap();
    patch_manager::pki::certificates::revoke(&state, &by, agent_cert.id.into(), "key stolen")
        .await
        .unwrap();
    let refused = renewal::renew_agent(&state, fleet.host_id).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("revoked")),
        "{refused:?}"
    );
    agent.stop().await;
    fleet.server.stop().await;
}
