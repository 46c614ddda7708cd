//! The web client: the page at `GET /` and its files under `/client/`.
//!
//! The files in `gateway/web/` are built into the binary, so deploying a
//! gateway deploys the client that matches its protocol, and nothing is read
//! from disk at run time. Every answer carries a Content-Security-Policy that
//! allows only this origin's scripts and styles (no inline ones), pictures
//! from here and from `blob:`/`data:` (previews of uploads), and connections
//! back to this host: message text and nicknames come from other users, and
//! the client renders them as text, but the policy is what holds if a bug
//! ever let one through as markup.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};

/// The client's files, from `gateway/web/` at build time.
static CLIENT: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/web");

/// The policy on every answer of the web client.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob: data:; connect-src 'self' ws: wss:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page: `index.html`.
pub fn page() -> Response {
    asset_response("index.html")
}

/// `GET /client/{*path}`: one of the client's files, or `404`.
pub async fn asset(Path(path): Path<String>) -> Response {
    asset_response(&path)
}

fn asset_response(path: &str) -> Response {
    let (Some(file), Some(content_type)) = (CLIENT.get_file(path), content_type(path)) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let mut response = file.contents().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Revalidated on every load, so a new gateway's client replaces the old
    // one at once; the files are small.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The type of a client file, by its extension; `None` for a kind the client
/// does not ship, which is then not served at all.
fn content_type(path: &str) -> Option<&'static str> {
    let extension = path.rsplit_once('.').map(|(_, ext)| ext)?;
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webmanifest" => "application/manifest+json",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    #[test]
    fn the_page_is_html_under_a_policy_without_inline_scripts() {
        let page = page();
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(
            header_of(&page, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        let policy = header_of(&page, header::CONTENT_SECURITY_POLICY);
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert_eq!(header_of(&page, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    }

    #[test]
    fn every_shipped_file_has_a_known_type() {
        for file in CLIENT.files() {
            let path = file.path().to_string_lossy();
            assert!(content_type(&path).is_some(), "{path} would not be served");
        }
    }

    #[test]
    fn the_page_has_no_inline_script_handler_or_style() {
        let html = CLIENT
            .get_file("index.html")
            .and_then(|f| f.contents_utf8())
            .unwrap_or_default();
        assert!(html.contains("<script type=\"module\" src=\"/client/app.js\">"));
        for needle in ["<script>", " onclick=", " onload=", " style=", "<style"] {
            assert!(!html.contains(needle), "index.html contains {needle:?}");
        }
    }

    #[test]
    fn unknown_and_escaping_paths_are_not_found() {
        for path in ["nope.js", "../Cargo.toml", "/etc/passwd", "index", ""] {
            assert_eq!(
                asset_response(path).status(),
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
        assert_eq!(
            header_of(&asset_response("app.js"), header::CONTENT_TYPE),
            "text/javascript; charset=utf-8"
        );
    }
}
