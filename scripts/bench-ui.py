#!/usr/bin/env python3
"""Loads one page of the manager's web UI in headless Chromium (through chromedriver's WebDriver
HTTP API, standard library only) again and again, and prints the timings of each load as JSON
lines, from the browser's own clocks (milliseconds since the navigation started):
  ttfb       first byte of the HTML (Navigation Timing responseStart)
  html       last byte of the HTML (responseEnd): the server-rendered page with its data
  fcp        first contentful paint (Paint Timing)
  hydrated   the `lpm-hydrated` mark the bundle sets when hydration ends: the page answers
             clicks and typing from here (this is what docs/benchmarks.md calls interactive)
  wasm_bytes the encoded size (as sent: compressed) of all WebAssembly the page fetched (the
             main module and the route's chunks; wasm_modules how many), wasm_transfer what
             crossed the network for them (0 when the browser's cache answered without asking)
  rows       host rows in the table at that moment, and whether a "Loading…" was ever on screen
             before hydration (a MutationObserver cannot see the SSR paint itself; the rows in
             the HTML are checked by the caller)
Each load is "cold" (the browser's HTTP cache cleared first, as a first visit) or "warm".

usage: bench-ui.py CHROMEDRIVER_PORT BASE_URL PATH USER PASSWORD LOADS MODE(cold|warm) LABEL SPKI
SPKI: base64 SHA-256 of the manager's web certificate's public key, which Chromium is told to
accept (--ignore-certificate-errors-spki-list): unlike --ignore-certificate-errors, the page
then counts as securely loaded and its resources go into the HTTP cache.
"""
import http.cookies, json, ssl, sys, time, urllib.request


def wd(port, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        out = json.load(r)
    return out.get("value")


def sign_in(base, user, password):
    """Signs in as a browser would (client "browser") and returns the cookies it was given."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # loopback, the manager's own test CA; nothing else is sent
    req = urllib.request.Request(f"{base}/api/v1/auth/login", method="POST",
                                 data=json.dumps({"username": user, "password": password,
                                                  "client": "browser"}).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
        cookies = []
        for header in r.headers.get_all("set-cookie") or []:
            c = http.cookies.SimpleCookie()
            c.load(header)
            for name, morsel in c.items():
                cookies.append({"name": name, "value": morsel.value, "path": morsel["path"] or "/",
                                "secure": bool(morsel["secure"]), "httpOnly": bool(morsel["httponly"])})
    if not any(c["name"] == "lpm_access" for c in cookies):
        sys.exit(f"sign-in gave no session cookie: {cookies}")
    return cookies


MEASURE = """
const done = arguments[arguments.length - 1];
const t0 = Date.now();
// Every WebAssembly module the page fetched (the main module and the route's chunks).
const wasm = () => performance.getEntriesByType('resource').filter(r => r.name.endsWith('.wasm'));
(function wait() {
  const mark = performance.getEntriesByName('lpm-hydrated')[0];
  if (mark || Date.now() - t0 > 30000) {
    const nav = performance.getEntriesByType('navigation')[0];
    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
    done({
      ttfb: nav.responseStart, html: nav.responseEnd,
      fcp: fcp ? fcp.startTime : null, hydrated: mark ? mark.startTime : null,
      rows: document.querySelectorAll('#hosts tbody tr').length,
      loading_seen: !!window.__lpmLoadingSeen,
      wasm_modules: wasm().length,
      wasm_bytes: wasm().reduce((n, r) => n + r.encodedBodySize, 0),
      wasm_transfer: wasm().reduce((n, r) => n + r.transferSize, 0),
    });
  } else {
    setTimeout(wait, 2);
  }
})();
"""

# Watches, from the first script the page runs, for any "Loading…" placeholder appearing.
WATCH = """
window.__lpmLoadingSeen = false;
new MutationObserver(() => {
  if (!window.__lpmLoadingSeen && document.body && document.body.innerText.includes('Loading…')) {
    window.__lpmLoadingSeen = true;
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def main():
    port, base, path, user, password, loads, mode, label, spki = sys.argv[1:10]
    loads = int(loads)
    caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
        "binary": "/usr/bin/chromium",
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,900",
                 f"--ignore-certificate-errors-spki-list={spki}"]}}}}
    sid = None
    try:
        sid = wd(port, "POST", "/session", caps)["sessionId"]
        cdp = lambda cmd, params=None: wd(port, "POST", f"/session/{sid}/goog/cdp/execute",
                                           {"cmd": cmd, "params": params or {}})
        # Cookies belong to the origin: open it once (the sign-in page needs no session).
        wd(port, "POST", f"/session/{sid}/url", {"url": f"{base}/login"})
        for c in sign_in(base, user, password):
            wd(port, "POST", f"/session/{sid}/cookie", {"cookie": c})
        cdp("Page.enable")
        cdp("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH})
        # One load not counted: the warm runs start from a filled cache, the cold ones from a
        # browser process that has already started its renderer.
        wd(port, "POST", f"/session/{sid}/url", {"url": f"{base}{path}"})
        wd(port, "POST", f"/session/{sid}/execute/async", {"script": MEASURE, "args": []})
        for _ in range(loads):
            if mode == "cold":
                cdp("Network.clearBrowserCache")
            wd(port, "POST", f"/session/{sid}/url", {"url": "about:blank"})
            wd(port, "POST", f"/session/{sid}/url", {"url": f"{base}{path}"})
            current = wd(port, "GET", f"/session/{sid}/url")
            if not current.endswith(path):
                sys.exit(f"the page went to {current}, not {path}: is the session valid?")
            m = wd(port, "POST", f"/session/{sid}/execute/async", {"script": MEASURE, "args": []})
            if m["hydrated"] is None:
                sys.exit(f"the page never hydrated: {m}")
            m.update({"label": label, "mode": mode})
            print(json.dumps(m), flush=True)
    finally:
        if sid:
            wd(port, "DELETE", f"/session/{sid}")


if __name__ == "__main__":
    main()
