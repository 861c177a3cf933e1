//! The whole web pipeline in a real browser: headless Chromium (Debian's `chromium`, driven through
//! `chromedriver`) loads the server-rendered page, the WebAssembly bundle hydrates it, and a click
//! updates a counter — which only works if hydration happened.
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

#[actix_rt::test]
#[ignore = "needs the wasm bundle and chromium; scripts/test.sh runs it"]
async fn page_hydrates_and_reacts_to_clicks() {
    let wasm = site_root()
        .join("pkg")
        .join(format!("{}_bg.wasm", frontend_leptos::OUTPUT_NAME));
    assert!(
        wasm.is_file(),
        "{} missing: build it with scripts/build-wasm.sh",
        wasm.display()
    );

    let db = TestDb::new(Engine::Sqlite);
    let server = patch_manager::server::start(test_config(&db))
        .await
        .unwrap();
    let driver = start_chromedriver();

    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": std::env::var("LPM_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ]
        }
    });
    let caps = caps.as_object().unwrap().clone();
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("WebDriver session");

    let result = async {
        browser.goto(&format!("http://{}/", server.addr)).await?;
        // Server-rendered content is there.
        let engine = browser
            .find(Locator::Id("database-backend"))
            .await?
            .text()
            .await?;
        assert_eq!(engine, "SQLite (embedded)");
        // Hydration flips the marker; wait for it (the wasm must download and start).
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
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    browser.close().await.ok();
    server.stop().await;
    result.unwrap();
}
