//! The manager's Content-Security-Policy, in one place: the server-rendered pages send it with
//! their own nonce, every other answer without one. No inline script runs without the nonce
//! (no `'unsafe-inline'` for scripts); WebAssembly may be compiled (`'wasm-unsafe-eval'`);
//! nothing loads from other origins.

/// The policy; `nonce` allows the page's own inline scripts (the hydration loader).
pub fn policy(nonce: Option<&str>) -> String {
    let scripts = match nonce {
        Some(n) => format!("'self' 'nonce-{n}' 'wasm-unsafe-eval'"),
        None => "'self' 'wasm-unsafe-eval'".to_owned(),
    };
    format!(
        "default-src 'self'; script-src {scripts}; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
         form-action 'self'; object-src 'none'"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_inline_scripts_without_the_nonce() {
        let p = super::policy(None);
        let scripts = p
            .split(';')
            .find(|d| d.trim().starts_with("script-src"))
            .unwrap();
        assert!(!scripts.contains("unsafe-inline"), "{p}");
        assert!(super::policy(Some("abc")).contains("'nonce-abc'"));
    }
}
