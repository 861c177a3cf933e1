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

use common::{test_config, Engine, TestDb};
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
        if let Ok(log) = browser
            .execute("return window.__console || null;", vec![])
            .await
        {
            eprintln!("console at failure: {log}");
        }
    }
    browser.clone().close().await.ok();
}

/// Opens `url` as a new page load and waits until the bundle has hydrated it: before that the
/// server-rendered buttons are there but do nothing when clicked.
async fn goto(browser: &fantoccini::Client, url: &str) -> Result<(), fantoccini::error::CmdError> {
    browser.goto(url).await?;
    wait_js(
        browser,
        "return document.documentElement.dataset.hydrated === 'true';",
    )
    .await
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
        // An element the page replaced between finding and reading is looked up again.
        if let Ok(e) = browser.find(Locator::Css(css)).await {
            let t = e.text().await.unwrap_or_default();
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
            // An element the page replaced between finding and reading is looked up again.
            Ok(e) => e.text().await.unwrap_or_default(),
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
    let (_, wasm) = common::bundle().expect("no web bundle: scripts/test.sh builds it");
    assert!(
        wasm.is_file(),
        "{} missing: scripts/test.sh builds it (lib.sh build_wasm)",
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
        goto(&browser, &format!("{base}/")).await?;
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

        // The page is hydrated (its effects run only in the browser, once the bundle has
        // attached); the link below is followed by the client-side router.
        browser
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css("section[data-hydrated='true']"))
            .await?;

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
            text_containing(&browser, "[data-testid='error']", "Wrong or expired code").await?;
        assert!(err.starts_with("Wrong or expired code;"), "{err}");
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
    let (_, wasm) = common::bundle().expect("no web bundle: scripts/test.sh builds it");
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
    capture_console(&driver, &browser).await;
    let base = format!("https://localhost:{}", fleet.server.addr.port());
    let group_id = group["id"].as_i64().unwrap();
    let result = async {
        goto(&browser, &format!("{base}/login")).await?;
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

/// Runs `script` (a function body) in the page and answers its JSON result.
async fn js(
    browser: &fantoccini::Client,
    script: &str,
) -> Result<serde_json::Value, fantoccini::error::CmdError> {
    browser.execute(script, vec![]).await
}

/// A raw WebDriver command for this session (the Chrome DevTools bridge, which fantoccini does
/// not wrap).
async fn cdp(driver: &Driver, browser: &fantoccini::Client, cmd: &str, params: serde_json::Value) {
    let session = browser.session_id().await.unwrap().expect("session id");
    let mut res = awc::Client::default()
        .post(format!(
            "http://127.0.0.1:{}/session/{session}/goog/cdp/execute",
            driver.port
        ))
        .send_json(&serde_json::json!({ "cmd": cmd, "params": params }))
        .await
        .expect("chromedriver");
    assert!(res.status().is_success(), "{cmd}: {:?}", res.body().await);
}

/// Keeps what every page of this session logs (`window.__console`, printed if the test fails;
/// warnings also in `window.__warnings`).
async fn capture_console(driver: &Driver, browser: &fantoccini::Client) {
    cdp(
        driver,
        browser,
        "Page.addScriptToEvaluateOnNewDocument",
        serde_json::json!({ "source": "window.__warnings = []; window.__console = []; for (const level of ['log', 'warn', 'error']) { const f = console[level]; console[level] = function (...a) { const line = a.map(String).join(' '); window.__console.push(level + ': ' + line); if (level === 'warn') window.__warnings.push(line); return f.apply(console, a); }; } window.addEventListener('error', e => window.__console.push('uncaught: ' + e.message));" }),
    )
    .await;
}

/// Waits until `script` (a function body) returns `true` in the page; fails after 30 s.
async fn wait_js(
    browser: &fantoccini::Client,
    script: &str,
) -> Result<(), fantoccini::error::CmdError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !js(browser, script).await?.as_bool().unwrap_or(false) {
        if Instant::now() > deadline {
            panic!("never true in the page: {script}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Whether the page scrolls sideways.
async fn scrolls_sideways(
    browser: &fantoccini::Client,
) -> Result<bool, fantoccini::error::CmdError> {
    let v = js(
        browser,
        "return document.documentElement.scrollWidth > document.documentElement.clientWidth + 1;",
    )
    .await?;
    Ok(v.as_bool().unwrap_or(true))
}

/// Actions cells that are not table cells, or that do not start where their column's header
/// starts (`table#id`).
async fn misaligned_actions(
    browser: &fantoccini::Client,
    table: &str,
) -> Result<serde_json::Value, fantoccini::error::CmdError> {
    js(
        browser,
        &format!(
            r#"
            const t = document.querySelector("table#{table}");
            if (!t) return ["no table {table}"];
            const heads = [...t.querySelectorAll("thead th")];
            const bad = [];
            for (const cell of t.querySelectorAll("td.actions")) {{
                const style = getComputedStyle(cell).display;
                const head = heads[cell.cellIndex];
                if (style !== "table-cell" || !head ||
                    Math.abs(head.getBoundingClientRect().left - cell.getBoundingClientRect().left) > 1) {{
                    bad.push(style + " " + cell.cellIndex);
                }}
            }}
            return bad;"#
        ),
    )
    .await
}

/// The UI's patterns, each defect of the first users' report checked in the browser: a session
/// whose access token expired is refreshed once and the page shown; pages, navigation and the
/// Overview follow the role; unknown paths, malformed ids and a completed setup get pages that
/// say so; messages sit under the form or beside the field they are about, one at a time, as
/// sentences, a lockout saying how long; forms clear after success; irreversible actions ask
/// first and can be cancelled; the enrollment command names the configured address; "Add a host"
/// is on Hosts; the Actions column lines up; nothing scrolls sideways at 390 px; there is a
/// favicon; a hard load of a host page logs no reactive-graph warning; the audit log page.
#[actix_rt::test]
#[ignore = "needs the wasm bundle and chromium; scripts/test.sh runs it"]
async fn the_ui_keeps_the_session_follows_the_role_and_puts_messages_where_the_eye_is() {
    use common::{bearer_for, call, setup_admin, web_and_db_hosts};
    use serde_json::json;
    let (_, wasm) = common::bundle().expect("no web bundle: scripts/test.sh builds it");
    assert!(wasm.is_file(), "{} missing", wasm.display());
    let db = TestDb::new(Engine::Sqlite);
    let mut config = test_config(&db);
    config.server.public_url = "https://patch.example.test:8443".into();
    // An agent package to serve, so Add a host shows the one-line install.
    config.server.agent_package = db.dir.path().join("patch-agent.deb");
    std::fs::write(&config.server.agent_package, b"a package").unwrap();
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let clock = server.state.clock.clone();
    let api_base = format!("http://{}", server.addr);
    let base = format!("http://localhost:{}", server.addr.port());
    setup_admin(&api_base, &config.data.dir).await;
    let admin = bearer_for(&api_base, "admin", "tangerine-Orbit-42").await;
    let (web, _db_host) = web_and_db_hosts(&server.state).await;
    for (name, role) in [("olga", "operator"), ("lou", "operator")] {
        let u = call(
            "POST",
            &format!("{api_base}/api/v1/users"),
            &admin,
            Some(json!({ "username": name, "password": "plum-Heron-2025!", "role": role })),
        )
        .await;
        assert_eq!(u.status, 201, "{}", u.body);
    }
    let driver = start_chromedriver();
    let browser = open_browser(&driver, &[]).await;
    // Reactive-graph warnings are printed with console.warn: keep them for the page to answer.
    capture_console(&driver, &browser).await;

    let result = async {
        // Setup after setup: complete, with the way to sign in.
        goto(&browser, &format!("{base}/setup")).await?;
        let done = text_of(&browser, "#setup-complete").await?;
        assert!(done.contains("Setup is complete"), "{done}");
        assert!(browser.find(Locator::Id("setup-submit")).await.is_err());
        browser.find(Locator::Css("#setup-complete a[href='/login']")).await?;

        // A locked account: the message says how long, as a sentence without Markdown.
        goto(&browser, &format!("{base}/login")).await?;
        let mut message = String::new();
        for _ in 0..7 {
            wait_enabled(&browser, "sign-in").await?;
            type_into(&browser, "username", "lou").await?;
            type_into(&browser, "password", "not-the-password").await?;
            browser.find(Locator::Id("sign-in")).await?.click().await?;
            wait_enabled(&browser, "sign-in").await?;
            message = text_of(&browser, "[data-testid='error']").await?;
            if message.contains("Try again in") {
                break;
            }
        }
        assert!(message.contains(". Try again in ") && message.ends_with('.'), "{message}");
        assert!(!message.contains("later") && !message.contains('`'), "{message}");
        assert!(message.chars().next().is_some_and(char::is_uppercase), "{message}");

        // Sign in as the Admin.
        type_into(&browser, "username", "admin").await?;
        type_into(&browser, "password", "tangerine-Orbit-42").await?;
        browser.find(Locator::Id("sign-in")).await?.click().await?;
        let records = text_of(&browser, "#audit-records").await?;
        let chain = text_of(&browser, "#audit-chain").await?;
        assert!(chain.contains(&format!("all {records} records")), "{records} / {chain}");
        assert!(browser.find(Locator::Id("click-check")).await.is_err(), "no development widget");
        browser.find(Locator::Css("link[rel='icon'][href='/favicon.ico']")).await?;

        // Fifteen minutes on a page: the access token expires. Opening Hosts refreshes the
        // session once (the page's reads share that refresh) and shows the hosts.
        clock.advance(16 * 60);
        click_link(&browser, "Hosts").await?;
        let hosts = text_containing(&browser, "#hosts", "web-1").await?;
        assert!(hosts.contains("db-1"), "{hosts}");
        assert!(browser.current_url().await?.path().ends_with("/hosts"));
        assert_eq!(text_of(&browser, "#signed-in-as").await?, "admin");
        // And a hard load after another quarter of an hour: the server finds the token expired,
        // the browser refreshes and reads again, nobody is sent to Sign in.
        clock.advance(16 * 60);
        goto(&browser, &format!("{base}/hosts")).await?;
        let hosts = text_containing(&browser, "#hosts", "web-1").await?;
        assert!(hosts.contains("db-1"), "{hosts}");
        assert!(browser.current_url().await?.path().ends_with("/hosts"));

        // Renewing asks first, and Cancel leaves things as they were.
        let row = format!("#hosts tr[data-host='{web}']");
        browser.find(Locator::Css(&format!("{row} button[data-action='renew']"))).await?.click().await?;
        browser.find(Locator::Css(&format!("{row} button[data-action='renew-cancel']"))).await?.click().await?;
        browser.find(Locator::Css(&format!("{row} button[data-action='renew']"))).await?;
        assert_eq!(misaligned_actions(&browser, "hosts").await?, json!([]));

        // Hosts links to "Add hosts" (its own page, whose code the browser fetches now); the
        // command names the configured address; the form clears.
        browser.find(Locator::Id("add-host-link")).await?.click().await?;
        wait_for(&browser, "#add-host #make-token").await?;
        assert!(browser.current_url().await?.path().ends_with("/hosts/add"));
        wait_for(&browser, "#discovery #discovery-start").await?;
        type_into(&browser, "token-host", "10.0.8.20").await?;
        wait_enabled(&browser, "make-token").await?.click().await?;
        let command = text_of(&browser, "#enroll-command").await?;
        assert!(command.contains("--manager https://patch.example.test:8443 --token-file -"), "{command}");
        let install = text_of(&browser, "#install-command").await?;
        assert!(
            install.starts_with("d=$(mktemp -d) && curl -fsSk -o \"$d/patch-agent.deb\" https://patch.example.test:8443/downloads/patch-agent.deb && ")
                && install.ends_with("systemctl enable --now patch-agent"),
            "{install}"
        );
        assert!(browser.find(Locator::Id("enroll-local-warning")).await.is_err());
        let host_field = browser.find(Locator::Id("token-host")).await?.prop("value").await?;
        assert_eq!(host_field.as_deref(), Some(""), "the form is cleared after success");
        // A hard load of a host page: no reactive-graph warning.
        goto(&browser, &format!("{base}/hosts/{web}")).await?;
        text_containing(&browser, "#host-name", "web-1").await?;
        wait_for(&browser, "#refresh").await?;
        let warnings = js(&browser, "return window.__warnings || [];").await?;
        let reactive: Vec<&serde_json::Value> = warnings
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w.as_str().is_some_and(|w| w.contains("reactive") || w.contains("outside")))
            .collect();
        assert!(reactive.is_empty(), "{reactive:?}");

        // Malformed ids and unknown pages.
        goto(&browser, &format!("{base}/hosts/abc")).await?;
        let bad = text_of(&browser, "#bad-id").await?;
        assert!(bad.contains("“abc” is not a host number"), "{bad}");
        goto(&browser, &format!("{base}/no/such/page")).await?;
        let missing = text_of(&browser, "#not-found").await?;
        assert!(missing.contains("Page not found"), "{missing}");

        // Certificates: revoking can be cancelled; rotating and renewing ask first.
        goto(&browser, &format!("{base}/certificates")).await?;
        browser.find(Locator::Css("a[href='/hosts/add']")).await?;
        assert!(browser.find(Locator::Id("make-token")).await.is_err());
        wait_for(&browser, "#certificates button[data-action='revoke']").await?.click().await?;
        browser.find(Locator::Css("#certificates button[data-action='revoke-cancel']")).await?.click().await?;
        wait_for(&browser, "#certificates button[data-action='revoke']").await?;
        // (The clock moved half an hour: a fresh API token.)
        let admin = bearer_for(&api_base, "admin", "tangerine-Orbit-42").await;
        let before = call("GET", &format!("{api_base}/api/v1/certificates"), &admin, None).await.body;
        browser.find(Locator::Css("#rotate-client button[data-action='rotate']")).await?.click().await?;
        let question = text_of(&browser, "#rotate-client .confirm").await?;
        assert!(question.contains("Replace the manager's client certificate"), "{question}");
        browser.find(Locator::Css("#rotate-client button[data-action='rotate-cancel']")).await?.click().await?;
        let after = call("GET", &format!("{api_base}/api/v1/certificates"), &admin, None).await.body;
        assert_eq!(before, after, "nothing was rotated");
        assert_eq!(misaligned_actions(&browser, "certificates").await?, json!([]));

        // Users: one message at a time, under its form; forms clear after success.
        click_link(&browser, "Users").await?;
        wait_enabled(&browser, "create-group").await?;
        type_into(&browser, "new-group", "web").await?;
        browser.find(Locator::Id("create-group")).await?.click().await?;
        let ok = text_containing(&browser, "#groups-notice", "Group created.").await?;
        assert_eq!(ok, "Group created.");
        let name = browser.find(Locator::Id("new-group")).await?.prop("value").await?;
        assert_eq!(name.as_deref(), Some(""), "the group form is cleared");
        type_into(&browser, "new-group", "web").await?;
        browser.find(Locator::Id("create-group")).await?.click().await?;
        let err = text_containing(&browser, "#groups-notice", "exists").await?;
        assert!(err.starts_with("A group named web exists"), "{err}");
        let greens = js(&browser, "return [...document.querySelectorAll('p.ok.notice-line')].map(e => e.textContent);").await?;
        assert_eq!(greens, json!([]), "the earlier success is gone");
        // The error sits inside the groups form, not at the top of the page.
        js(&browser, "if (!document.querySelector('form #groups-notice')) throw 'not in the form';").await?;
        type_into(&browser, "new-username", "nina").await?;
        type_into(&browser, "new-display", "Nina N.").await?;
        type_into(&browser, "new-email", "nina@example.test").await?;
        type_into(&browser, "new-password", "plum-Heron-2025!").await?;
        browser.find(Locator::Css("#new-user input[type='checkbox']")).await?.click().await?;
        browser.find(Locator::Id("create-user")).await?.click().await?;
        text_containing(&browser, "#new-user-notice", "User created.").await?;
        let fields = js(&browser, "return ['new-username','new-display','new-email','new-password'].map(i => document.getElementById(i).value).concat([...document.querySelectorAll('#new-user input[type=checkbox]')].map(c => String(c.checked)));").await?;
        assert!(
            fields.as_array().unwrap().iter().all(|v| v == "" || v == "false"),
            "every field cleared: {fields}"
        );
        // A refusal about one field is shown beside it.
        type_into(&browser, "new-username", "Bad Name!").await?;
        type_into(&browser, "new-password", "plum-Heron-2025!").await?;
        browser.find(Locator::Id("create-user")).await?.click().await?;
        let beside = text_of(&browser, "#new-user [data-field='username']").await?;
        assert!(beside.starts_with("User names are"), "{beside}");
        assert!(browser.find(Locator::Css("#new-user-notice.error")).await.is_err(), "said once");
        // Deleting asks first.
        let row = "#users tr[data-user='nina']";
        wait_for(&browser, &format!("{row} button[data-action='delete']")).await?.click().await?;
        browser.find(Locator::Css(&format!("{row} button[data-action='delete-cancel']"))).await?.click().await?;
        browser.find(Locator::Css(row)).await?;
        assert_eq!(misaligned_actions(&browser, "users").await?, json!([]));

        // Settings: a refusal as a sentence, without backticks, under the allow-list form.
        click_link(&browser, "Settings").await?;
        wait_enabled(&browser, "allow-save").await?;
        type_into(&browser, "allow-entries", "not-an-ip").await?;
        browser.find(Locator::Id("allow-save")).await?.click().await?;
        let refusal = text_of(&browser, "[data-field='entries'], #allow-notice").await?;
        assert!(refusal.contains("not-an-ip") && !refusal.contains('`'), "{refusal}");
        assert!(refusal.starts_with("“not-an-ip” is not") && refusal.ends_with('.'), "{refusal}");

        // The audit log: verified, filtered by family of actions.
        click_link(&browser, "Audit log").await?;
        wait_for(&browser, "#audit-chain[data-state='intact']").await?;
        type_into(&browser, "audit-action", "auth.").await?;
        browser.find(Locator::Id("audit-apply")).await?.click().await?;
        browser
            .wait()
            .at_most(Duration::from_secs(30))
            .for_url(&openidconnect::url::Url::parse(&format!("{base}/audit?action=auth.")).unwrap())
            .await?;
        // The filtered page replaces the whole one once it has arrived.
        wait_js(&browser, "const rows = [...document.querySelectorAll('#audit tr[data-action]')]; return rows.length > 0 && rows.every(r => r.dataset.action.startsWith('auth.'));").await?;
        let actions = js(&browser, "return [...document.querySelectorAll('#audit tr[data-action]')].map(r => r.dataset.action);").await?;
        let actions = actions.as_array().unwrap();
        assert!(!actions.is_empty() && actions.iter().all(|a| a.as_str().unwrap().starts_with("auth.")), "{actions:?}");

        // 390 px wide: no page scrolls sideways.
        browser.set_window_size(390, 844).await?;
        for path in ["/", "/hosts", "/users", "/certificates", "/settings", "/audit", "/account", "/jobs", "/windows"] {
            goto(&browser, &format!("{base}{path}")).await?;
            wait_for(&browser, "section.page h1").await?;
            assert!(!scrolls_sideways(&browser).await?, "{path} scrolls sideways at 390 px");
            // And the page hydrated from what the server sent, without a mismatch.
            let console = js(&browser, "return window.__console || [];").await?;
            let errors: Vec<&serde_json::Value> = console
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| {
                    l.as_str().is_some_and(|l| {
                        l.starts_with("error")
                            || l.starts_with("uncaught")
                            || l.contains("outside a reactive tracking context")
                            || l.contains("outside a <Suspense/>")
                    })
                })
                .collect();
            assert!(errors.is_empty(), "{path}: {errors:?}");
        }
        browser.set_window_size(1280, 900).await?;

        // An Operator: no Admin links; an Admin page says so and offers the way back; the
        // Overview says their groups hold no host (two hosts exist outside them).
        browser.find(Locator::Id("sign-out")).await?.click().await?;
        wait_enabled(&browser, "sign-in").await?;
        type_into(&browser, "username", "olga").await?;
        type_into(&browser, "password", "plum-Heron-2025!").await?;
        browser.find(Locator::Id("sign-in")).await?.click().await?;
        let overview = text_containing(&browser, "section.page", "None of your groups holds a host yet").await?;
        assert!(!overview.contains("No hosts are enrolled yet"), "{overview}");
        let nav = text_of(&browser, "nav.nav").await?;
        assert!(!nav.contains("Certificates") && !nav.contains("Settings") && !nav.contains("Audit log"), "{nav}");
        for path in ["/hosts/add", "/certificates", "/users", "/settings", "/audit"] {
            goto(&browser, &format!("{base}{path}")).await?;
            let refusal = text_of(&browser, "#admins-only").await?;
            assert!(refusal.contains("This page is for Admins"), "{path}: {refusal}");
            browser.find(Locator::Css("#admins-only a[href='/']")).await?;
            assert!(browser.find(Locator::Css("form")).await.is_err(), "{path} shows no Admin form");
        }
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    finish(&browser, result.is_err()).await;
    server.stop().await;
    result.unwrap();
}
