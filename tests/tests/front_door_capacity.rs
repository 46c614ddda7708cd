//! The front door's capacity and its handshake timeouts, for NGINX and for
//! HAProxy, each run with the configuration checked in under `deploy/` in
//! front of two gateways.
//!
//! Each test opens 5,000 WebSockets through the door, 200 at a time (the
//! configuration NGINX had before held about 480). While they stay open it
//! checks that the door drops connections that never finish their upgrade
//! request, or never send anything, within a few seconds: slots held by
//! half-open handshakes are what let a few thousand of them crowd everyone
//! else out. Then, once more than the handshake timeout has passed (so the
//! short timeouts provably do not apply to established sockets), it checks
//! that the gateways hold every one of the 5,000 and that every one still
//! works: each sends `{"action": "NOPE"}`, which the gateway answers itself
//! with `UNKNOWN_ACTION`. Finally all are closed and the gateways let go of
//! them.
//!
//! File descriptors: the test process holds 5,000 client sockets, the door
//! 10,000 (client and gateway side of each), the gateways 5,000 between them.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use futures_util::{FutureExt, SinkExt};
use serde_json::Value;
use switchyard_tests::Stack;
use switchyard_tests::front_door::{
    FrontDoor, FrontDoorKind, allow_open_files, connections_per_gateway,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// WebSockets opened through the door.
const SOCKETS: usize = 5_000;
/// Upgrades, round trips and closes in flight at once.
const CONCURRENCY: usize = 200;
/// Open files this process needs: the sockets and a margin for the stack's
/// pipes, log files and HTTP clients.
const OPEN_FILES: u64 = SOCKETS as u64 + 1_024;
/// Bounds on each step, whatever happens.
const ONE_CONNECT: Duration = Duration::from_secs(10);
const ALL_CONNECTS: Duration = Duration::from_secs(120);
const ONE_ROUND_TRIP: Duration = Duration::from_secs(15);
const ALL_ROUND_TRIPS: Duration = Duration::from_secs(120);
const ALL_CLOSES: Duration = Duration::from_secs(60);
/// How long the checked-in configurations give a client to send its whole
/// upgrade request (`client_header_timeout`, `timeout http-request`).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How late after [`HANDSHAKE_TIMEOUT`] a stalled connection may still be
/// dropped (timers are coarse, and the machine is busy).
const DROP_MARGIN: Duration = Duration::from_secs(3);
/// Stalled connections of each kind opened for the check.
const STALLED: usize = 10;
/// Connections a door may keep to a gateway for itself (HAProxy may keep the
/// one a `/healthz` used, for reuse).
const DOOR_OWN: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_holds_5000_websockets_and_drops_unfinished_handshakes() {
    holds_many_and_drops_stalled(FrontDoorKind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_holds_5000_websockets_and_drops_unfinished_handshakes() {
    holds_many_and_drops_stalled(FrontDoorKind::Haproxy).await;
}

async fn holds_many_and_drops_stalled(kind: FrontDoorKind) {
    allow_open_files(OPEN_FILES);
    // The gateways answer NOPE themselves: no back-end service is needed.
    let stack = Stack::builder()
        .gateways(2)
        .auth_replicas(0)
        .mailer(false)
        .start()
        .await;
    let door = FrontDoor::start(kind, &stack, &[0, 1]).await;

    let started = Instant::now();
    let mut sockets = open_all(&door).await;
    let connected_in = started.elapsed();
    let all_open = Instant::now();

    // While the 5,000 stay open: stalled handshakes are dropped.
    let dropped_after = stalled_handshakes_are_dropped(&door).await;

    // Past the handshake timeout, the gateways hold every socket, spread over both.
    sleep_until(all_open + HANDSHAKE_TIMEOUT + Duration::from_secs(1)).await;
    let spread = connections_per_gateway(&stack, &[0, 1]).await;
    let held: usize = spread.values().sum();
    assert!(
        (SOCKETS..=SOCKETS + DOOR_OWN).contains(&held),
        "{SOCKETS} WebSockets are open through the {kind:?} front door, but the gateways hold {held}: {spread:?}"
    );
    assert!(
        spread.values().all(|&n| n >= SOCKETS / 4),
        "the {kind:?} front door did not spread the WebSockets over both gateways: {spread:?}"
    );

    // And every one of them still works.
    let started = Instant::now();
    let failures: Vec<String> = timeout(
        ALL_ROUND_TRIPS,
        stream::iter(sockets.iter_mut().enumerate())
            .map(|(i, socket)| ask_unknown_action(socket).map(move |r| r.err().map(|e| format!("#{i}: {e}"))))
            .buffer_unordered(CONCURRENCY)
            .filter_map(|failure| async move { failure })
            .collect(),
    )
    .await
    .unwrap_or_else(|_| panic!("{SOCKETS} round trips through the {kind:?} front door took longer than {ALL_ROUND_TRIPS:?}"));
    let round_trips_in = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} of {SOCKETS} WebSockets through the {kind:?} front door did not answer; the first: {:?}. Its log:\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        door.log_tail(20)
    );

    // Closed by the clients, they are let go of all the way to the gateways.
    let started = Instant::now();
    timeout(
        ALL_CLOSES,
        stream::iter(sockets.iter_mut()).for_each_concurrent(CONCURRENCY, |socket| async move {
            // A socket the door or gateway already dropped shows in the count below.
            let _ = socket.close(None).await;
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("closing {SOCKETS} WebSockets took longer than {ALL_CLOSES:?}"));
    drop(sockets);
    let deadline = Instant::now() + ALL_CLOSES;
    loop {
        let spread = connections_per_gateway(&stack, &[0, 1]).await;
        if spread.values().sum::<usize>() <= DOOR_OWN {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ALL_CLOSES:?} after the clients closed, the gateways still hold {spread:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{kind:?}: {SOCKETS} WebSockets opened in {connected_in:?}, {SOCKETS} round trips in \
         {round_trips_in:?}, closed in {:?}; stalled handshakes dropped after {dropped_after:?}",
        started.elapsed()
    );
}

/// Opens [`SOCKETS`] WebSockets through the door, [`CONCURRENCY`] at a time.
///
/// # Panics
/// If any upgrade fails or takes too long, with how many did.
async fn open_all(door: &FrontDoor) -> Vec<Socket> {
    let url = door.url();
    // Idle test clients need no 128 KiB read buffer each.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let results: Vec<Result<Socket, String>> = timeout(
        ALL_CONNECTS,
        stream::iter(0..SOCKETS)
            .map(|_| {
                let url = url.clone();
                async move {
                    match timeout(ONE_CONNECT, connect_async_with_config(url, Some(config), true)).await {
                        Ok(Ok((socket, _response))) => Ok(socket),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!("no upgrade within {ONE_CONNECT:?}")),
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect(),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "opening {SOCKETS} WebSockets through the {:?} front door took longer than {ALL_CONNECTS:?}. Its log:\n{}",
            door.kind(),
            door.log_tail(20)
        )
    });
    let (sockets, errors): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    let errors: Vec<String> = errors.into_iter().filter_map(Result::err).collect();
    assert!(
        errors.is_empty(),
        "{} of {SOCKETS} upgrades through the {:?} front door failed; the first: {:?}. Its log:\n{}",
        errors.len(),
        door.kind(),
        &errors[..errors.len().min(5)],
        door.log_tail(20)
    );
    sockets.into_iter().filter_map(Result::ok).collect()
}

/// Sends an unknown action and waits for the gateway's `UNKNOWN_ACTION`.
async fn ask_unknown_action(socket: &mut Socket) -> Result<(), String> {
    let request = r#"{"action": "NOPE", "requestId": "capacity"}"#;
    socket
        .send(Message::text(request))
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let reply = timeout(ONE_ROUND_TRIP, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
                Some(Ok(Message::Close(frame))) => return Err(format!("closed: {frame:?}")),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("reading: {e}")),
                None => return Err("the connection ended".to_owned()),
            }
        }
    })
    .await
    .map_err(|_| format!("no answer within {ONE_ROUND_TRIP:?}"))??;
    let reply: Value = serde_json::from_str(&reply).map_err(|e| format!("{reply}: {e}"))?;
    if reply["rocketStatus"] == "UNKNOWN_ACTION" {
        Ok(())
    } else {
        Err(format!("expected UNKNOWN_ACTION, got {reply}"))
    }
}

/// Opens [`STALLED`] connections that send half an upgrade request and
/// [`STALLED`] that send nothing, and checks the door drops every one within
/// [`HANDSHAKE_TIMEOUT`] and [`DROP_MARGIN`]. Returns how long the slowest
/// drop took.
async fn stalled_handshakes_are_dropped(door: &FrontDoor) -> Duration {
    let half_request = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        door.port()
    );
    let stalls = (0..2 * STALLED).map(|i| {
        let sent = if i % 2 == 0 {
            half_request.clone()
        } else {
            String::new()
        };
        let port = door.port();
        async move {
            let started = Instant::now();
            let mut stream = TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap_or_else(|e| panic!("connecting to the front door: {e}"));
            stream
                .write_all(sent.as_bytes())
                .await
                .unwrap_or_else(|e| panic!("sending half a request: {e}"));
            let limit = HANDSHAKE_TIMEOUT + DROP_MARGIN;
            let mut buf = [0u8; 1024];
            let dropped = timeout(limit, async {
                // An answer such as 408 may come first; the connection must end.
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            let what = if sent.is_empty() {
                "a silent connection"
            } else {
                "half an upgrade request"
            };
            assert!(
                dropped.is_ok(),
                "the {:?} front door kept {what} open longer than {limit:?}",
                door.kind()
            );
            started.elapsed()
        }
    });
    let times = futures_util::future::join_all(stalls).await;
    times.into_iter().max().unwrap_or_default()
}
