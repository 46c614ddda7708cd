//! The front door for real: NGINX, then HAProxy, run with the configurations
//! checked in under `deploy/`, in front of gateways that are added and
//! drained while users chat through it.
//!
//! Both tests play one scenario. Two friends open three tabs each through the
//! door and keep writing to each other. The door spreads the tabs over three
//! gateways. A fourth gateway starts and the door is reloaded to include it:
//! no tab loses its connection, and new tabs reach the new gateway. Then the
//! gateway holding the most tabs is stopped with SIGTERM: it drains, its tabs
//! get close code 1012, reconnect through the door, resume their session with
//! FASTLOGIN and resend whatever was not acknowledged with the same
//! clientMsgId. At the end every acknowledged message is in the conversation's
//! history exactly once, numbered 1..n without gaps, and the recipient got each
//! one, live or through its own history.
//!
//! A third test proves the local stack's Origin allow-list
//! (`deploy/local/allowed-origins`, which `./stack up` and the test gateways
//! both read) through the door: a page from a foreign site is refused, the
//! stack's own front door page and clients without Origin are let in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_tests::front_door::{
    Ack, FrontDoor, FrontDoorKind, Tab, TabConfig, TabHandle, TabReport, connections_per_gateway,
    established_connections,
};
use switchyard_tests::services::local_allowed_origins;
use switchyard_tests::{Client, GATEWAY, Session, Stack, assert_status, signed_up_user};
use tokio::time::{Instant, sleep};
use tokio_tungstenite::tungstenite;

const TABS_PER_USER: usize = 3;
/// Pause between two messages of one tab: several tabs write at once, so
/// messages are in flight whenever a gateway drains.
const PACE: Duration = Duration::from_millis(150);
/// Bounds on each tab, whatever happens.
const MAX_MESSAGES_PER_TAB: usize = 150;
const TAB_TIME_LIMIT: Duration = Duration::from_secs(120);
/// How long each step of the scenario may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Tabs opened after the reload, at most, to find one on the new gateway.
const MAX_EXTRA_TABS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_spreads_clients_and_rides_out_a_new_gateway_and_a_drain() {
    scenario(FrontDoorKind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_spreads_clients_and_rides_out_a_new_gateway_and_a_drain() {
    scenario(FrontDoorKind::Haproxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_is_refused_by_the_local_stack() {
    const OWN: &str = "http://127.0.0.1:8080";
    assert!(
        local_allowed_origins().iter().any(|o| o == OWN),
        "the local stack's front door ({OWN}) should be in deploy/local/allowed-origins: {:?}",
        local_allowed_origins()
    );
    // No setting of its own: the gateway runs with the local stack's allow-list.
    let stack = Stack::builder()
        .auth_replicas(0)
        .mailer(false)
        .start()
        .await;
    let door = FrontDoor::start(FrontDoorKind::Nginx, &stack, &[0]).await;
    let url = door.url();

    match Client::try_connect(&url, Some("https://evil.example")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(
            response.status().as_u16(),
            403,
            "a foreign Origin through the front door"
        ),
        Err(other) => panic!("a foreign Origin: expected HTTP 403, got {other}"),
        Ok(_) => {
            panic!("a page from https://evil.example opened a WebSocket through the front door")
        }
    }

    let mut own_page = Client::connect_with_origin(&url, OWN).await;
    let reply = own_page.request(json!({"action": "NOPE"})).await;
    assert_status(&reply, "UNKNOWN_ACTION");

    let mut native = Client::connect(&url).await;
    let reply = native.request(json!({"action": "NOPE"})).await;
    assert_status(&reply, "UNKNOWN_ACTION");
}

async fn scenario(kind: FrontDoorKind) {
    let mut stack = Stack::builder()
        .gateways(3)
        .auth_replicas(1)
        .chat(true)
        .mailer(true)
        // Short, to keep the test quick; the drain behaves the same with the 10 s default.
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__DRAIN_MS", "2000")
        // Each tab writes faster than a person types.
        .generous_limits()
        .start()
        .await;
    let mut door = FrontDoor::start(kind, &stack, &[0, 1, 2]).await;

    // Two users sign up through the door and become friends.
    let (ana, bob) = friends(&stack, &door).await;
    let ana_id = user_id(&ana);
    let bob_id = user_id(&bob);

    // Three tabs each, all writing.
    let mut tabs: Vec<TabHandle> = Vec::new();
    for n in 0..TABS_PER_USER {
        tabs.push(open_tab(&door, &ana, &bob_id, format!("ana-{n}")));
        tabs.push(open_tab(&door, &bob, &ana_id, format!("bob-{n}")));
    }
    wait_for_tabs(&mut tabs, "every tab has 3 messages acknowledged", |tabs| {
        tabs.iter().all(|t| t.progress.acked() >= 3)
    })
    .await;

    // The door spread them over more than one gateway. (HAProxy may also keep
    // an idle connection from a /healthz request for reuse, hence "at least".)
    let spread = connections_per_gateway(&stack, &[0, 1, 2]).await;
    assert!(
        spread.values().sum::<usize>() >= tabs.len(),
        "each tab should hold a connection to a gateway; per gateway: {spread:?}"
    );
    assert!(
        spread.values().filter(|&&n| n > 0).count() >= 2,
        "the {kind:?} front door put every tab on one gateway: {spread:?}"
    );

    // Scale out: a fourth gateway, added to the door with a reload.
    let added = stack.add_gateway().await;
    door.set_gateways(&stack, &[0, 1, 2, added]).await;
    assert!(
        tabs.iter().all(|t| t.progress.closes() == 0),
        "reloading the {kind:?} front door cut connections: {:?}",
        closes(&tabs)
    );
    // New tabs reach the new gateway.
    let added_port = stack.gateway_addr(added).port();
    let mut extra = 0;
    while established_connections(added_port) == 0 {
        assert!(
            extra < MAX_EXTRA_TABS,
            "{MAX_EXTRA_TABS} new tabs through the reloaded {kind:?} front door, none on the new gateway. Its log:\n{}",
            door.log_tail(30)
        );
        let (who, to, name) = if extra % 2 == 0 {
            (&ana, &bob_id, "ana")
        } else {
            (&bob, &ana_id, "bob")
        };
        tabs.push(open_tab(&door, who, to, format!("{name}-new{extra}")));
        wait_for_tabs(
            &mut tabs,
            "the new tab has a message acknowledged",
            |tabs| tabs.last().is_some_and(|t| t.progress.acked() >= 1),
        )
        .await;
        extra += 1;
    }

    // Drain the first gateway that holds the most tabs, while every tab writes.
    let spread = connections_per_gateway(&stack, &[0, 1, 2]).await;
    let (victim, held) = spread
        .iter()
        .max_by_key(|(_, held)| **held)
        .map(|(&i, &held)| (i, held))
        .expect("three gateways were counted");
    assert!(held > 0, "no tab on gateways 0..2: {spread:?}");
    let acked_before: Vec<usize> = tabs.iter().map(|t| t.progress.acked()).collect();
    stack.stop_service(GATEWAY, victim).await;

    // Its tabs came back through the door, and every tab goes on writing.
    wait_for_tabs(
        &mut tabs,
        "every tab is connected again with 2 more messages acknowledged",
        |tabs| {
            tabs.iter()
                .zip(&acked_before)
                .all(|(t, &before)| t.progress.connected() && t.progress.acked() >= before + 2)
        },
    )
    .await;
    assert_eq!(
        established_connections(stack.gateway_addr(victim).port()),
        0,
        "the drained gateway still holds connections"
    );

    let mut reports = Vec::with_capacity(tabs.len());
    for tab in tabs {
        reports.push(tab.finish().await);
    }

    // Only the drained gateway's tabs were closed, each once, with 1012.
    let closed: Vec<(&str, &Vec<Option<u16>>)> = reports
        .iter()
        .filter(|r| !r.closes.is_empty())
        .map(|r| (r.label.as_str(), &r.closes))
        .collect();
    assert!(
        !closed.is_empty() && closed.len() <= held,
        "gateway {victim} held {held} connection(s), but these tabs saw theirs close: {closed:?}"
    );
    for (label, codes) in &closed {
        assert_eq!(
            codes.as_slice(),
            [Some(1012)],
            "tab {label} should have been closed once, with 1012 (service restart)"
        );
        let report = reports
            .iter()
            .find(|r| r.label == *label)
            .expect("the label comes from a report");
        assert!(report.reconnects >= 1, "tab {label} did not reconnect");
    }

    check_history(&door, &ana, &bob, &reports).await;
}

/// Signs up `ana` and `bob` through the door and makes them friends.
async fn friends(stack: &Stack, door: &FrontDoor) -> (Session, Session) {
    let mut ana_client = Client::connect(&door.url()).await;
    let ana = signed_up_user(stack, &mut ana_client, "ana@example.com").await;
    let mut bob_client = Client::connect(&door.url()).await;
    let bob = signed_up_user(stack, &mut bob_client, "bob@example.com").await;
    let asked = ana_client
        .request(json!({"action": "FRIEND_REQUEST", "userId": user_id(&bob)}))
        .await;
    assert_status(&asked, "FRIEND_REQUEST_SENT");
    let accepted = bob_client
        .request(json!({"action": "FRIEND_RESPOND", "userId": user_id(&ana), "accept": true}))
        .await;
    assert_status(&accepted, "FRIEND_RESPONDED");
    // From here on the tabs are the only connections through the door.
    ana_client.close().await;
    bob_client.close().await;
    (ana, bob)
}

fn open_tab(door: &FrontDoor, who: &Session, to_user_id: &str, label: String) -> TabHandle {
    Tab::spawn(TabConfig {
        label,
        url: door.url(),
        email: who.email.clone(),
        token: who.token.clone(),
        to_user_id: to_user_id.to_owned(),
        pace: PACE,
        max_messages: MAX_MESSAGES_PER_TAB,
        time_limit: TAB_TIME_LIMIT,
    })
}

/// No loss, no duplicates, no gaps: what the tabs were told was stored is
/// exactly what both users read back, and the recipient of each message got it.
async fn check_history(door: &FrontDoor, ana: &Session, bob: &Session, reports: &[TabReport]) {
    let ana_id = user_id(ana);
    let bob_id = user_id(bob);

    // One acknowledgement per clientMsgId (a tab moves on once it has one).
    let mut acked: BTreeMap<&str, &Ack> = BTreeMap::new();
    for ack in reports.iter().flat_map(|r| &r.acks) {
        let earlier = acked.insert(ack.client_msg_id.as_str(), ack);
        assert!(
            earlier.is_none(),
            "{} was acknowledged twice: {earlier:?} and {ack:?}",
            ack.client_msg_id
        );
    }
    let conversations: BTreeSet<&str> =
        acked.values().map(|a| a.conversation_id.as_str()).collect();
    assert_eq!(
        conversations.len(),
        1,
        "one conversation expected: {conversations:?}"
    );
    let conversation = conversations
        .first()
        .expect("there is one conversation")
        .to_string();

    let as_ana = full_history(door, ana, &conversation).await;
    let as_bob = full_history(door, bob, &conversation).await;
    assert_eq!(
        ids(&as_ana),
        ids(&as_bob),
        "the two users read different histories"
    );

    let seqs: Vec<i64> = as_ana
        .iter()
        .map(|m| m["seq"].as_i64().unwrap_or(-1))
        .collect();
    let expected: Vec<i64> = (1..=i64::try_from(as_ana.len()).expect("a small count")).collect();
    assert_eq!(seqs, expected, "sequence numbers are not 1..n without gaps");
    assert_eq!(
        as_ana.len(),
        acked.len(),
        "{} messages stored, {} acknowledged: a resend was stored twice or a message was lost",
        as_ana.len(),
        acked.len()
    );
    let mut by_client_id: HashMap<(String, String), &Value> = HashMap::new();
    for message in &as_ana {
        let key = (
            message["senderId"].as_str().unwrap_or_default().to_owned(),
            message["clientMsgId"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        let twice = by_client_id.insert(key.clone(), message);
        assert!(twice.is_none(), "{key:?} is stored twice");
    }
    for (client_msg_id, ack) in &acked {
        let sender = if client_msg_id.starts_with("ana-") {
            &ana_id
        } else {
            &bob_id
        };
        let stored = by_client_id
            .get(&(sender.clone(), (*client_msg_id).to_owned()))
            .unwrap_or_else(|| panic!("acknowledged {ack:?} is not in the history"));
        assert_eq!(
            stored["messageId"],
            ack.message_id.as_str(),
            "{client_msg_id}"
        );
        assert_eq!(stored["seq"], ack.seq, "{client_msg_id}");
    }

    // Each message reached its recipient: live on one of their tabs, or in
    // the history they read themselves.
    let received_live = |prefix: &str| -> BTreeSet<&str> {
        reports
            .iter()
            .filter(|r| r.label.starts_with(prefix))
            .flat_map(|r| r.received.iter().map(String::as_str))
            .collect()
    };
    let (ana_live, bob_live) = (received_live("ana-"), received_live("bob-"));
    let (ana_read, bob_read) = (ids(&as_ana), ids(&as_bob));
    let mut live = 0;
    for (client_msg_id, ack) in &acked {
        let (got_live, read) = if client_msg_id.starts_with("ana-") {
            (&bob_live, &bob_read)
        } else {
            (&ana_live, &ana_read)
        };
        let id = ack.message_id.as_str();
        assert!(
            got_live.contains(id) || read.contains(id),
            "the recipient of {client_msg_id} never got it"
        );
        live += usize::from(got_live.contains(id));
    }
    assert!(
        live > 0,
        "no message was pushed live through the front door"
    );

    let resends: usize = reports.iter().map(|r| r.resends).sum();
    let reconnects: usize = reports.iter().map(|r| r.reconnects).sum();
    eprintln!(
        "front door: {} messages from {} tabs, {live} delivered live, {reconnects} reconnect(s), {resends} resend(s)",
        acked.len(),
        reports.len()
    );
}

/// Every message of `conversation`, oldest first, read page by page by `who`
/// on a fresh connection through the door.
async fn full_history(door: &FrontDoor, who: &Session, conversation: &str) -> Vec<Value> {
    let mut client = Client::connect(&door.url()).await;
    assert_status(
        &client.fastlogin(&who.email, &who.token).await,
        "USER_LOGGED",
    );
    let mut messages: Vec<Value> = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let mut request =
            json!({"action": "HISTORY", "conversationId": conversation, "limit": 100});
        if let Some(seq) = before {
            request["beforeSeq"] = json!(seq);
        }
        let page = client.request(request).await;
        assert_status(&page, "HISTORY");
        let mut batch = page["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("HISTORY without messages: {page}"))
            .clone();
        let has_more = page["hasMore"].as_bool().unwrap_or(false);
        before = batch.first().and_then(|m| m["seq"].as_i64());
        batch.append(&mut messages);
        messages = batch;
        if !has_more || before.is_none() {
            break;
        }
    }
    client.close().await;
    messages
}

fn ids(messages: &[Value]) -> BTreeSet<&str> {
    messages
        .iter()
        .map(|m| m["messageId"].as_str().unwrap_or_default())
        .collect()
}

fn user_id(session: &Session) -> String {
    session.profile["userId"]
        .as_str()
        .unwrap_or_else(|| panic!("USER_LOGGED profile without userId: {}", session.profile))
        .to_owned()
}

fn closes(tabs: &[TabHandle]) -> Vec<(String, usize)> {
    tabs.iter()
        .map(|t| (t.label.clone(), t.progress.closes()))
        .collect()
}

/// Polls `done` until it holds, for at most [`STEP_TIMEOUT`]. A tab that
/// ends meanwhile fails the test with its own panic message.
async fn wait_for_tabs(tabs: &mut Vec<TabHandle>, what: &str, done: impl Fn(&[TabHandle]) -> bool) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !done(tabs) {
        if let Some(i) = tabs.iter().position(TabHandle::is_finished) {
            let tab = tabs.remove(i);
            let label = tab.label.clone();
            let report = tab.finish().await;
            panic!("tab {label} stopped early, having sent its maximum: {report:?}");
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {STEP_TIMEOUT:?} waiting until {what}; progress: {:?}",
            tabs.iter()
                .map(|t| (t.label.as_str(), t.progress.acked(), t.progress.connected()))
                .collect::<Vec<_>>()
        );
        sleep(Duration::from_millis(50)).await;
    }
}
