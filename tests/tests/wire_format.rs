//! The JSON on the wire, pinned byte for byte: a representative reply and
//! event of each kind, as the existing clients receive them (keys, casing,
//! which fields appear, their order). Ids, tokens and times differ from run
//! to run and are replaced by names before comparing; nothing else is.

use serde_json::json;
use switchyard_tests::chat::{ChatUser, EVENT_TIMEOUT, befriend, chat_stack};
use switchyard_tests::{Client, assert_status};

const ANA: &str = "ana@example.com";
const BOB: &str = "bob@example.com";

/// A frame with its run-to-run values replaced by names.
struct Blanks(Vec<(String, String)>);

impl Blanks {
    fn name(&mut self, value: &str, name: &str) {
        self.0.push((value.to_owned(), format!("<{name}>")));
    }

    fn apply(&self, raw: &str) -> String {
        let mut text = raw.to_owned();
        // Longest first: a conversation id contains user ids.
        let mut blanks: Vec<&(String, String)> = self.0.iter().collect();
        blanks.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        for (value, name) in blanks {
            text = text.replace(value.as_str(), name);
        }
        for key in [
            "sentAt",
            "expiresAt",
            "expiresAtMs",
            "createdAt",
            "since",
            "sinceMs",
        ] {
            text = zero_number_after(&text, &format!("\"{key}\":"));
        }
        let text = blank_string_after(&text, "\"position\":\"", "<position>");
        blank_string_after(&text, "\"requestId\":\"", "<request>")
    }
}

/// `text` with the number after every `prefix` replaced by 0.
fn zero_number_after(text: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let (before, after) = rest.split_at(at + prefix.len());
        out.push_str(before);
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            out.push('0');
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// `text` with the string after every `prefix` (which ends in its opening
/// quote) replaced by `name`.
fn blank_string_after(text: &str, prefix: &str, name: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let (before, after) = rest.split_at(at + prefix.len());
        out.push_str(before);
        out.push_str(name);
        rest = &after[after.find('"').unwrap_or(after.len())..];
    }
    out.push_str(rest);
    out
}

/// The last frame `client` received whose status is `status`, exactly as
/// sent.
fn raw(client: &Client, status: &str) -> String {
    let needle = format!("\"rocketStatus\":\"{status}\"");
    client
        .raw_frames()
        .iter()
        .rev()
        .find(|f| f.contains(&needle))
        .unwrap_or_else(|| panic!("no {status} frame among {:?}", client.raw_frames()))
        .clone()
}

#[tokio::test]
async fn replies_and_events_keep_their_exact_json() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, ANA, "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, BOB, "Bob").await;
    ana.client.record_raw_frames();
    bob.client.record_raw_frames();
    let mut blanks = Blanks(Vec::new());
    blanks.name(&ana.user_id, "ana");
    blanks.name(&bob.user_id, "bob");
    blanks.name(&ana.token, "ana-token");

    let mut pinned: Vec<(&str, String)> = Vec::new();
    let mut tab = Client::connect(&stack.gateway_url(1)).await;
    tab.record_raw_frames();
    let login = tab.fastlogin(ANA, &ana.token).await;
    assert_status(&login, "USER_LOGGED");
    pinned.push(("USER_LOGGED reply", raw(&tab, "USER_LOGGED")));

    let reply = ana.client.update_profile("Ana B").await;
    assert_status(&reply, "PROFILE_UPDATED");
    pinned.push(("PROFILE_UPDATED reply", raw(&ana.client, "PROFILE_UPDATED")));
    tab.expect_event("PROFILE_UPDATED", EVENT_TIMEOUT).await;
    pinned.push(("PROFILE_UPDATED event", raw(&tab, "PROFILE_UPDATED")));

    let reply = bob
        .client
        .chat("SEARCH_USERS", json!({"nickname": "ana"}))
        .await;
    assert_status(&reply, "USERS_FOUND");
    pinned.push(("USERS_FOUND reply", raw(&bob.client, "USERS_FOUND")));

    befriend(&mut ana, &mut bob).await;
    pinned.push((
        "FRIEND_REQUEST_SENT reply",
        raw(&ana.client, "FRIEND_REQUEST_SENT"),
    ));
    pinned.push((
        "FRIEND_REQUEST_RECEIVED event",
        raw(&bob.client, "FRIEND_REQUEST_RECEIVED"),
    ));
    pinned.push(("FRIEND_ADDED event", raw(&ana.client, "FRIEND_ADDED")));

    let sent = ana.client.send_to_user(&bob.user_id, "Hello", "m-1").await;
    assert_status(&sent, "MESSAGE_SENT");
    let message_id = sent["message"]["messageId"]
        .as_str()
        .or_else(|| sent["messageId"].as_str())
        .expect("MESSAGE_SENT names the message")
        .to_owned();
    let conversation = sent["message"]["conversationId"]
        .as_str()
        .or_else(|| sent["conversationId"].as_str())
        .expect("MESSAGE_SENT names the conversation")
        .to_owned();
    blanks.name(&message_id, "message");
    blanks.name(&conversation, "conversation");
    pinned.push(("MESSAGE_SENT reply", raw(&ana.client, "MESSAGE_SENT")));
    bob.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
    pinned.push(("NEW_MESSAGE event", raw(&bob.client, "NEW_MESSAGE")));

    let history = bob.client.history(&conversation, None, None).await;
    assert_status(&history, "HISTORY");
    pinned.push(("HISTORY reply", raw(&bob.client, "HISTORY")));

    let group = ana.client.create_group("Hikers").await;
    blanks.name(&group, "group");
    blanks.name(&format!("g:{group}"), "group-conversation");
    let reply = ana
        .client
        .moderate("ADD_MEMBER", &group, &bob.user_id)
        .await;
    assert_status(&reply, "MEMBER_ADDED");
    pinned.push(("MEMBER_ADDED reply", raw(&ana.client, "MEMBER_ADDED")));
    bob.client.expect_event("GROUP_JOINED", EVENT_TIMEOUT).await;
    pinned.push(("GROUP_JOINED event", raw(&bob.client, "GROUP_JOINED")));

    let refused = bob
        .client
        .chat("FRIEND_REQUEST", json!({"userId": 5}))
        .await;
    assert_status(&refused, "BAD_REQUEST");
    pinned.push(("BAD_REQUEST reply", raw(&bob.client, "BAD_REQUEST")));

    // The kinds pinned after the first thirteen: each reply or event body
    // that had no line of its own.
    pinned.push((
        "FRIEND_RESPONDED reply",
        raw(&bob.client, "FRIEND_RESPONDED"),
    ));
    pinned.push(("GROUP_CREATED reply", raw(&ana.client, "GROUP_CREATED")));

    let reply = bob
        .client
        .chat(
            "MARK_READ",
            json!({"conversationId": conversation, "seq": 1}),
        )
        .await;
    assert_status(&reply, "READ_MARKED");
    pinned.push(("READ_MARKED reply", raw(&bob.client, "READ_MARKED")));
    ana.client.expect_event("READ_RECEIPT", EVENT_TIMEOUT).await;
    pinned.push(("READ_RECEIPT event", raw(&ana.client, "READ_RECEIPT")));

    let reply = ana
        .client
        .chat("TYPING", json!({"conversationId": conversation}))
        .await;
    assert_status(&reply, "TYPING_SENT");
    pinned.push(("TYPING_SENT reply", raw(&ana.client, "TYPING_SENT")));
    bob.client.expect_event("TYPING", EVENT_TIMEOUT).await;
    pinned.push(("TYPING event", raw(&bob.client, "TYPING")));

    assert_status(&ana.client.list_friends().await, "FRIENDS");
    pinned.push(("FRIENDS reply", raw(&ana.client, "FRIENDS")));
    bob.client.conversations().await;
    pinned.push(("CONVERSATIONS reply", raw(&bob.client, "CONVERSATIONS")));
    assert_status(&ana.client.group_info(&group).await, "GROUP_INFO");
    pinned.push(("GROUP_INFO reply", raw(&ana.client, "GROUP_INFO")));
    bob.client.settle().await;
    pinned.push(("GROUPS reply", raw(&bob.client, "GROUPS")));
    let reply = bob
        .client
        .chat("SEARCH_GROUPS", json!({"query": "hik"}))
        .await;
    assert_status(&reply, "GROUPS_FOUND");
    pinned.push(("GROUPS_FOUND reply", raw(&bob.client, "GROUPS_FOUND")));

    let reply = ana
        .client
        .moderate("PROMOTE_ADMIN", &group, &bob.user_id)
        .await;
    assert_status(&reply, "ADMIN_PROMOTED");
    pinned.push(("ADMIN_PROMOTED reply", raw(&ana.client, "ADMIN_PROMOTED")));
    bob.client
        .expect_event("ADMIN_PROMOTED", EVENT_TIMEOUT)
        .await;
    pinned.push(("ADMIN_PROMOTED event", raw(&bob.client, "ADMIN_PROMOTED")));

    let reply = ana.client.chat("FRIEND_REMOVE", bob.target()).await;
    assert_status(&reply, "FRIEND_REMOVED");
    pinned.push(("FRIEND_REMOVED reply", raw(&ana.client, "FRIEND_REMOVED")));
    bob.client
        .expect_event("FRIEND_REMOVED", EVENT_TIMEOUT)
        .await;
    pinned.push(("FRIEND_REMOVED event", raw(&bob.client, "FRIEND_REMOVED")));

    let actual: Vec<String> = pinned
        .iter()
        .map(|(what, frame)| format!("{what}: {}", blanks.apply(frame)))
        .collect();
    let expected: Vec<&str> = EXPECTED.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        actual,
        expected,
        "the wire format changed; every line as received now:\n{}",
        actual.join("\n")
    );
}

/// What the clients receive, one frame per line, as pinned.
const EXPECTED: &str = r#"
USER_LOGGED reply: {"message":"You logged.","rocketStatus":"USER_LOGGED","flag":{"email":"ana@example.com","nickname":"Ana","confirmed":true,"token":"<ana-token>","online":true,"points":1000,"rank":"junior","permission":"basic","age":"any","country":"any","ban":false,"profileUrl":"/imgs/default","userId":"<ana>"},"requestId":"<request>"}
PROFILE_UPDATED reply: {"message":"Profile updated.","rocketStatus":"PROFILE_UPDATED","profile":{"userId":"<ana>","nickname":"Ana B"},"requestId":"<request>"}
PROFILE_UPDATED event: {"message":"Your profile was updated on another device.","rocketStatus":"PROFILE_UPDATED","profile":{"userId":"<ana>","nickname":"Ana B"},"position":"<position>"}
USERS_FOUND reply: {"message":"1 found.","rocketStatus":"USERS_FOUND","users":[{"userId":"<ana>","nickname":"Ana B","profileUrl":"/imgs/default"}],"requestId":"<request>"}
FRIEND_REQUEST_SENT reply: {"message":"Friend request sent.","rocketStatus":"FRIEND_REQUEST_SENT","userId":"<bob>","user":{"userId":"<bob>","nickname":"Bob","profileUrl":"/imgs/default"},"requestId":"<request>"}
FRIEND_REQUEST_RECEIVED event: {"message":"Someone wants to be your friend.","rocketStatus":"FRIEND_REQUEST_RECEIVED","userId":"<ana>","user":{"userId":"<ana>","nickname":"Ana B","profileUrl":"/imgs/default"},"position":"<position>"}
FRIEND_ADDED event: {"message":"You have a new friend.","rocketStatus":"FRIEND_ADDED","userId":"<bob>","user":{"userId":"<bob>","nickname":"Bob","profileUrl":"/imgs/default"},"position":"<position>"}
MESSAGE_SENT reply: {"message":"Message sent.","rocketStatus":"MESSAGE_SENT","messageId":"<message>","conversationId":"<conversation>","seq":1,"clientMsgId":"m-1","sentAt":0,"temporary":false,"requestId":"<request>"}
NEW_MESSAGE event: {"message":"New message.","rocketStatus":"NEW_MESSAGE","messageId":"<message>","conversationId":"<conversation>","seq":1,"senderId":"<ana>","clientMsgId":"m-1","text":"Hello","attachments":[],"sentAt":0,"conversation":{"conversationId":"<conversation>","kind":"direct","groupId":null,"temporary":false},"position":"<position>"}
HISTORY reply: {"message":"1 messages.","rocketStatus":"HISTORY","conversationId":"<conversation>","messages":[{"messageId":"<message>","conversationId":"<conversation>","seq":1,"senderId":"<ana>","clientMsgId":"m-1","text":"Hello","attachments":[],"sentAt":0}],"hasMore":false,"requestId":"<request>"}
MEMBER_ADDED reply: {"message":"Member added.","rocketStatus":"MEMBER_ADDED","groupId":"<group>","groupName":"Hikers","userId":"<bob>","requestId":"<request>"}
GROUP_JOINED event: {"message":"A member joined the group.","rocketStatus":"GROUP_JOINED","groupId":"<group>","groupName":"Hikers","userId":"<bob>","member":{"userId":"<bob>","nickname":"Bob","profileUrl":"/imgs/default"},"position":"<position>"}
BAD_REQUEST reply: {"message":"Invalid FRIEND_REQUEST payload: invalid type: integer `5`, expected a string.","rocketStatus":"BAD_REQUEST","requestId":"<request>"}
FRIEND_RESPONDED reply: {"message":"You are now friends.","rocketStatus":"FRIEND_RESPONDED","accepted":true,"userId":"<ana>","user":{"userId":"<ana>","nickname":"Ana B","profileUrl":"/imgs/default"},"requestId":"<request>"}
GROUP_CREATED reply: {"message":"Group created; you are its admin.","rocketStatus":"GROUP_CREATED","group":{"groupId":"<group>","name":"Hikers","description":"The Hikers group","memberCount":1,"role":"admin","members":[{"userId":"<ana>","nickname":"Ana B","profileUrl":"/imgs/default","online":true}],"admins":["<ana>"],"joinRequests":[],"banned":[]},"requestId":"<request>"}
READ_MARKED reply: {"message":"Marked as read.","rocketStatus":"READ_MARKED","conversationId":"<conversation>","seq":1,"requestId":"<request>"}
READ_RECEIPT event: {"message":"Read up to here.","rocketStatus":"READ_RECEIPT","conversationId":"<conversation>","userId":"<bob>","seq":1,"position":"<position>"}
TYPING_SENT reply: {"message":"Typing noted.","rocketStatus":"TYPING_SENT","conversationId":"<conversation>","forwarded":true,"requestId":"<request>"}
TYPING event: {"message":"Someone is typing.","rocketStatus":"TYPING","conversationId":"<conversation>","userId":"<ana>"}
FRIENDS reply: {"message":"1 friends.","rocketStatus":"FRIENDS","friends":[{"userId":"<bob>","nickname":"Bob","profileUrl":"/imgs/default","online":true}],"incoming":[],"outgoing":[],"requestId":"<request>"}
CONVERSATIONS reply: {"message":"2 conversations.","rocketStatus":"CONVERSATIONS","conversations":[{"conversationId":"<group-conversation>","kind":"group","groupId":"<group>","groupName":"Hikers","with":null,"temporary":false,"lastSeq":0,"lastMessage":null,"unread":0},{"conversationId":"<conversation>","kind":"direct","groupId":null,"groupName":null,"with":{"userId":"<ana>","nickname":"Ana B","profileUrl":"/imgs/default"},"temporary":false,"lastSeq":1,"lastMessage":{"messageId":"<message>","seq":1,"senderId":"<ana>","text":"Hello","sentAt":0},"unread":0}],"requestId":"<request>"}
GROUP_INFO reply: {"message":"Hikers","rocketStatus":"GROUP_INFO","group":{"groupId":"<group>","name":"Hikers","description":"The Hikers group","memberCount":2,"role":"admin","members":[{"userId":"<ana>","nickname":"Ana B","profileUrl":"/imgs/default","online":true},{"userId":"<bob>","nickname":"Bob","profileUrl":"/imgs/default","online":true}],"admins":["<ana>"],"joinRequests":[],"banned":[]},"requestId":"<request>"}
GROUPS reply: {"message":"1 groups.","rocketStatus":"GROUPS","groups":[{"groupId":"<group>","name":"Hikers","description":"The Hikers group","memberCount":2,"role":"member"}],"requestId":"<request>"}
GROUPS_FOUND reply: {"message":"1 found.","rocketStatus":"GROUPS_FOUND","groups":[{"groupId":"<group>","name":"Hikers","description":"The Hikers group","memberCount":2,"role":"member"}],"requestId":"<request>"}
ADMIN_PROMOTED reply: {"message":"Member promoted to admin.","rocketStatus":"ADMIN_PROMOTED","groupId":"<group>","groupName":"Hikers","userId":"<bob>","requestId":"<request>"}
ADMIN_PROMOTED event: {"message":"A member became an admin.","rocketStatus":"ADMIN_PROMOTED","groupId":"<group>","groupName":"Hikers","userId":"<bob>","position":"<position>"}
FRIEND_REMOVED reply: {"message":"A friendship ended.","rocketStatus":"FRIEND_REMOVED","userId":"<bob>","requestId":"<request>"}
FRIEND_REMOVED event: {"message":"A friendship ended.","rocketStatus":"FRIEND_REMOVED","userId":"<ana>","position":"<position>"}
"#;
