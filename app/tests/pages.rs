//! The pages as the server sends them, read without a browser: a page arrives with its data (the
//! reads resolved on the server through the API's own access rules), for the right role only; a
//! visitor without a session is redirected before any page is sent; unknown paths, malformed ids
//! and a completed setup get pages that say so; the favicon exists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    bearer_for, call, cookie_value, setup_admin, test_config, web_and_db_hosts, Engine, TestDb,
};
use serde_json::json;

/// Signs in as a browser does; answers the `Cookie` header its cookies make.
async fn browser_cookies(base: &str, user: &str, password: &str) -> String {
    let a = call(
        "POST",
        &format!("{base}/api/v1/auth/login"),
        &[],
        Some(json!({ "username": user, "password": password, "client": "browser" })),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    ["lpm_csrf", "lpm_access"]
        .iter()
        .map(|n| format!("{n}={}", cookie_value(&a.cookies, n)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A page as HTML: status, `Location`, body.
async fn page(url: &str, cookie: Option<&str>) -> (u16, Option<String>, String) {
    let c = awc::Client::builder()
        .disable_redirects()
        .timeout(std::time::Duration::from_secs(30))
        .finish();
    let mut req = c.get(url).insert_header(("accept", "text/html"));
    // Each cookie in a header field of its own, as HTTP/2 clients may send them: the page's
    // reads must still carry the whole session.
    for crumb in cookie.into_iter().flat_map(|c| c.split("; ")) {
        req = req.append_header(("cookie", crumb));
    }
    let mut res = req.send().await.unwrap();
    let location = res
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = res.body().limit(8 << 20).await.unwrap();
    (
        res.status().as_u16(),
        location,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// The text of the page: tags and the hydration data (scripts) left out, entities as typed.
fn visible_text(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .find("</script>")
            .map_or("", |end| &rest[start + end + 9..]);
    }
    out.push_str(rest);
    let mut text = String::new();
    let mut in_tag = false;
    for ch in out.chars() {
        match ch {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&amp;", "&")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
}

#[actix_rt::test]
async fn pages_arrive_with_their_data_for_the_role_that_may_see_them() {
    let db = TestDb::new(Engine::Sqlite);
    let mut config = test_config(&db);
    config.server.public_url = "https://patch.example.test:8443".into();
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    setup_admin(&base, &config.data.dir).await;
    let admin = bearer_for(&base, "admin", "tangerine-Orbit-42").await;

    // Two hosts; an Operator whose group holds one of them.
    let (web, db_host) = web_and_db_hosts(&server.state).await;
    let group = call(
        "POST",
        &format!("{base}/api/v1/groups"),
        &admin,
        Some(json!({ "name": "web" })),
    )
    .await;
    assert_eq!(group.status, 201, "{}", group.body);
    let gid = group.body["id"].as_i64().unwrap();
    let put = call(
        "PUT",
        &format!("{base}/api/v1/hosts/{web}/groups"),
        &admin,
        Some(json!({ "group_ids": [gid] })),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.body);
    for (name, groups) in [("olga", vec![gid]), ("otto", vec![])] {
        let u = call(
            "POST",
            &format!("{base}/api/v1/users"),
            &admin,
            Some(
                json!({ "username": name, "password": "plum-Heron-2025!", "role": "operator",
                "group_ids": groups }),
            ),
        )
        .await;
        assert_eq!(u.status, 201, "{}", u.body);
    }

    // Without a session: the server redirects before sending any page.
    let (status, location, _) = page(&format!("{base}/hosts"), None).await;
    assert_eq!((status, location.as_deref()), (302, Some("/login")));
    let (status, _, html) = page(&format!("{base}/login"), None).await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"sign-in\""), "the sign-in form");

    // The Admin's Hosts page carries both hosts in its HTML, before any script runs.
    let cookie = browser_cookies(&base, "admin", "tangerine-Orbit-42").await;
    let (status, _, html) = page(&format!("{base}/hosts"), Some(&cookie)).await;
    assert_eq!(status, 200);
    let text = visible_text(&html);
    assert!(
        html.contains("id=\"hosts\""),
        "the hosts table is in the HTML"
    );
    for name in ["web-1", "db-1"] {
        assert!(text.contains(name), "{name} on the first paint: {text}");
    }
    assert!(
        !text.contains("Loading…"),
        "nothing waits for the browser: {text}"
    );
    // The navigation follows the role; Hosts links to the page that adds hosts, which carries the
    // token form and discovery.
    assert!(text.contains("Audit log") && text.contains("Certificates"));
    assert!(html.contains("href=\"/hosts/add\""));
    let (status, _, add) = page(&format!("{base}/hosts/add"), Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(add.contains("id=\"add-host\"") && add.contains("id=\"discovery\""));
    // A host page, the overview and the audit log carry theirs too.
    let (_, _, html) = page(&format!("{base}/hosts/{db_host}"), Some(&cookie)).await;
    assert!(visible_text(&html).contains("db-1.test"), "host page data");
    let (_, _, html) = page(&format!("{base}/"), Some(&cookie)).await;
    let text = visible_text(&html);
    assert!(!text.contains("Browser check"), "no development widget");
    assert!(
        text.contains("Intact: all"),
        "the chain verified up to the record count: {text}"
    );
    let (_, _, html) = page(&format!("{base}/audit"), Some(&cookie)).await;
    let text = visible_text(&html);
    assert!(html.contains("data-state=\"intact\""), "{text}");
    assert!(
        text.contains("group.created") || text.contains("user.created"),
        "{text}"
    );

    // The Operator's page shows their group's host only, and no Admin page.
    let olga = browser_cookies(&base, "olga", "plum-Heron-2025!").await;
    let (_, _, html) = page(&format!("{base}/hosts"), Some(&olga)).await;
    let text = visible_text(&html);
    assert!(text.contains("web-1") && !text.contains("db-1"), "{text}");
    assert!(
        !text.contains("Certificates") && !text.contains("Audit log"),
        "{text}"
    );
    assert!(
        !html.contains("href=\"/hosts/add\""),
        "no way to add hosts for an Operator"
    );
    for admin_page in [
        "/hosts/add",
        "/certificates",
        "/users",
        "/settings",
        "/audit",
    ] {
        let (status, _, html) = page(&format!("{base}{admin_page}"), Some(&olga)).await;
        let text = visible_text(&html);
        assert_eq!(status, 200, "{admin_page}");
        assert!(
            text.contains("This page is for Admins") && text.contains("Back to the overview"),
            "{admin_page}: {text}"
        );
        assert!(
            !html.contains("id=\"certificates\"")
                && !html.contains("id=\"users\"")
                && !html.contains("id=\"add-host\""),
            "{admin_page}"
        );
    }
    // An Operator whose groups hold no host is told so, not that the fleet is empty.
    let otto = browser_cookies(&base, "otto", "plum-Heron-2025!").await;
    let (_, _, html) = page(&format!("{base}/"), Some(&otto)).await;
    let text = visible_text(&html);
    assert!(
        text.contains("None of your groups holds a host yet"),
        "{text}"
    );
    assert!(!text.contains("No hosts are enrolled yet"), "{text}");

    // A malformed id, an unknown page, an unknown API path.
    let (status, _, html) = page(&format!("{base}/hosts/abc"), Some(&cookie)).await;
    assert_eq!(status, 404);
    assert!(visible_text(&html).contains("“abc” is not a host number"));
    let (status, _, html) = page(&format!("{base}/no/such/page"), Some(&cookie)).await;
    assert_eq!(status, 404);
    assert!(html.starts_with("<!DOCTYPE html>") && visible_text(&html).contains("Page not found"));
    let api_404 = call("GET", &format!("{base}/api/v1/no-such-thing"), &admin, None).await;
    assert_eq!(api_404.status, 404);
    assert_eq!(api_404.body["error"]["code"], "not_found");

    // Setup after setup: said to be complete, with the way to sign in.
    let (status, _, html) = page(&format!("{base}/setup"), None).await;
    assert_eq!(status, 200);
    let text = visible_text(&html);
    assert!(text.contains("Setup is complete"), "{text}");
    assert!(!html.contains("id=\"setup-submit\""));

    // The favicon.
    let c = awc::Client::default();
    let mut res = c.get(format!("{base}/favicon.ico")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let icon = res.body().await.unwrap();
    assert_eq!(&icon[..4], &[0, 0, 1, 0], "an ICO file");

    // The enrollment command names the configured public URL.
    let token = call(
        "POST",
        &format!("{base}/api/v1/enrollment-tokens"),
        &admin,
        Some(json!({ "minutes": 30 })),
    )
    .await;
    assert_eq!(token.status, 201, "{}", token.body);
    let command = token.body["command"].as_str().unwrap();
    assert!(
        command.contains("--manager https://patch.example.test:8443 "),
        "{command}"
    );
    assert_eq!(token.body["manager_url_is_local"], false);
}
