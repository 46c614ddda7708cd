//! Who may do what in chat, one rule per test. Each refusal is checked
//! together with its absence of effect: nothing stored, nothing delivered,
//! the group document as it was.

use mongodb::bson::doc;
use serde_json::{Value, json};
use switchyard_tests::chat::{
    CONVERSATIONS, ChatUser, EVENT_TIMEOUT, FRIENDSHIPS, GROUPS, MESSAGES, QUIET, READS,
    add_member, assert_refused, befriend, chat_stack, history_texts, member_ids, sent, with_status,
};
use switchyard_tests::{Client, DEFAULT_PASSWORD, Stack, USERS, assert_status};

/// Every chat action, each with a payload it would accept once logged in.
fn chat_actions(someone: &str, group: &str) -> Vec<(&'static str, Value)> {
    let user = json!({"userId": someone});
    let member = json!({"groupId": group, "userId": someone});
    vec![
        ("UPDATE_PROFILE", json!({"nickname": "Intruder"})),
        ("SEARCH_USERS", json!({"nickname": "an"})),
        ("FRIEND_REQUEST", user.clone()),
        ("FRIEND_RESPOND", json!({"userId": someone, "accept": true})),
        ("FRIEND_REMOVE", user.clone()),
        ("LIST_FRIENDS", json!({})),
        (
            "SEND_MESSAGE",
            json!({"to": {"userId": someone}, "text": "hi", "clientMsgId": "x-1"}),
        ),
        ("HISTORY", json!({"conversationId": format!("g:{group}")})),
        ("LIST_CONVERSATIONS", json!({})),
        (
            "MARK_READ",
            json!({"conversationId": format!("g:{group}"), "seq": 1}),
        ),
        ("CREATE_GROUP", json!({"name": "Intruders"})),
        ("SEARCH_GROUPS", json!({"query": "a"})),
        ("GROUP_INFO", json!({"groupId": group})),
        ("LIST_GROUPS", json!({})),
        ("JOIN_GROUP", json!({"groupId": group})),
        (
            "RESPOND_JOIN",
            json!({"groupId": group, "userId": someone, "accept": true}),
        ),
        ("ADD_MEMBER", member.clone()),
        ("REMOVE_MEMBER", member.clone()),
        ("BAN_MEMBER", member.clone()),
        ("UNBAN_MEMBER", member.clone()),
        ("PROMOTE_ADMIN", member.clone()),
        ("DEMOTE_ADMIN", member),
        ("LEAVE_GROUP", json!({"groupId": group})),
    ]
}

#[tokio::test]
async fn chat_actions_need_a_logged_in_connection() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let group_id = ana.client.create_group("Ana's").await;
    let before = chat_state(&stack).await;

    // A connection that never logged in, one whose login failed, and one
    // that logged out, on either gateway.
    let mut never = Client::connect(&stack.gateway_url(1)).await;
    let mut failed = Client::connect(&stack.gateway_url(0)).await;
    assert_status(
        &failed.login("ana@example.com", "not-the-password").await,
        "NOT_LOGGED",
    );
    let mut left = ana.connect_again(&stack, 1).await;
    assert_status(
        &left.logout("ana@example.com", &ana.token).await,
        "USER_LOGOUT",
    );
    // (That LOGOUT closed Ana's session everywhere.)
    ana.client
        .expect_event("SESSION_CLOSED", EVENT_TIMEOUT)
        .await;

    for (name, client) in [
        ("never logged in", &mut never),
        ("failed login", &mut failed),
        ("logged out", &mut left),
        ("session closed elsewhere", &mut ana.client),
    ] {
        for (action, payload) in chat_actions(&ana.user_id, &group_id) {
            let reply = client.chat(action, payload).await;
            assert_refused(&reply, "UNAUTHORIZED");
            // The gateway's refusal names the action: it, not chat-service,
            // turned the request away.
            assert!(
                reply["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(action)),
                "{name}: the refusal names the action: {reply}"
            );
        }
    }
    assert_eq!(chat_state(&stack).await, before, "nothing changed");
    let frames = ana.client.frames_within(QUIET).await;
    assert!(frames.is_empty(), "nobody was told anything: {frames:?}");

    // Logged in again, the same connection may.
    let reply = left.login("ana@example.com", DEFAULT_PASSWORD).await;
    assert_status(&reply, "USER_LOGGED");
    assert_status(
        &left
            .chat("CREATE_GROUP", json!({"name": "Intruders"}))
            .await,
        "GROUP_CREATED",
    );
}

#[tokio::test]
async fn strangers_cannot_message_each_other() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    // Each in a group of their own: not a common one.
    ana.client.create_group("Ana's").await;
    bob.client.create_group("Bob's").await;

    assert_refused(
        &ana.client
            .send_to_user(&bob.user_id, "Hi Bob", "ana-1")
            .await,
        "FORBIDDEN",
    );
    assert_refused(
        &bob.client
            .send_to_user(&ana.user_id, "Hi Ana", "bob-1")
            .await,
        "FORBIDDEN",
    );
    // A request not yet accepted is no friendship.
    assert_status(
        &ana.client.chat("FRIEND_REQUEST", bob.target()).await,
        "FRIEND_REQUEST_SENT",
    );
    assert_refused(
        &ana.client
            .send_to_user(&bob.user_id, "Hi Bob", "ana-2")
            .await,
        "FORBIDDEN",
    );
    assert_refused(
        &bob.client
            .send_to_user(&ana.user_id, "Hi Ana", "bob-2")
            .await,
        "FORBIDDEN",
    );

    assert!(stack.stored_where(MESSAGES, doc! {}).await.is_empty());
    let direct = stack
        .stored_where(CONVERSATIONS, doc! {"kind": "direct"})
        .await;
    assert!(direct.is_empty(), "no conversation was opened: {direct:?}");
    for client in [&mut ana.client, &mut bob.client] {
        let frames = client.frames_within(QUIET).await;
        assert!(
            with_status(&frames, "NEW_MESSAGE").is_empty(),
            "nothing was delivered: {frames:?}"
        );
        let listed = client.conversations().await;
        assert!(
            listed.iter().all(|c| c["kind"] == "group"),
            "no direct conversation is listed: {listed:?}"
        );
    }

    // Once friends, the same message goes through.
    let reply = bob
        .client
        .chat(
            "FRIEND_RESPOND",
            json!({"userId": ana.user_id, "accept": true}),
        )
        .await;
    assert_status(&reply, "FRIEND_RESPONDED");
    sent(
        &ana.client
            .send_to_user(&bob.user_id, "Hi Bob", "ana-3")
            .await,
    );
}

#[tokio::test]
async fn outsiders_cannot_read_or_write_a_group() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    let mut carl = ChatUser::sign_up(&stack, 1, "carl@example.com", "Carl").await;
    let group_id = ana.client.create_group("Private").await;
    let conversation = format!("g:{group_id}");
    add_member(&mut ana, &group_id, &mut bob).await;
    sent(
        &ana.client
            .send_to_group(&group_id, "members only", "ana-1")
            .await,
    );
    bob.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
    let before = chat_state(&stack).await;

    // Carl, who is not a member, and then one who has only asked to join.
    for stage in ["outsider", "asking to join"] {
        let reply = carl.client.history(&conversation, None, None).await;
        assert_refused(&reply, "NOT_FOUND");
        assert!(reply.get("messages").is_none(), "{stage}: {reply}");
        assert_refused(
            &carl
                .client
                .chat(
                    "MARK_READ",
                    json!({"conversationId": conversation, "seq": 1}),
                )
                .await,
            "NOT_FOUND",
        );
        assert_refused(
            &carl
                .client
                .send_to_group(&group_id, "let me in", &format!("carl-{stage}"))
                .await,
            "FORBIDDEN",
        );
        let info = carl.client.group_info(&group_id).await;
        assert_status(&info, "GROUP_INFO");
        assert!(
            info["group"].get("members").is_none() && info["group"].get("admins").is_none(),
            "{stage} sees the summary only: {info}"
        );
        let listed = carl.client.conversations().await;
        assert!(listed.is_empty(), "{stage} lists nothing: {listed:?}");

        if stage == "outsider" {
            assert_eq!(chat_state(&stack).await, before, "nothing changed");
            assert_status(
                &carl
                    .client
                    .chat("JOIN_GROUP", json!({"groupId": group_id}))
                    .await,
                "JOIN_REQUESTED",
            );
        }
    }

    // The members got nothing, and the conversation holds only theirs.
    for client in [&mut ana.client, &mut bob.client] {
        let frames = client.frames_within(QUIET).await;
        assert!(
            with_status(&frames, "NEW_MESSAGE").is_empty(),
            "nothing was delivered: {frames:?}"
        );
    }
    let history = bob.client.history(&conversation, None, None).await;
    assert_eq!(history_texts(&history), vec!["members only"]);
    assert_eq!(
        stack.stored_where(MESSAGES, doc! {}).await.len(),
        1,
        "nothing was stored"
    );
    let reads = stack
        .stored_where(READS, doc! {"user_id": &carl.user_id})
        .await;
    assert!(reads.is_empty(), "no read mark for an outsider: {reads:?}");
}

#[tokio::test]
async fn only_admins_moderate() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    let mut carl = ChatUser::sign_up(&stack, 0, "carl@example.com", "Carl").await;
    let mut dora = ChatUser::sign_up(&stack, 1, "dora@example.com", "Dora").await;
    let mut erin = ChatUser::sign_up(&stack, 0, "erin@example.com", "Erin").await;

    // Ana admin; Bob and Carl members; Dora asking to join; Erin banned.
    let group_id = ana.client.create_group("Moderated").await;
    for member in [&bob, &carl] {
        assert_status(
            &ana.client
                .moderate("ADD_MEMBER", &group_id, &member.user_id)
                .await,
            "MEMBER_ADDED",
        );
    }
    assert_status(
        &dora
            .client
            .chat("JOIN_GROUP", json!({"groupId": group_id}))
            .await,
        "JOIN_REQUESTED",
    );
    assert_status(
        &ana.client
            .moderate("BAN_MEMBER", &group_id, &erin.user_id)
            .await,
        "MEMBER_BANNED",
    );
    let before = stack.stored_group(&group_id).await;
    // Let the announcements of the above pass before watching for new ones.
    for user in [&mut ana, &mut bob, &mut carl, &mut dora, &mut erin] {
        user.client.frames_within(QUIET).await;
    }

    // Bob, a member but no admin, tries everything an admin may do; so do
    // Dora and Erin, who are not even members.
    let attempts = |g: &str| -> Vec<(&'static str, Value)> {
        vec![
            (
                "RESPOND_JOIN",
                json!({"groupId": g, "userId": dora.user_id, "accept": true}),
            ),
            (
                "RESPOND_JOIN",
                json!({"groupId": g, "userId": dora.user_id, "accept": false}),
            ),
            ("ADD_MEMBER", json!({"groupId": g, "userId": dora.user_id})),
            (
                "REMOVE_MEMBER",
                json!({"groupId": g, "userId": carl.user_id}),
            ),
            ("BAN_MEMBER", json!({"groupId": g, "userId": carl.user_id})),
            ("BAN_MEMBER", json!({"groupId": g, "userId": dora.user_id})),
            (
                "UNBAN_MEMBER",
                json!({"groupId": g, "userId": erin.user_id}),
            ),
            (
                "PROMOTE_ADMIN",
                json!({"groupId": g, "userId": carl.user_id}),
            ),
            (
                "PROMOTE_ADMIN",
                json!({"groupId": g, "userId": bob.user_id}),
            ),
            ("DEMOTE_ADMIN", json!({"groupId": g, "userId": ana.user_id})),
            (
                "REMOVE_MEMBER",
                json!({"groupId": g, "userId": ana.user_id}),
            ),
        ]
    };
    for (who, client) in [
        ("member Bob", &mut bob.client),
        ("asking Dora", &mut dora.client),
        ("banned Erin", &mut erin.client),
    ] {
        for (action, payload) in attempts(&group_id) {
            let reply = client.chat(action, payload.clone()).await;
            assert_refused(&reply, "FORBIDDEN");
            assert_eq!(
                stack.stored_group(&group_id).await,
                before,
                "{who}'s {action} {payload} changed the group"
            );
        }
    }

    // Nobody was told of any change.
    for (who, client) in [
        ("Ana", &mut ana.client),
        ("Bob", &mut bob.client),
        ("Carl", &mut carl.client),
        ("Dora", &mut dora.client),
        ("Erin", &mut erin.client),
    ] {
        let frames = client.frames_within(QUIET).await;
        assert!(frames.is_empty(), "{who} was told of no change: {frames:?}");
    }

    // The admin may: the refusals were about the role.
    let reply = ana
        .client
        .respond_join(&group_id, &dora.user_id, true)
        .await;
    assert_status(&reply, "JOIN_RESPONDED");
    let info = ana.client.group_info(&group_id).await;
    assert_eq!(member_ids(&info).len(), 4, "{info}");
}

#[tokio::test]
async fn the_last_admin_stays_while_others_remain() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    let group_id = ana.client.create_group("Kept").await;
    add_member(&mut ana, &group_id, &mut bob).await;
    let before = stack.stored_group(&group_id).await;

    assert_refused(
        &ana.client
            .chat("LEAVE_GROUP", json!({"groupId": group_id}))
            .await,
        "FORBIDDEN",
    );
    assert_eq!(
        stack.stored_group(&group_id).await,
        before,
        "LEAVE_GROUP changed the group"
    );
    assert_refused(
        &ana.client
            .moderate("DEMOTE_ADMIN", &group_id, &ana.user_id)
            .await,
        "FORBIDDEN",
    );
    assert_eq!(
        stack.stored_group(&group_id).await,
        before,
        "DEMOTE_ADMIN changed the group"
    );
    let frames = bob.client.frames_within(QUIET).await;
    assert!(
        frames.is_empty(),
        "the member was told of no change: {frames:?}"
    );

    // Ana is still the admin and still gets the group's messages.
    let info = bob.client.group_info(&group_id).await;
    assert_eq!(info["group"]["admins"], json!([ana.user_id]), "{info}");
    let message = sent(
        &bob.client
            .send_to_group(&group_id, "Still here?", "bob-1")
            .await,
    );
    let event = ana.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
    assert_eq!(event["messageId"], message.message_id.as_str(), "{event}");

    // With a second admin she may step down, and then leave.
    assert_status(
        &ana.client
            .moderate("PROMOTE_ADMIN", &group_id, &bob.user_id)
            .await,
        "ADMIN_PROMOTED",
    );
    assert_status(
        &ana.client
            .moderate("DEMOTE_ADMIN", &group_id, &ana.user_id)
            .await,
        "ADMIN_DEMOTED",
    );
    assert_status(
        &ana.client
            .chat("LEAVE_GROUP", json!({"groupId": group_id}))
            .await,
        "GROUP_LEFT",
    );
    // Bob, now the last admin and the last member, may leave too.
    assert_status(
        &bob.client
            .chat("LEAVE_GROUP", json!({"groupId": group_id}))
            .await,
        "GROUP_LEFT",
    );
}

#[tokio::test]
async fn message_text_must_be_printable_and_at_most_4000_characters() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    befriend(&mut ana, &mut bob).await;

    let refused = [
        ("empty", String::new()),
        ("blank", " \n\t  \n".to_owned()),
        ("4001 characters", "a".repeat(4001)),
        ("bell", "ding\u{7}".to_owned()),
        ("escape", "\u{1b}[31mred".to_owned()),
        ("nul", "a\u{0}b".to_owned()),
        ("carriage return", "one\r\ntwo".to_owned()),
        ("delete", "oops\u{7f}".to_owned()),
        ("C1 control", "next\u{85}line".to_owned()),
    ];
    for (n, (what, text)) in refused.iter().enumerate() {
        let reply = ana
            .client
            .send_to_user(&bob.user_id, text, &format!("bad-{n}"))
            .await;
        assert_refused(&reply, "BAD_REQUEST");
        assert!(
            reply.get("messageId").is_none(),
            "{what}: a refused message has no id: {reply}"
        );
    }
    assert!(
        stack.stored_where(MESSAGES, doc! {}).await.is_empty(),
        "no refused text was stored"
    );
    let frames = bob.client.frames_within(QUIET).await;
    assert!(
        with_status(&frames, "NEW_MESSAGE").is_empty(),
        "no refused text was delivered: {frames:?}"
    );

    // At the limits, and markup, which is text like any other.
    let markup = "<script>alert(\"hi\")</script> & <b>bold</b> &amp; 'quotes'";
    let accepted = [
        ("4000 characters", "a".repeat(4000), "a".repeat(4000)),
        (
            "4000 two-byte characters",
            "é".repeat(4000),
            "é".repeat(4000),
        ),
        (
            "newline and tab",
            "one\ntwo\tthree".to_owned(),
            "one\ntwo\tthree".to_owned(),
        ),
        (
            "surrounding blanks",
            "  padded \n".to_owned(),
            "padded".to_owned(),
        ),
        ("markup", markup.to_owned(), markup.to_owned()),
    ];
    for (n, (what, text, stored_as)) in accepted.iter().enumerate() {
        let reply = ana
            .client
            .send_to_user(&bob.user_id, text, &format!("good-{n}"))
            .await;
        let message = sent(&reply);
        let event = bob.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
        assert_eq!(event["messageId"], message.message_id.as_str(), "{what}");
        assert_eq!(
            event["text"],
            stored_as.as_str(),
            "{what}: delivered as stored"
        );
        let document = stack
            .stored_where(MESSAGES, doc! {"message_id": &message.message_id})
            .await;
        assert_eq!(document.len(), 1, "{what}");
        assert_eq!(
            document[0].get_str("text").ok(),
            Some(stored_as.as_str()),
            "{what}: stored verbatim"
        );
    }
    let conversation = format!("d:{}", pair(&ana.user_id, &bob.user_id));
    let history = bob.client.history(&conversation, None, None).await;
    let expected: Vec<String> = accepted.iter().map(|(_, _, s)| s.clone()).collect();
    assert_eq!(history_texts(&history), expected, "returned verbatim");
}

/// The id of the friendship of two users, as direct conversation ids use it.
fn pair(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}|{b}")
    } else {
        format!("{b}|{a}")
    }
}

/// Everything chat-service keeps or changes (profiles live in `users`),
/// collection by collection.
async fn chat_state(stack: &Stack) -> Vec<Vec<mongodb::bson::Document>> {
    let mut state = Vec::new();
    for collection in [USERS, FRIENDSHIPS, GROUPS, CONVERSATIONS, MESSAGES, READS] {
        state.push(stack.stored_where(collection, doc! {}).await);
    }
    state
}
