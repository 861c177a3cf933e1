//! The whole web pipeline in a real browser: headless Chromium (Debian's `chromium`, driven through
//! `chromedriver`) loads the server-rendered pages, the WebAssembly bundle hydrates them, and a new
//! user goes through first-run setup, signs in, enrols an authenticator app, signs out and signs in
//! again with a code, adds a security key (Chromium's virtual WebAuthn authenticator) and signs
//! in with it — every step through the real pages and the real API. And patch deployment: an
//! Admin deploys the security updates to a group holding a real agent (an isolated apt root),
//! watches the host's row go to succeeded without a reload, and rolls the job back.
//!
//! Needs the wasm bundle under `LPM_SITE_ROOT` and chromium/chromedriver installed, which
//! scripts/test.sh provides; it runs this test explicitly (`--run-ignored all`). Run alone it fails
//! with a message saying what is missing rather than skipping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{site_root, test_config, Engine, TestDb};
use fantoccini::{ClientBuilder, Locator};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_chromedriver() -> Driver {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start chromedriver ({e}); scripts/test.sh installs it"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver {
        child,
        port,
        _profile: tempfile::tempdir().unwrap(),
    }
}

/// A headless Chromium session through `driver`, with `extra` command-line switches.
async fn open_browser(driver: &Driver, extra: &[&str]) -> fantoccini::Client {
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ]
    .iter()
    .chain(extra)
    .map(|a| (*a).to_owned())
    .collect();
    args.push(format!(
        "--user-data-dir={}",
        driver._profile.path().display()
    ));
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": std::env::var("LPM_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": args,
        }
    });
    let caps = caps.as_object().unwrap().clone();
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("WebDriver session")
}

/// Ends the browser session, printing the page first if the test failed.
async fn finish(browser: &fantoccini::Client, failed: bool) {
    if failed {
        if let Ok(src) = browser.source().await {
            eprintln!("page at failure:\n{src}");
        }
    }
    browser.clone().close().await.ok();
}

/// Follows the navigation link with this text.
async fn click_link(
    browser: &fantoccini::Client,
    text: &str,
) -> Result<(), fantoccini::error::CmdError> {
    browser.find(Locator::LinkText(text)).await?.click().await
}

/// Waits for an element matching `css`.
async fn wait_for(
    browser: &fantoccini::Client,
    css: &str,
) -> Result<fantoccini::elements::Element, fantoccini::error::CmdError> {
    browser
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css(css))
        .await
}

async fn wait_enabled(
    browser: &fantoccini::Client,
    id: &str,
) -> Result<fantoccini::elements::Element, fantoccini::error::CmdError> {
    browser
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(&format!("#{id}:not([disabled])")))
        .await
}

async fn type_into(
    browser: &fantoccini::Client,
    id: &str,
    text: &str,
) -> Result<(), fantoccini::error::CmdError> {
    let e = browser.find(Locator::Id(id)).await?;
    e.clear().await?;
    e.send_keys(text).await
}

/// Waits until the element's text is non-empty and answers it.
async fn text_of(
    browser: &fantoccini::Client,
    css: &str,
) -> Result<String, fantoccini::error::CmdError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(e) = browser.find(Locator::Css(css)).await {
            let t = e.text().await?;
            if !t.trim().is_empty() || Instant::now() > deadline {
                return Ok(t);
            }
        } else if Instant::now() > deadline {
            return Ok(String::new());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the element's text contains `needle`; answers the last text seen.
async fn text_containing(
    browser: &fantoccini::Client,
    css: &str,
    needle: &str,
) -> Result<String, fantoccini::error::CmdError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = match browser.find(Locator::Css(css)).await {
            Ok(e) => e.text().await?,
            Err(_) => String::new(),
        };
        if t.contains(needle) || Instant::now() > deadline {
            return Ok(t);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
#[ignore = "needs the wasm bundle and chromium; scripts/test.sh runs it"]
async fn first_run_setup_totp_and_security_key_in_the_browser() {
    let wasm = site_root()
        .join("pkg")
        .join(format!("{}_bg.wasm", frontend_leptos::OUTPUT_NAME));
    assert!(
        wasm.is_file(),
        "{} missing: build it with scripts/build-wasm.sh",
        wasm.display()
    );

    let db = TestDb::new(Engine::Sqlite);
    let config = test_config(&db);
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let clock = server.state.clock.clone();
    let driver = start_chromedriver();

    let browser = open_browser(&driver, &[]).await;
    // "localhost", not 127.0.0.1: WebAuthn needs a domain (the relying party), and browsers treat
    // http://localhost as a secure context.
    let base = format!("http://localhost:{}", server.addr.port());
    let setup_token = std::fs::read_to_string(config.data.dir.join("setup-token")).unwrap();
    let password = "tangerine-Orbit-42";

    let result = async {
        // A fresh installation sends the first visitor to first-run setup.
        browser.goto(&format!("{base}/")).await?;
        wait_enabled(&browser, "setup-submit").await?;
        assert!(browser.current_url().await?.path().ends_with("/setup"));
        type_into(&browser, "setup-token", setup_token.trim()).await?;
        type_into(&browser, "setup-username", "admin").await?;
        type_into(&browser, "setup-password", password).await?;
        type_into(&browser, "setup-password2", password).await?;
        browser
            .find(Locator::Id("setup-submit"))
            .await?
            .click()
            .await?;

        // Then to sign-in; the password alone is enough while there is no second factor.
        wait_enabled(&browser, "sign-in").await?;
        type_into(&browser, "username", "admin").await?;
        type_into(&browser, "password", password).await?;
        browser.find(Locator::Id("sign-in")).await?.click().await?;
        let engine = text_of(&browser, "#database-backend").await?;
        assert_eq!(engine, "SQLite (embedded)");
        assert_eq!(text_of(&browser, "#signed-in-as").await?, "admin");

        // The page is hydrated: clicks are handled.
        browser
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css("section[data-hydrated='true']"))
            .await?;
        let button = browser.find(Locator::Id("click-check")).await?;
        button.click().await?;
        button.click().await?;
        let count = browser
            .find(Locator::Id("click-count"))
            .await?
            .text()
            .await?;
        assert_eq!(
            count, "2",
            "clicks were not handled: the page did not hydrate"
        );

        // Enrol an authenticator app: QR code and key shown, a code from the key confirms it.
        click_link(&browser, "Account").await?;
        wait_enabled(&browser, "totp-start").await?.click().await?;
        let secret = text_of(&browser, "#totp-secret").await?;
        assert!(!secret.is_empty(), "no key shown");
        browser.find(Locator::Css("#totp-qr svg")).await?;
        let seed = totp_rs::Secret::try_from_base32(secret.trim()).unwrap();
        let app = patch_manager::auth::mfa::totp(seed.as_ref().to_vec(), "admin").unwrap();
        type_into(
            &browser,
            "totp-code",
            &patch_manager::auth::mfa::code_at(&app, clock.unix()),
        )
        .await?;
        wait_enabled(&browser, "totp-confirm")
            .await?
            .click()
            .await?;
        browser
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css("#recovery-codes li"))
            .await?;
        let codes = browser.find_all(Locator::Css("#recovery-codes li")).await?;
        assert_eq!(codes.len(), 10, "ten recovery codes shown once");

        // Sign out; sign in again: now the second step asks for a code.
        browser.find(Locator::Id("sign-out")).await?.click().await?;
        wait_enabled(&browser, "sign-in").await?;
        type_into(&browser, "username", "admin").await?;
        type_into(&browser, "password", password).await?;
        browser.find(Locator::Id("sign-in")).await?.click().await?;
        wait_enabled(&browser, "verify").await?;
        type_into(&browser, "mfa-code", "000000").await?;
        browser.find(Locator::Id("verify")).await?.click().await?;
        let err =
            text_containing(&browser, "[data-testid='error']", "wrong or expired code").await?;
        assert!(err.contains("wrong or expired code"), "{err}");
        // The code that confirmed the app is spent; the next one signs in.
        clock.advance(30);
        type_into(
            &browser,
            "mfa-code",
            &patch_manager::auth::mfa::code_at(&app, clock.unix()),
        )
        .await?;
        wait_enabled(&browser, "verify").await?.click().await?;
        assert_eq!(
            text_of(&browser, "#database-backend").await?,
            "SQLite (embedded)"
        );
        assert_eq!(text_of(&browser, "#signed-in-as").await?, "admin");

        // The Admin pages render their data.
        for (link, css) in [
            ("Certificates", "#certificates tr[data-kind='ca']"),
            // The revocation list's card: no agents yet, so delivered to 0 of 0.
            (
                "Certificates",
                "#crl-progress[data-agents='0'][data-delivered='0']",
            ),
            ("Users", "#users tr[data-user='admin']"),
            ("Settings", "#oidc-save:not([disabled])"),
            // The poll intervals in force (the test configuration's day-long health interval).
            ("Settings", "#poll-health"),
            ("Hosts", "section.page h1"),
        ] {
            click_link(&browser, link).await?;
            browser
                .wait()
                .at_most(Duration::from_secs(30))
                .for_element(Locator::Css(css))
                .await?;
            // LPM_SCREENSHOTS=<dir> keeps a picture of each page, for looking at the UI.
            if let Some(dir) = std::env::var_os("LPM_SCREENSHOTS") {
                let png = browser.screenshot().await?;
                std::fs::write(std::path::Path::new(&dir).join(format!("{link}.png")), png)
                    .unwrap();
            }
        }

        // A host's state changes reach the Hosts page live, without a reload. (The path from a
        // real agent to the event hub is tested in fleet_live.rs; here the hub gets the event.)
        {
            let t = clock.now();
            let host = common::insert_host(&mut server.state.db.conn().unwrap(), "web-live", 9, t);
            click_link(&browser, "Overview").await?;
            click_link(&browser, "Hosts").await?;
            browser
                .wait()
                .at_most(Duration::from_secs(30))
                .for_element(Locator::Css(&format!(
                    "tr[data-host='{host}'][data-status='unknown']"
                )))
                .await?;
            let changed = format!("tr[data-host='{host}'][data-status='unreachable']");
            let deadline = Instant::now() + Duration::from_secs(60);
            // The page opens its stream after hydration; the event is published until it shows.
            loop {
                let _ = server
                    .state
                    .fleet
                    .events
                    .send(shared::fleet::HostStateEvent {
                        host_id: host.into(),
                        status: shared::vocab::HostStatus::Unreachable,
                        reason: Some("test".into()),
                        at: "2026-11-30T00:00:00+00:00".into(),
                    });
                if browser
                    .wait()
                    .at_most(Duration::from_secs(1))
                    .for_element(Locator::Css(&changed))
                    .await
                    .is_ok()
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the Hosts page never showed the new state"
                );
            }
        }

        // A stored setting that no longer parses is said on its card, naming the key, instead of
        // the form showing defaults that would overwrite it.
        {
            use diesel::prelude::*;
            use patch_manager::db::schema::settings;
            let mut c = server.state.db.conn().unwrap();
            diesel::insert_into(settings::table)
                .values((
                    settings::key.eq("auth.oidc"),
                    settings::value_json.eq("{\"enabled\": tru"),
                    settings::updated_at.eq(clock.now()),
                    settings::updated_by.eq("test"),
                ))
                .execute(&mut *c)
                .unwrap();
        }
        click_link(&browser, "Users").await?;
        click_link(&browser, "Settings").await?;
        let said =
            text_containing(&browser, "[data-testid='oidc-load-error']", "auth.oidc").await?;
        assert!(said.contains("cannot be read"), "{said}");
        {
            use diesel::prelude::*;
            use patch_manager::db::schema::settings;
            let mut c = server.state.db.conn().unwrap();
            diesel::delete(settings::table.filter(settings::key.eq("auth.oidc")))
                .execute(&mut *c)
                .unwrap();
        }

        // A security key: Chromium's virtual authenticator stands in for the hardware.
        let session = browser.session_id().await?.expect("WebDriver session id");
        let mut res = awc::Client::default()
            .post(format!(
                "http://127.0.0.1:{}/session/{session}/webauthn/authenticator",
                driver.port
            ))
            .send_json(&serde_json::json!({
                "protocol": "ctap2", "transport": "usb", "hasResidentKey": true,
                "hasUserVerification": true, "isUserConsenting": true, "isUserVerified": true,
            }))
            .await
            .expect("virtual authenticator");
        assert!(res.status().is_success(), "{:?}", res.body().await);
        click_link(&browser, "Account").await?;
        wait_enabled(&browser, "key-add").await?;
        type_into(&browser, "key-name", "virtual key").await?;
        browser.find(Locator::Id("key-add")).await?.click().await?;
        let notice = text_containing(&browser, "p.ok[role='status']", "Security key added").await?;
        let err = match browser.find(Locator::Css("[data-testid='error']")).await {
            Ok(e) => e.text().await?,
            Err(_) => String::new(),
        };
        assert!(notice.contains("Security key added"), "{notice} / {err}");
        // The list refreshes after the notice: wait for the new row rather than read at once.
        let factors = text_containing(&browser, "#factors", "virtual key").await?;
        assert!(
            factors.contains("virtual key") && factors.contains("Security key"),
            "{factors}"
        );

        // Sign out and in again, this time with the key.
        browser.find(Locator::Id("sign-out")).await?.click().await?;
        wait_enabled(&browser, "sign-in").await?;
        type_into(&browser, "username", "admin").await?;
        type_into(&browser, "password", password).await?;
        browser.find(Locator::Id("sign-in")).await?.click().await?;
        wait_enabled(&browser, "use-key").await?.click().await?;
        assert_eq!(
            text_of(&browser, "#database-backend").await?,
            "SQLite (embedded)"
        );
        assert_eq!(text_of(&browser, "#signed-in-as").await?, "admin");
        // The last sign-in was the security key's, per the audit log.
        let methods: Vec<String> = {
            use diesel::prelude::*;
            use patch_manager::db::schema::audit_log as l;
            let mut c = server.state.db.conn().unwrap();
            l::table
                .filter(l::action.eq("auth.login"))
                .order(l::id.desc())
                .select(l::details_json)
                .load(&mut *c)
                .unwrap()
        };
        assert!(methods[0].contains("\"webauthn\""), "{methods:?}");
        assert!(
            methods.iter().any(|m| m.contains("\"totp\"")),
            "{methods:?}"
        );
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    finish(&browser, result.is_err()).await;
    server.stop().await;
    result.unwrap();
}

#[actix_rt::test]
#[ignore = "needs the wasm bundle and chromium; scripts/test.sh runs it"]
async fn a_group_is_patched_and_rolled_back_from_the_browser() {
    let wasm = site_root()
        .join("pkg")
        .join(format!("{}_bg.wasm", frontend_leptos::OUTPUT_NAME));
    assert!(wasm.is_file(), "{} missing", wasm.display());
    let (apt, fleet, c, api_base, admin) =
        common::https::apt_fleet(&["lpm-test-secure=1.0-1"]).await;
    let state = fleet.server.state.clone();
    let host = fleet.host_id;
    let (status, group) = common::https::api(
        &c,
        "POST",
        &format!("{api_base}/api/v1/groups"),
        Some(&admin),
        Some(serde_json::json!({ "name": "web" })),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    let (status, body) = common::https::api(
        &c,
        "PUT",
        &format!("{api_base}/api/v1/hosts/{host}/groups"),
        Some(&admin),
        Some(serde_json::json!({ "group_ids": [group["id"]] })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The host's inventory (its pending security update) is in before the review.
    let mut inventories = state.fleet.inventories.subscribe();
    state
        .fleet
        .supervisor
        .do_send(patch_manager::fleet::supervisor::RefreshHost(host));
    tokio::time::timeout(Duration::from_secs(60), async {
        while inventories.recv().await.unwrap().0 != host {}
    })
    .await
    .expect("no inventory");

    let driver = start_chromedriver();
    // The manager serves HTTPS with its own web CA, which this throw-away browser profile does
    // not trust; transport security is tested elsewhere, the pages are what is tested here.
    let browser = open_browser(&driver, &["--ignore-certificate-errors"]).await;
    let base = format!("https://localhost:{}", fleet.server.addr.port());
    let group_id = group["id"].as_i64().unwrap();
    let result = async {
        browser.goto(&format!("{base}/login")).await?;
        wait_enabled(&browser, "sign-in").await?;
        type_into(&browser, "username", "admin").await?;
        type_into(&browser, "password", "tangerine-Orbit-42").await?;
        browser.find(Locator::Id("sign-in")).await?.click().await?;
        text_of(&browser, "#signed-in-as").await?;
        click_link(&browser, "Patch deployment").await?;
        wait_for(&browser, "#no-jobs").await?;
        wait_for(&browser, &format!("input[data-group='{group_id}']"))
            .await?
            .click()
            .await?;
        // Review: the group's host and its pending patches.
        browser
            .find(Locator::Id("job-review"))
            .await?
            .click()
            .await?;
        let review = text_containing(&browser, "#job-review-list", "lpm-test-secure").await?;
        assert!(
            review.contains("lpm-test-secure 1.0-1 → 1.0-2 (security)"),
            "{review}"
        );
        wait_enabled(&browser, "job-apply").await?.click().await?;
        // The job page follows the host without a reload: the row reaches succeeded.
        wait_for(&browser, "#job-hosts").await?;
        let url = browser.current_url().await?;
        assert!(url.path().starts_with("/jobs/"), "{url}");
        wait_for(
            &browser,
            &format!("#job-hosts tr[data-host='{host}'][data-state='succeeded']"),
        )
        .await?;
        wait_for(&browser, "#job-state[data-state='succeeded']").await?;
        assert_eq!(browser.current_url().await?, url, "no navigation happened");
        assert_eq!(apt.version("lpm-test-secure").as_deref(), Some("1.0-2"));
        let packages = text_of(&browser, &format!("#job-hosts tr[data-host='{host}']")).await?;
        assert!(
            packages.contains("lpm-test-secure 1.0-1 → 1.0-2"),
            "{packages}"
        );

        // Roll back: asked once, then the row follows to rolled back.
        browser
            .find(Locator::Id("job-rollback"))
            .await?
            .click()
            .await?;
        let ask = text_of(&browser, "#job-confirm").await?;
        assert!(ask.contains("Roll this job back?"), "{ask}");
        browser
            .find(Locator::Id("job-confirm-yes"))
            .await?
            .click()
            .await?;
        wait_for(
            &browser,
            &format!("#job-hosts tr[data-host='{host}'][data-state='rolled_back']"),
        )
        .await?;
        assert_eq!(apt.version("lpm-test-secure").as_deref(), Some("1.0-1"));
        // The list shows the job.
        click_link(&browser, "Patch deployment").await?;
        wait_for(&browser, "#jobs tr[data-state='succeeded']").await?;
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    finish(&browser, result.is_err()).await;
    result.unwrap();
}
