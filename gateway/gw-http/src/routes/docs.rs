//! `/docs`: the interactive API reference (Scalar), served entirely from the binary so it works offline and behind
//! proxies that block CDNs. The page is a few lines of HTML written here; the UI is Scalar's standalone browser
//! bundle, vendored in `assets/scalar/` (its README says where it comes from and how to update it) and embedded at
//! build time. The page names no other origin, and its Content-Security-Policy keeps the browser from loading or
//! sending anything elsewhere (Scalar's default fonts, telemetry, agent and developer toolbar are also switched off in its settings).

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The vendored `@scalar/api-reference` version. Part of the script's path, so a new version is a new URL and the
/// old one may be cached for ever.
macro_rules! scalar_version {
    () => {
        "1.76.4"
    };
}

/// Where the page loads the bundle from.
pub const SCRIPT_PATH: &str = concat!("/docs/assets/scalar-api-reference-", scalar_version!(), ".js");

/// `dist/browser/standalone.js` of `@scalar/api-reference`, unmodified.
pub const SCALAR_BUNDLE: &[u8] = include_bytes!("../../assets/scalar/standalone.js");

/// Starts the UI on the document this server serves. Relative URLs, so the page also works under a path prefix
/// added by a reverse proxy.
/// Scalar's developer toolbar (shown on localhost) offers to upload the document to Scalar's services; it is hidden.
const INIT_SCRIPT: &str = "Scalar.createApiReference('#app', { url: 'openapi.json', withDefaultFonts: false, \
                           telemetry: false, agent: { disabled: true }, mcp: { disabled: true }, \
                           showDeveloperTools: 'never' })";

static PAGE: LazyLock<String> = LazyLock::new(|| {
    let script = SCRIPT_PATH.trim_start_matches('/');
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Gateway API reference</title>\n</head>\n<body>\n<div id=\"app\"></div>\n\
         <script src=\"{script}\"></script>\n<script>{INIT_SCRIPT}</script>\n</body>\n</html>\n"
    )
});

/// Same origin only; the one inline script is allowed by its hash. Styles are inline (Scalar injects them), images
/// may be data or blob URLs (icons, downloads).
static CONTENT_SECURITY_POLICY: LazyLock<String> = LazyLock::new(|| {
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(INIT_SCRIPT.as_bytes()));
    format!(
        "default-src 'self'; script-src 'self' 'sha256-{hash}'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; \
         object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
    )
});

/// The API reference page.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page is tiny and names the bundle's version: always revalidated, so an upgrade shows at once.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY.as_str()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE.as_str(),
    )
        .into_response()
}

/// The Scalar bundle: its URL carries its version, so it never changes and is cached for a year.
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        SCALAR_BUNDLE,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_path_names_the_vendored_version() {
        assert_eq!(SCRIPT_PATH, "/docs/assets/scalar-api-reference-1.76.4.js");
        let readme = include_str!("../../assets/scalar/README.md");
        let named = concat!("@scalar/api-reference@", scalar_version!());
        assert!(readme.contains(named), "the README names the vendored version");
        assert!(SCALAR_BUNDLE.len() > 1_000_000 && SCALAR_BUNDLE.starts_with(b"(function(){"));
    }

    #[test]
    fn the_page_names_no_other_origin() {
        let page = PAGE.as_str();
        assert!(page.contains(&format!("<script src=\"{}\">", SCRIPT_PATH.trim_start_matches('/'))), "{page}");
        for external in ["http:", "https:", "//"] {
            assert!(!page.contains(external), "{external} in {page}");
        }
        let policy = CONTENT_SECURITY_POLICY.as_str();
        assert!(policy.starts_with("default-src 'self';") && !policy.contains("http"), "{policy}");
    }
}
