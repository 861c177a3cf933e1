//! The web bundle under `/pkg/<dir>`: only the files `pkg/bundle.json` lists, in the directory it
//! names (the hash of their content), each as the precompressed variant the client accepts
//! (brotli, gzip, or as is), immutable for a year, and the pages load the bundle from that
//! directory. The variants here are real brotli and gzip of the files; the browser tests load the
//! real (split) bundle the build script makes, and `http.rs` checks a page names its chunks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{test_config, Engine, TestDb};
use std::io::{Read, Write};

const NAME: &str = "patch_manager_ui";
const DIR: &str = "0123456789abcdef";

/// A site whose bundle is `NAME` in `pkg/DIR`: a JS file and a "wasm" of 64 KiB of varied bytes,
/// each with its brotli and gzip variants.
fn site() -> (tempfile::TempDir, Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("pkg").join(DIR);
    std::fs::create_dir_all(&pkg).unwrap();
    let js = b"export default function init() {}\nexport function hydrate() {}\n".repeat(50);
    let wasm: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 % 17)
        .collect();
    for (file, body) in [
        (format!("{NAME}.js"), &js),
        (format!("{NAME}_bg.wasm"), &wasm),
    ] {
        std::fs::write(pkg.join(&file), body).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(body).unwrap();
        std::fs::write(pkg.join(format!("{file}.gz")), gz.finish().unwrap()).unwrap();
        let mut br = Vec::new();
        brotli::BrotliCompress(
            &mut &body[..],
            &mut br,
            &brotli::enc::BrotliEncoderParams::default(),
        )
        .unwrap();
        std::fs::write(pkg.join(format!("{file}.br")), br).unwrap();
    }
    // A file beside the bundle that is not part of it.
    std::fs::write(pkg.join("notes.txt"), "not served").unwrap();
    std::fs::write(
        dir.path().join("pkg/bundle.json"),
        format!(
            r#"{{"source":"00","profile":"wasm-release","dir":"{DIR}","name":"{NAME}","files":["{NAME}.js","{NAME}_bg.wasm"],"encodings":["br","gzip"]}}"#
        ),
    )
    .unwrap();
    (dir, js, wasm)
}

fn unbrotli(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(body, 4096)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[actix_rt::test]
async fn the_bundle_is_served_precompressed_immutable_and_by_its_hashed_name() {
    let (site, js, wasm) = site();
    let db = TestDb::new(Engine::Sqlite);
    let mut config = test_config(&db);
    config.server.site_root = site.path().to_owned();
    let server = patch_manager::server::start(config).await.unwrap();
    let base = format!("http://{}", server.addr);
    let c = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .finish();
    let get = |path: &str, accept: Option<&str>| {
        let mut req = c.get(format!("{base}{path}")).no_decompress();
        if let Some(a) = accept {
            req = req.insert_header(("accept-encoding", a));
        }
        req.send()
    };

    // Chromium's header: brotli.
    let mut res = get(
        &format!("/pkg/{DIR}/{NAME}_bg.wasm"),
        Some("gzip, deflate, br, zstd"),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h.get("content-encoding").unwrap(), "br");
    assert_eq!(h.get("content-type").unwrap(), "application/wasm");
    let cache = h.get("cache-control").unwrap().to_str().unwrap();
    assert!(
        cache.contains("immutable") && cache.contains("max-age=31536000"),
        "{cache}"
    );
    assert!(h
        .get("vary")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("accept-encoding"));
    let body = res.body().limit(1 << 20).await.unwrap();
    assert!(body.len() < wasm.len(), "the brotli variant is smaller");
    assert_eq!(unbrotli(&body), wasm);

    // gzip only, or brotli refused: gzip.
    for accept in ["gzip", "br;q=0, gzip;q=0.5"] {
        let mut res = get(&format!("/pkg/{DIR}/{NAME}.js"), Some(accept))
            .await
            .unwrap();
        assert_eq!(
            res.headers().get("content-encoding").unwrap(),
            "gzip",
            "{accept}"
        );
        assert!(res
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/javascript"));
        assert_eq!(gunzip(&res.body().await.unwrap()), js, "{accept}");
    }

    // No encoding accepted (or none asked for): the file as it is.
    for accept in [Some("identity"), None] {
        let mut res = get(&format!("/pkg/{DIR}/{NAME}_bg.wasm"), accept)
            .await
            .unwrap();
        assert!(
            res.headers().get("content-encoding").is_none(),
            "{accept:?}"
        );
        assert_eq!(res.body().limit(1 << 20).await.unwrap(), wasm, "{accept:?}");
    }

    // Nothing but the listed files: not the manifest, not a variant by its own name, not a file
    // beside them, not a path out of the directory, not a listed file in another directory.
    for path in [
        "/pkg/bundle.json".to_owned(),
        format!("/pkg/{DIR}/{NAME}_bg.wasm.br"),
        format!("/pkg/{DIR}/notes.txt"),
        format!("/pkg/{DIR}/..%2F..%2Fetc%2Fpasswd"),
        format!("/pkg/{DIR}/%2e%2e/bundle.json"),
        "/pkg/%2e%2e/bundle.json".to_owned(),
        format!("/pkg/{NAME}.js"),
        format!("/pkg/fedcba9876543210/{NAME}.js"),
        format!("/pkg/%2e%2e/{NAME}.js"),
    ] {
        let res = get(&path, Some("br")).await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }

    // The pages load the bundle from its directory.
    let mut res = c
        .get(format!("{base}/setup"))
        .insert_header(("accept", "text/html"))
        .send()
        .await
        .unwrap();
    let page = String::from_utf8_lossy(&res.body().limit(4 << 20).await.unwrap()).into_owned();
    assert!(page.contains(&format!("/pkg/{DIR}/{NAME}.js")), "{page}");
    assert!(
        page.contains(&format!("/pkg/{DIR}/{NAME}_bg.wasm")),
        "{page}"
    );
    server.stop().await;
}

#[actix_rt::test]
async fn a_manifest_naming_a_path_stops_the_manager_with_the_reason() {
    let (site, _, _) = site();
    std::fs::write(
        site.path().join("pkg/bundle.json"),
        r#"{"source":"00","profile":"dev","dir":"00","name":"x","files":["../../secrets.key"]}"#,
    )
    .unwrap();
    let db = TestDb::new(Engine::Sqlite);
    let mut config = test_config(&db);
    config.server.site_root = site.path().to_owned();
    let err = match patch_manager::server::start(config).await {
        Ok(_) => panic!("started with a manifest naming a path"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("not a plain file name"), "{err}");
}
