//! Groups across two gateways: asking to join and being let in by either
//! admin, and an admin adding, removing, banning and unbanning a member who
//! sees each change live and stops getting the group's messages the moment
//! they are out.

use mongodb::bson::{Bson, Document};
use serde_json::{Value, json};
use switchyard_tests::chat::{
    ChatUser, EVENT_TIMEOUT, QUIET, add_member, assert_refused, chat_stack, member_ids, sent,
    user_ids, with_status,
};
use switchyard_tests::{Client, Stack, assert_status};

#[tokio::test]
async fn a_join_request_reaches_both_admins_and_the_second_approves_it() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    let mut carl = ChatUser::sign_up(&stack, 1, "carl@example.com", "Carl").await;
    let mut dora = ChatUser::sign_up(&stack, 0, "dora@example.com", "Dora").await;

    // Ana's group, with Bob as its second admin.
    let group_id = ana.client.create_group("Hiking club").await;
    for action in ["ADD_MEMBER", "PROMOTE_ADMIN"] {
        let reply = ana.client.moderate(action, &group_id, &bob.user_id).await;
        assert_status(
            &reply,
            if action == "ADD_MEMBER" {
                "MEMBER_ADDED"
            } else {
                "ADMIN_PROMOTED"
            },
        );
    }
    bob.client
        .expect_event("ADMIN_PROMOTED", EVENT_TIMEOUT)
        .await;

    // Carl finds the group and asks to join.
    let reply = carl
        .client
        .chat("SEARCH_GROUPS", json!({"query": "hik"}))
        .await;
    assert_status(&reply, "GROUPS_FOUND");
    assert_eq!(reply["groups"].as_array().map(Vec::len), Some(1), "{reply}");
    let summary = &reply["groups"][0];
    assert_eq!(summary["groupId"], group_id.as_str(), "{reply}");
    assert_eq!(summary["memberCount"], 2, "{reply}");
    assert_eq!(summary["role"], "none", "{reply}");
    let reply = carl
        .client
        .chat("JOIN_GROUP", json!({"groupId": group_id}))
        .await;
    assert_status(&reply, "JOIN_REQUESTED");
    assert_eq!(reply["userId"], carl.user_id.as_str(), "{reply}");

    // Both admins, one on each gateway, are asked.
    for admin in [&mut ana, &mut bob] {
        let event = admin
            .client
            .expect_event("JOIN_REQUEST_RECEIVED", EVENT_TIMEOUT)
            .await;
        assert_eq!(event["groupId"], group_id.as_str(), "{event}");
        assert_eq!(event["groupName"], "Hiking club", "{event}");
        assert_eq!(event["userId"], carl.user_id.as_str(), "{event}");
        assert_eq!(event["from"]["userId"], carl.user_id.as_str(), "{event}");
        assert_eq!(event["from"]["nickname"], "Carl", "{event}");
    }
    let info = ana.client.group_info(&group_id).await;
    assert_eq!(
        user_ids(&info["group"]["joinRequests"]),
        vec![carl.user_id.clone()],
        "{info}"
    );
    let info = carl.client.group_info(&group_id).await;
    assert_eq!(info["group"]["role"], "requested", "{info}");
    assert!(
        info["group"].get("members").is_none(),
        "one who has only asked does not see the members: {info}"
    );

    // The second admin approves.
    let reply = bob
        .client
        .respond_join(&group_id, &carl.user_id, true)
        .await;
    assert_status(&reply, "JOIN_RESPONDED");
    assert_eq!(reply["accepted"], true, "{reply}");
    assert_eq!(reply["userId"], carl.user_id.as_str(), "{reply}");
    let event = carl
        .client
        .expect_event("GROUP_JOINED", EVENT_TIMEOUT)
        .await;
    assert_eq!(event["groupId"], group_id.as_str(), "{event}");
    assert_eq!(event["userId"], carl.user_id.as_str(), "{event}");
    let event = ana.client.expect_event("GROUP_JOINED", EVENT_TIMEOUT).await;
    assert_eq!(event["member"]["userId"], carl.user_id.as_str(), "{event}");
    assert_eq!(event["member"]["nickname"], "Carl", "{event}");
    // The approving connection has its reply instead.
    let own = bob.client.frames_within(QUIET).await;
    assert!(
        !with_status(&own, "GROUP_JOINED")
            .iter()
            .any(|f| f["userId"] == carl.user_id.as_str()),
        "the approving connection gets no GROUP_JOINED for Carl: {own:?}"
    );

    // The request is answered for the first admin too.
    assert_refused(
        &ana.client
            .respond_join(&group_id, &carl.user_id, true)
            .await,
        "NOT_FOUND",
    );
    let info = ana.client.group_info(&group_id).await;
    let mut members = member_ids(&info);
    members.sort();
    let mut expected = vec![
        ana.user_id.clone(),
        bob.user_id.clone(),
        carl.user_id.clone(),
    ];
    expected.sort();
    assert_eq!(members, expected, "{info}");
    assert_eq!(
        user_ids(&info["group"]["joinRequests"]),
        Vec::<String>::new()
    );
    let reply = carl.client.chat("LIST_GROUPS", Value::Null).await;
    assert_status(&reply, "GROUPS");
    assert_eq!(reply["groups"][0]["groupId"], group_id.as_str(), "{reply}");
    assert_eq!(reply["groups"][0]["role"], "member", "{reply}");

    // Carl writes to the group, and both admins read it live.
    let message = sent(
        &carl
            .client
            .send_to_group(&group_id, "Thanks for having me", "carl-1")
            .await,
    );
    for admin in [&mut ana, &mut bob] {
        let event = admin
            .client
            .expect_event("NEW_MESSAGE", EVENT_TIMEOUT)
            .await;
        assert_eq!(event["messageId"], message.message_id.as_str(), "{event}");
        assert_eq!(event["conversation"]["kind"], "group", "{event}");
        assert_eq!(
            event["conversation"]["groupId"],
            group_id.as_str(),
            "{event}"
        );
    }

    // A declined request: Dora is told, and stays out.
    assert_status(
        &dora
            .client
            .chat("JOIN_GROUP", json!({"groupId": group_id}))
            .await,
        "JOIN_REQUESTED",
    );
    for admin in [&mut ana, &mut bob] {
        let event = admin
            .client
            .expect_event("JOIN_REQUEST_RECEIVED", EVENT_TIMEOUT)
            .await;
        assert_eq!(event["userId"], dora.user_id.as_str(), "{event}");
    }
    let reply = ana
        .client
        .respond_join(&group_id, &dora.user_id, false)
        .await;
    assert_status(&reply, "JOIN_RESPONDED");
    assert_eq!(reply["accepted"], false, "{reply}");
    let event = dora
        .client
        .expect_event("JOIN_REJECTED", EVENT_TIMEOUT)
        .await;
    assert_eq!(event["groupId"], group_id.as_str(), "{event}");
    let info = dora.client.group_info(&group_id).await;
    assert_eq!(info["group"]["role"], "none", "{info}");
    assert_eq!(info["group"]["memberCount"], 3, "{info}");
}

#[tokio::test]
async fn a_member_added_removed_banned_and_unbanned_sees_each_change_at_once() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    let mut carl = ChatUser::sign_up(&stack, 1, "carl@example.com", "Carl").await;
    // Carl also has a connection on Ana's gateway.
    let mut carl_tab = carl.connect_again(&stack, 0).await;

    let group_id = ana.client.create_group("Book club").await;
    add_member(&mut ana, &group_id, &mut bob).await;

    // Added: each of Carl's connections is told once, and Bob sees it.
    let reply = ana
        .client
        .moderate("ADD_MEMBER", &group_id, &carl.user_id)
        .await;
    assert_status(&reply, "MEMBER_ADDED");
    assert_eq!(reply["userId"], carl.user_id.as_str(), "{reply}");
    for tab in [&mut carl.client, &mut carl_tab] {
        let frames = tab.frames_within(QUIET).await;
        let joined = with_status(&frames, "GROUP_JOINED");
        assert_eq!(
            joined.len(),
            1,
            "the new member is told once per connection: {frames:?}"
        );
        assert_eq!(joined[0]["groupId"], group_id.as_str());
        assert_eq!(joined[0]["userId"], carl.user_id.as_str());
    }
    let event = bob.client.expect_event("GROUP_JOINED", EVENT_TIMEOUT).await;
    assert_eq!(event["userId"], carl.user_id.as_str(), "{event}");
    let message = send(&mut ana.client, &group_id, "Welcome, Carl").await;
    expect_message(
        &mut [&mut carl.client, &mut carl_tab, &mut bob.client],
        &message,
    )
    .await;

    // Removed: told at once, and the very next message does not reach him.
    let reply = ana
        .client
        .moderate("REMOVE_MEMBER", &group_id, &carl.user_id)
        .await;
    assert_status(&reply, "MEMBER_REMOVED");
    let message = send(&mut ana.client, &group_id, "Carl has gone").await;
    expect_out(
        &mut [&mut carl.client, &mut carl_tab],
        "MEMBER_REMOVED",
        &group_id,
        &carl.user_id,
    )
    .await;
    let event = bob
        .client
        .expect_event("MEMBER_REMOVED", EVENT_TIMEOUT)
        .await;
    assert_eq!(event["userId"], carl.user_id.as_str(), "{event}");
    expect_message(&mut [&mut bob.client], &message).await;
    // Nor may he read or write the group any more.
    assert_refused(
        &carl
            .client
            .history(&format!("g:{group_id}"), None, None)
            .await,
        "NOT_FOUND",
    );
    assert_refused(
        &carl_tab.send_to_group(&group_id, "Hello?", "carl-1").await,
        "FORBIDDEN",
    );
    assert_membership(&stack, &group_id, &carl.user_id, Role::Out).await;

    // Added again, he is back in the conversation.
    assert_status(
        &ana.client
            .moderate("ADD_MEMBER", &group_id, &carl.user_id)
            .await,
        "MEMBER_ADDED",
    );
    for tab in [&mut carl.client, &mut carl_tab] {
        tab.expect_event("GROUP_JOINED", EVENT_TIMEOUT).await;
    }
    let message = send(&mut ana.client, &group_id, "Welcome back").await;
    expect_message(
        &mut [&mut carl.client, &mut carl_tab, &mut bob.client],
        &message,
    )
    .await;

    // Banned: told at once, out of the very next message, and kept out.
    let reply = ana
        .client
        .moderate("BAN_MEMBER", &group_id, &carl.user_id)
        .await;
    assert_status(&reply, "MEMBER_BANNED");
    let message = send(&mut ana.client, &group_id, "Carl is banned").await;
    expect_out(
        &mut [&mut carl.client, &mut carl_tab],
        "MEMBER_BANNED",
        &group_id,
        &carl.user_id,
    )
    .await;
    let event = bob
        .client
        .expect_event("MEMBER_BANNED", EVENT_TIMEOUT)
        .await;
    assert_eq!(event["userId"], carl.user_id.as_str(), "{event}");
    expect_message(&mut [&mut bob.client], &message).await;
    assert_membership(&stack, &group_id, &carl.user_id, Role::Banned).await;

    let before = stack.stored_group(&group_id).await;
    assert_refused(
        &carl
            .client
            .chat("JOIN_GROUP", json!({"groupId": group_id}))
            .await,
        "FORBIDDEN",
    );
    assert_refused(
        &ana.client
            .moderate("ADD_MEMBER", &group_id, &carl.user_id)
            .await,
        "FORBIDDEN",
    );
    assert_eq!(
        stack.stored_group(&group_id).await,
        before,
        "refusals change nothing"
    );
    let frames = ana.client.frames_within(QUIET).await;
    assert!(
        with_status(&frames, "JOIN_REQUEST_RECEIVED").is_empty(),
        "a refused request reaches no admin: {frames:?}"
    );

    // Unbanned: told, not re-added, and free to ask again.
    let reply = ana
        .client
        .moderate("UNBAN_MEMBER", &group_id, &carl.user_id)
        .await;
    assert_status(&reply, "MEMBER_UNBANNED");
    for tab in [&mut carl.client, &mut carl_tab] {
        let event = tab.expect_event("MEMBER_UNBANNED", EVENT_TIMEOUT).await;
        assert_eq!(event["groupId"], group_id.as_str(), "{event}");
        assert_eq!(event["userId"], carl.user_id.as_str(), "{event}");
    }
    assert_membership(&stack, &group_id, &carl.user_id, Role::Out).await;
    assert_status(
        &carl
            .client
            .chat("JOIN_GROUP", json!({"groupId": group_id}))
            .await,
        "JOIN_REQUESTED",
    );
    ana.client
        .expect_event("JOIN_REQUEST_RECEIVED", EVENT_TIMEOUT)
        .await;
    assert_status(
        &ana.client
            .respond_join(&group_id, &carl.user_id, true)
            .await,
        "JOIN_RESPONDED",
    );
    for tab in [&mut carl.client, &mut carl_tab] {
        tab.expect_event("GROUP_JOINED", EVENT_TIMEOUT).await;
    }
    assert_membership(&stack, &group_id, &carl.user_id, Role::Member).await;
    let message = send(&mut ana.client, &group_id, "Third time lucky").await;
    expect_message(
        &mut [&mut carl.client, &mut carl_tab, &mut bob.client],
        &message,
    )
    .await;
}

#[tokio::test]
async fn group_messages_follow_a_member_from_login_to_logout() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    let group_id = ana.client.create_group("Night owls").await;
    add_member(&mut ana, &group_id, &mut bob).await;

    // A new connection on a gateway where Bob had none learns his groups
    // when he logs in there.
    let mut bob_tab = bob.connect_again(&stack, 0).await;
    let message = send(&mut ana.client, &group_id, "Anyone up?").await;
    expect_message(&mut [&mut bob.client, &mut bob_tab], &message).await;

    // Logged out, neither of his connections gets the group's messages.
    assert_status(
        &bob.client.logout(&bob.email, &bob.token).await,
        "USER_LOGOUT",
    );
    bob_tab.expect_event("SESSION_CLOSED", EVENT_TIMEOUT).await;
    let message = send(&mut ana.client, &group_id, "Good night").await;
    for client in [&mut bob.client, &mut bob_tab] {
        let frames = client.frames_within(QUIET).await;
        assert!(
            with_status(&frames, "NEW_MESSAGE").is_empty(),
            "a logged-out connection gets no group message ({message}): {frames:?}"
        );
    }

    // Logged in again, he does.
    let reply = bob
        .client
        .login(&bob.email, switchyard_tests::DEFAULT_PASSWORD)
        .await;
    assert_status(&reply, "USER_LOGGED");
    bob.client.settle().await;
    let message = send(&mut ana.client, &group_id, "Good morning").await;
    expect_message(&mut [&mut bob.client], &message).await;
    let history = bob
        .client
        .history(&format!("g:{group_id}"), None, None)
        .await;
    assert_eq!(
        switchyard_tests::chat::history_texts(&history),
        vec!["Anyone up?", "Good night", "Good morning"],
        "what he missed live is in the history"
    );
}

#[tokio::test]
async fn a_login_learns_the_groups_its_user_is_in_at_that_moment() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    let mut groups = Vec::new();
    for name in ["Removed", "Left", "Stayed"] {
        let group_id = ana.client.create_group(name).await;
        assert_status(
            &ana.client
                .moderate("ADD_MEMBER", &group_id, &bob.user_id)
                .await,
            "MEMBER_ADDED",
        );
        groups.push(group_id);
    }
    let [removed, left, stayed] = &groups[..] else {
        unreachable!("three groups")
    };
    assert_status(
        &ana.client
            .moderate("REMOVE_MEMBER", removed, &bob.user_id)
            .await,
        "MEMBER_REMOVED",
    );
    assert_status(
        &bob.client.moderate("LEAVE_GROUP", left, &bob.user_id).await,
        "GROUP_LEFT",
    );

    // A new connection hears from the group Bob is still in, and only from it.
    let mut tab = bob.connect_again(&stack, 0).await;
    expect_only_from(&mut ana.client, &mut tab, &groups, stayed).await;

    // Memberships recorded before the login path kept them (an older
    // deployment, which had no copy of them in Redis either) are rebuilt
    // from the groups on the next login.
    stack
        .mongo()
        .collection::<Document>("memberships")
        .delete_many(mongodb::bson::doc! {})
        .await
        .expect("clearing memberships");
    assert!(
        stack.forget_redis_keys("*:chat:memberships:*").await > 0,
        "logins keep a copy of the memberships"
    );
    let mut second_tab = bob.connect_again(&stack, 1).await;
    expect_only_from(&mut ana.client, &mut second_tab, &groups, stayed).await;
    let stored = stack.stored_documents("memberships").await;
    assert_eq!(stored.len(), 1, "Bob's, rebuilt: {stored:?}");
    assert_eq!(stored[0].get_bool("complete"), Ok(true), "{stored:?}");
}

/// Ana sends to every group in `groups`; `client` gets the message sent to
/// `only` and none of the others.
async fn expect_only_from(ana: &mut Client, client: &mut Client, groups: &[String], only: &str) {
    let mut expected = String::new();
    for group_id in groups {
        let message = send(ana, group_id, "ping").await;
        if group_id == only {
            expected = message;
        }
    }
    let frames = client.frames_within(QUIET).await;
    let messages: Vec<&Value> = with_status(&frames, "NEW_MESSAGE");
    assert_eq!(messages.len(), 1, "{frames:?}");
    assert_eq!(messages[0]["messageId"], expected.as_str(), "{frames:?}");
}

/// Sends a group message and returns its id.
async fn send(client: &mut Client, group_id: &str, text: &str) -> String {
    static SENT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    sent(
        &client
            .send_to_group(group_id, text, &format!("group-{n}"))
            .await,
    )
    .message_id
}

/// Each of `clients` gets the group message `message_id`.
async fn expect_message(clients: &mut [&mut Client], message_id: &str) {
    for client in clients.iter_mut() {
        let event = client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
        assert_eq!(event["messageId"], message_id, "{event}");
    }
}

/// Each of `clients`, connections of a user who was just put out of the
/// group, gets `status` about themselves exactly once, and no message.
async fn expect_out(clients: &mut [&mut Client], status: &str, group_id: &str, user_id: &str) {
    for client in clients.iter_mut() {
        let frames = client.frames_within(QUIET).await;
        let told = with_status(&frames, status);
        assert_eq!(told.len(), 1, "{status} once per connection: {frames:?}");
        assert_eq!(told[0]["groupId"], group_id, "{frames:?}");
        assert_eq!(told[0]["userId"], user_id, "{frames:?}");
        assert!(
            with_status(&frames, "NEW_MESSAGE").is_empty(),
            "a message sent right after {status} does not reach the user: {frames:?}"
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Member,
    Banned,
    Out,
}

/// Asserts where `user_id` stands in the stored group.
async fn assert_membership(stack: &Stack, group_id: &str, user_id: &str, role: Role) {
    let group = stack.stored_group(group_id).await;
    let has = |field: &str| list(&group, field).iter().any(|u| u == user_id);
    let actual = (has("members"), has("banned"), has("join_requests"));
    let expected = match role {
        Role::Member => (true, false, false),
        Role::Banned => (false, true, false),
        Role::Out => (false, false, false),
    };
    assert_eq!(
        actual, expected,
        "(member, banned, asking) of {user_id} as {role:?} in {group}"
    );
}

fn list(document: &Document, field: &str) -> Vec<String> {
    document
        .get_array(field)
        .unwrap_or_else(|e| panic!("{field} of {document}: {e}"))
        .iter()
        .filter_map(Bson::as_str)
        .map(str::to_owned)
        .collect()
}
