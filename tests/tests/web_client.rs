//! The web client is served by the gateway itself, at `/` for a plain
//! request, under a strict Content-Security-Policy, with its files under
//! `/client/`; and through the front door too. A WebSocket upgrade at `/`
//! is unchanged.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use switchyard_tests::Stack;
use switchyard_tests::front_door::{FrontDoor, FrontDoorKind};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// `GET base + path`: the status, the named headers and the body.
async fn get(base: &str, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let url = format!("{base}{path}");
    let response = reqwest::get(&url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    (status, headers, body)
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The page, one script and one stylesheet from `base`, and a missing file.
async fn assert_client_served(base: &str) {
    let (status, headers, body) = get(base, "/").await;
    assert_eq!(status, 200, "GET {base}/ answered {status}: {body}");
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    let policy = header(&headers, "content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self' ws: wss:",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} missing: {policy}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert!(
        body.contains(r#"<script type="module" src="/client/app.js"></script>"#),
        "{body}"
    );

    for (path, content_type) in [
        ("/client/app.js", "text/javascript; charset=utf-8"),
        ("/client/connection.js", "text/javascript; charset=utf-8"),
        ("/client/style.css", "text/css; charset=utf-8"),
    ] {
        let (status, headers, _) = get(base, path).await;
        assert_eq!(status, 200, "GET {base}{path}");
        assert_eq!(header(&headers, "content-type"), content_type, "{path}");
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    }
    let (status, _, _) = get(base, "/client/nothing-here.js").await;
    assert_eq!(status, 404);
}

/// A WebSocket at `url` still opens and answers as it always did.
async fn assert_websocket_works(url: &str) {
    let (mut socket, _) = connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    socket.send(Message::text("{}")).await.expect("send");
    let reply = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
        .await
        .expect("an answer in time");
    let Some(Ok(Message::Text(text))) = reply else {
        panic!("expected a text frame, got {reply:?}");
    };
    let reply: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(reply["rocketStatus"], "BAD_REQUEST", "{reply}");
}

#[tokio::test]
async fn each_gateway_serves_the_client_and_still_upgrades_at_the_root() {
    let stack = Stack::builder().start().await;
    let base = stack.gateway_http(0);
    assert_client_served(&base).await;
    assert_websocket_works(&stack.gateway_url(0)).await;

    // `/ws` stays a WebSocket endpoint only; an upgrade request that is
    // wrong at `/` is refused as before, not answered with the page.
    let (status, _, _) = get(&base, "/ws").await;
    assert_eq!(status, 400);
    let refused = reqwest::Client::new()
        .get(format!("{base}/"))
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .send()
        .await
        .expect("GET / with an incomplete upgrade");
    assert_eq!(refused.status().as_u16(), 400);
    let body = refused.text().await.unwrap_or_default();
    assert!(body.contains("Sec-WebSocket-Version"), "{body}");
}

#[tokio::test]
async fn the_front_door_serves_the_client_from_the_gateways() {
    let stack = Stack::builder().gateways(2).start().await;
    for kind in [FrontDoorKind::Nginx, FrontDoorKind::Haproxy] {
        let door = FrontDoor::start(kind, &stack, &[0, 1]).await;
        assert_client_served(&door.http()).await;
        assert_websocket_works(&door.url()).await;
    }
}
