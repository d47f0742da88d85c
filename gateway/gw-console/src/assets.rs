//! The console's static files, compiled in: htmx (vendored, see `assets/README.md`) and the stylesheet.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::ConsoleError;

pub const HTMX: &str = "/console/assets/htmx-2.0.11.min.js";
pub const CSS: &str = "/console/assets/console-1.css";

/// Names carry a version, so the files can be cached for a year.
pub async fn serve(Path(name): Path<String>) -> Response {
    let (content_type, body): (&str, &'static [u8]) = match name.as_str() {
        "htmx-2.0.11.min.js" => ("text/javascript", include_bytes!("../assets/htmx.min.js")),
        "console-1.css" => ("text/css", include_bytes!("../assets/console.css")),
        _ => return ConsoleError::NotFound.into_response(),
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")], body)
        .into_response()
}
