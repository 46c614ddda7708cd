//! The chat actions of the client contract as calls on a [`Client`], users
//! who are ready to chat, and what chat-service stored.
//!
//! Chat needs a stack with `chat-service`: [`chat_stack`] starts one with two
//! gateways, so that every scenario can put its users on both. A
//! [`ChatUser`] is a confirmed, logged-in account with a nickname of its
//! choosing and one open connection; [`sign_up_many`] makes many at once.
//!
//! Replies are returned as they came; [`sent`] reads the fields of a
//! `MESSAGE_SENT` reply. Events are read with [`Client::expect_event`];
//! [`Client::frames_within`] collects everything a connection receives for a
//! while, which is how a test shows that something did *not* arrive.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt, stream};
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::client::Client;
use crate::flows::{DEFAULT_PASSWORD, assert_status, signed_up_user};
use crate::mail::MAIL_TIMEOUT;
use crate::stack::Stack;

/// How long a pushed event may take to reach a connection on any gateway.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection is watched to show that an event does not come.
/// Events that do come cross the bus in milliseconds.
pub const QUIET: Duration = Duration::from_secs(1);

/// The collections chat-service keeps.
pub const FRIENDSHIPS: &str = "friendships";
pub const GROUPS: &str = "groups";
pub const CONVERSATIONS: &str = "conversations";
pub const MESSAGES: &str = "messages";
pub const READS: &str = "reads";

/// Two gateways, one `auth-service`, one `chat-service`, one `mailer`.
///
/// The gateways' per-connection and per-user limits are raised: a scenario
/// sends its requests back to back, far faster than a person types, and a
/// `RATE_LIMITED` answer would say nothing about chat.
pub async fn chat_stack() -> Stack {
    Stack::builder()
        .gateways(2)
        .auth_replicas(1)
        .chat(true)
        .generous_limits()
        .start()
        .await
}

/// A confirmed, logged-in account with its nickname set, and the connection
/// it logged in on.
#[derive(Debug)]
pub struct ChatUser {
    pub email: String,
    pub user_id: String,
    pub token: String,
    pub nickname: String,
    /// The gateway `client` is connected to.
    pub gateway: usize,
    pub client: Client,
}

impl ChatUser {
    /// Signs `email` up through gateway `gateway`, logs in there and sets
    /// `nickname` with `UPDATE_PROFILE`.
    ///
    /// # Panics
    /// If any step does not get its success reply.
    pub async fn sign_up(stack: &Stack, gateway: usize, email: &str, nickname: &str) -> Self {
        let mut client = Client::connect(&stack.gateway_url(gateway)).await;
        let session = signed_up_user(stack, &mut client, email).await;
        let user_id = session.profile["userId"]
            .as_str()
            .unwrap_or_else(|| panic!("USER_LOGGED without flag.userId: {}", session.profile))
            .to_owned();
        let reply = client.update_profile(nickname).await;
        assert_status(&reply, "PROFILE_UPDATED");
        client.settle().await;
        ChatUser {
            email: session.email,
            user_id,
            token: session.token,
            nickname: nickname.to_owned(),
            gateway,
            client,
        }
    }

    /// Another connection of this user, through `gateway`, logged in with
    /// the session token and settled (see [`Client::settle`]).
    ///
    /// # Panics
    /// If `FASTLOGIN` is refused.
    pub async fn connect_again(&self, stack: &Stack, gateway: usize) -> Client {
        let mut client = Client::connect(&stack.gateway_url(gateway)).await;
        assert_status(
            &client.fastlogin(&self.email, &self.token).await,
            "USER_LOGGED",
        );
        client.settle().await;
        client
    }

    /// `{"userId": ...}`, the payload naming this user.
    pub fn target(&self) -> Value {
        json!({"userId": self.user_id})
    }
}

/// Makes `a` and `b` friends: `a` asks, `b` accepts. The events this causes
/// on their connections are consumed.
///
/// # Panics
/// If a step does not get its success reply or event.
pub async fn befriend(a: &mut ChatUser, b: &mut ChatUser) {
    assert_status(
        &a.client.chat("FRIEND_REQUEST", b.target()).await,
        "FRIEND_REQUEST_SENT",
    );
    b.client
        .expect_event("FRIEND_REQUEST_RECEIVED", EVENT_TIMEOUT)
        .await;
    let reply = b
        .client
        .chat(
            "FRIEND_RESPOND",
            json!({"userId": a.user_id, "accept": true}),
        )
        .await;
    assert_status(&reply, "FRIEND_RESPONDED");
    a.client.expect_event("FRIEND_ADDED", EVENT_TIMEOUT).await;
}

/// Adds `member` to `admin`'s group, and consumes the GROUP_JOINED it
/// tells the member's connection.
///
/// # Panics
/// If the addition is not answered MEMBER_ADDED, or the event does not come.
pub async fn add_member(admin: &mut ChatUser, group_id: &str, member: &mut ChatUser) {
    assert_status(
        &admin
            .client
            .moderate("ADD_MEMBER", group_id, &member.user_id)
            .await,
        "MEMBER_ADDED",
    );
    member
        .client
        .expect_event("GROUP_JOINED", EVENT_TIMEOUT)
        .await;
}

/// Signs up one account per `(email, gateway)` pair, each logged in on its
/// own connection to that gateway, at most `concurrency` requests at a time.
///
/// Registration and login each cost auth-service one Argon2 hash, which it
/// computes one per core; bounding the requests in flight keeps every one of
/// them well inside the gateway's action timeout. The confirmation mails are
/// read from MailDev in one pass once all have arrived, rather than polled
/// per user. Nicknames keep their defaults.
///
/// # Panics
/// If any step fails, or the mails do not all arrive within `MAIL_TIMEOUT`
/// after the last registration.
pub async fn sign_up_many(
    stack: &Stack,
    accounts: &[(String, usize)],
    concurrency: usize,
) -> Vec<ChatUser> {
    // Register, each on the connection the account will keep.
    let registered: Vec<(usize, Client)> = stream::iter(accounts.iter().enumerate())
        .map(|(i, (email, gateway))| async move {
            let mut client = Client::connect(&stack.gateway_url(*gateway)).await;
            assert_status(
                &client.register(email, DEFAULT_PASSWORD).await,
                "USER_REGISTERED",
            );
            (i, client)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;

    let codes = confirmation_codes(stack, accounts.iter().map(|(email, _)| email.as_str())).await;

    // Confirm and log in.
    let mut users: Vec<(usize, ChatUser)> = stream::iter(registered)
        .map(|(i, mut client)| {
            let (email, gateway) = &accounts[i];
            let code = &codes[email.as_str()];
            async move {
                assert_status(&client.confirm(email, code).await, "USER_CONFIRMED");
                let reply = client.login(email, DEFAULT_PASSWORD).await;
                assert_status(&reply, "USER_LOGGED");
                let field = |name: &str| {
                    reply["flag"][name]
                        .as_str()
                        .unwrap_or_else(|| panic!("USER_LOGGED without flag.{name}: {reply}"))
                        .to_owned()
                };
                let user = ChatUser {
                    email: email.clone(),
                    user_id: field("userId"),
                    token: field("token"),
                    nickname: field("nickname"),
                    gateway: *gateway,
                    client,
                };
                (i, user)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    users.sort_by_key(|(i, _)| *i);
    let mut users: Vec<ChatUser> = users.into_iter().map(|(_, user)| user).collect();

    // Let every gateway hear of every login before anyone relies on it.
    stream::iter(users.iter_mut())
        .for_each_concurrent(concurrency, |user| user.client.settle())
        .await;
    users
}

/// The confirmation code of each address, from the latest mail to it, once
/// every address has one.
async fn confirmation_codes<'a>(
    stack: &Stack,
    emails: impl Iterator<Item = &'a str>,
) -> HashMap<&'a str, String> {
    let emails: Vec<&str> = emails.collect();
    let deadline = Instant::now() + MAIL_TIMEOUT;
    loop {
        let mails = stack.maildev().mails().await;
        let mut codes = HashMap::new();
        for mail in &mails {
            if let Some(code) = mail.confirmation_code() {
                for email in &emails {
                    if mail.is_to(email) {
                        codes.insert(*email, code.to_owned());
                    }
                }
            }
        }
        if codes.len() == emails.len() {
            return codes;
        }
        assert!(
            Instant::now() < deadline,
            "after {MAIL_TIMEOUT:?}, {} of {} confirmation mails have arrived ({} mails caught); \
             check the mailer's log",
            codes.len(),
            emails.len(),
            mails.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Ana on the first gateway, Bob and Cid on the second: Ana is friends
/// with both, and all three are in Ana's group "Climbers".
pub struct Circle {
    pub ana: ChatUser,
    pub bob: ChatUser,
    pub cid: ChatUser,
    pub group: String,
}

impl Circle {
    /// Signs the three up and brings them together.
    ///
    /// # Panics
    /// If a step is refused.
    pub async fn gather(stack: &Stack) -> Circle {
        let mut ana = ChatUser::sign_up(stack, 0, "ana@example.com", "Ana").await;
        let mut bob = ChatUser::sign_up(stack, 1, "bob@example.com", "Bob").await;
        let mut cid = ChatUser::sign_up(stack, 1, "cid@example.com", "Cid").await;
        befriend(&mut ana, &mut bob).await;
        befriend(&mut ana, &mut cid).await;
        let group = ana.client.create_group("Climbers").await;
        for member in [&bob, &cid] {
            let reply = ana
                .client
                .moderate("ADD_MEMBER", &group, &member.user_id)
                .await;
            assert_status(&reply, "MEMBER_ADDED");
        }
        Circle {
            ana,
            bob,
            cid,
            group,
        }
    }
}

/// The fields of a `MESSAGE_SENT` reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub message_id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub temporary: bool,
}

/// Reads a `MESSAGE_SENT` reply.
///
/// # Panics
/// If `reply` is not a `MESSAGE_SENT` with every field.
#[track_caller]
pub fn sent(reply: &Value) -> Sent {
    assert_status(reply, "MESSAGE_SENT");
    let text = |name: &str| {
        reply[name]
            .as_str()
            .unwrap_or_else(|| panic!("MESSAGE_SENT without a string {name}: {reply}"))
            .to_owned()
    };
    Sent {
        message_id: text("messageId"),
        conversation_id: text("conversationId"),
        seq: reply["seq"]
            .as_i64()
            .unwrap_or_else(|| panic!("MESSAGE_SENT without an integer seq: {reply}")),
        temporary: reply["temporary"]
            .as_bool()
            .unwrap_or_else(|| panic!("MESSAGE_SENT without a boolean temporary: {reply}")),
    }
}

/// Asserts that `reply` is the refusal `code` (`FORBIDDEN`, `NOT_FOUND`...)
/// with a message for the user.
#[track_caller]
pub fn assert_refused(reply: &Value, code: &str) {
    assert_status(reply, code);
    assert!(
        reply["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a refusal says why: {reply}"
    );
}

/// The texts of the `messages` of a `HISTORY` reply, in order.
#[track_caller]
pub fn history_texts(reply: &Value) -> Vec<String> {
    assert_status(reply, "HISTORY");
    messages_of(reply)
        .iter()
        .map(|m| {
            m["text"]
                .as_str()
                .unwrap_or_else(|| panic!("a message without text: {m}"))
                .to_owned()
        })
        .collect()
}

/// The `messages` array of a `HISTORY` reply.
#[track_caller]
pub fn messages_of(reply: &Value) -> &Vec<Value> {
    reply["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("HISTORY without a messages array: {reply}"))
}

/// The `userId`s of a list of user cards, e.g. `friends` of `FRIENDS`.
#[track_caller]
pub fn user_ids(cards: &Value) -> Vec<String> {
    cards
        .as_array()
        .unwrap_or_else(|| panic!("not a list of users: {cards}"))
        .iter()
        .map(|c| {
            c["userId"]
                .as_str()
                .unwrap_or_else(|| panic!("a user card without userId: {c}"))
                .to_owned()
        })
        .collect()
}

/// Every object key anywhere inside `value`.
pub fn all_keys(value: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                for (key, inner) in map {
                    keys.push(key.clone());
                    stack.push(inner);
                }
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    keys
}

/// The frames among `frames` with `rocketStatus` `status`.
pub fn with_status<'a>(frames: &'a [Value], status: &str) -> Vec<&'a Value> {
    frames
        .iter()
        .filter(|f| f["rocketStatus"] == status)
        .collect()
}

impl Client {
    /// Sends the chat action `action` with the fields of `payload` (a JSON
    /// object) and returns the reply.
    pub async fn chat(&mut self, action: &str, payload: Value) -> Value {
        let mut request = match payload {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            other => panic!("a {action} payload must be a JSON object, not {other}"),
        };
        request.insert("action".to_owned(), Value::String(action.to_owned()));
        self.request(Value::Object(request)).await
    }

    /// One round trip to chat-service (`LIST_GROUPS`): a check that it serves
    /// the user who just logged in. (A login is answered once its connection
    /// receives the user's and their groups' events; nothing needs to settle
    /// for that. `login_readiness.rs` shows it.)
    pub async fn settle(&mut self) {
        let reply = self.chat("LIST_GROUPS", Value::Null).await;
        assert_status(&reply, "GROUPS");
    }

    /// Every frame this connection receives within `window` (buffered ones
    /// first).
    pub async fn frames_within(&mut self, window: Duration) -> Vec<Value> {
        let deadline = Instant::now() + window;
        let mut frames = self.take_buffered();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return frames;
            }
            match self.next_event(left).await {
                Some(frame) => frames.push(frame),
                None => return frames,
            }
        }
    }

    /// `UPDATE_PROFILE`; replies `PROFILE_UPDATED`.
    pub async fn update_profile(&mut self, nickname: &str) -> Value {
        self.chat("UPDATE_PROFILE", json!({"nickname": nickname}))
            .await
    }

    /// `SEND_MESSAGE` to a user; replies `MESSAGE_SENT`.
    pub async fn send_to_user(&mut self, user_id: &str, text: &str, client_msg_id: &str) -> Value {
        self.chat(
            "SEND_MESSAGE",
            json!({"to": {"userId": user_id}, "text": text, "clientMsgId": client_msg_id}),
        )
        .await
    }

    /// `SEND_MESSAGE` to a group; replies `MESSAGE_SENT`.
    pub async fn send_to_group(
        &mut self,
        group_id: &str,
        text: &str,
        client_msg_id: &str,
    ) -> Value {
        self.chat(
            "SEND_MESSAGE",
            json!({"to": {"groupId": group_id}, "text": text, "clientMsgId": client_msg_id}),
        )
        .await
    }

    /// `HISTORY` of a conversation, optionally before a sequence number and
    /// with a page size; replies `HISTORY`.
    pub async fn history(
        &mut self,
        conversation_id: &str,
        before_seq: Option<i64>,
        limit: Option<i64>,
    ) -> Value {
        let mut payload = json!({"conversationId": conversation_id});
        if let Some(before) = before_seq {
            payload["beforeSeq"] = json!(before);
        }
        if let Some(limit) = limit {
            payload["limit"] = json!(limit);
        }
        self.chat("HISTORY", payload).await
    }

    /// `CREATE_GROUP`; returns the new group's id.
    ///
    /// # Panics
    /// If the reply is not `GROUP_CREATED` with a `group.groupId`.
    pub async fn create_group(&mut self, name: &str) -> String {
        let reply = self
            .chat(
                "CREATE_GROUP",
                json!({"name": name, "description": format!("The {name} group")}),
            )
            .await;
        assert_status(&reply, "GROUP_CREATED");
        reply["group"]["groupId"]
            .as_str()
            .unwrap_or_else(|| panic!("GROUP_CREATED without group.groupId: {reply}"))
            .to_owned()
    }

    /// `GROUP_INFO`; replies `GROUP_INFO` with `group`.
    pub async fn group_info(&mut self, group_id: &str) -> Value {
        self.chat("GROUP_INFO", json!({"groupId": group_id})).await
    }

    /// A moderation action on a member (`ADD_MEMBER`, `REMOVE_MEMBER`,
    /// `BAN_MEMBER`, `UNBAN_MEMBER`, `PROMOTE_ADMIN`, `DEMOTE_ADMIN`).
    pub async fn moderate(&mut self, action: &str, group_id: &str, user_id: &str) -> Value {
        self.chat(action, json!({"groupId": group_id, "userId": user_id}))
            .await
    }

    /// `RESPOND_JOIN`.
    pub async fn respond_join(&mut self, group_id: &str, user_id: &str, accept: bool) -> Value {
        self.chat(
            "RESPOND_JOIN",
            json!({"groupId": group_id, "userId": user_id, "accept": accept}),
        )
        .await
    }

    /// `LIST_FRIENDS`; replies `FRIENDS`.
    pub async fn list_friends(&mut self) -> Value {
        self.chat("LIST_FRIENDS", Value::Null).await
    }

    /// The entries of `LIST_CONVERSATIONS`.
    ///
    /// # Panics
    /// If the reply is not `CONVERSATIONS` with a list.
    pub async fn conversations(&mut self) -> Vec<Value> {
        let reply = self.chat("LIST_CONVERSATIONS", Value::Null).await;
        assert_status(&reply, "CONVERSATIONS");
        reply["conversations"]
            .as_array()
            .unwrap_or_else(|| panic!("CONVERSATIONS without a list: {reply}"))
            .clone()
    }
}

/// The `userId`s of the `members` of a `GROUP_INFO` reply (as a member sees it).
#[track_caller]
pub fn member_ids(info: &Value) -> Vec<String> {
    assert_status(info, "GROUP_INFO");
    user_ids(&info["group"]["members"])
}

impl Stack {
    /// The stored document of a group.
    ///
    /// # Panics
    /// If there is none, or the database does not answer.
    pub async fn stored_group(&self, group_id: &str) -> Document {
        self.mongo()
            .collection::<Document>(GROUPS)
            .find_one(doc! {"_id": group_id})
            .await
            .unwrap_or_else(|e| panic!("reading group {group_id}: {e}"))
            .unwrap_or_else(|| panic!("no group {group_id} is stored"))
    }

    /// The stored documents of a collection that match `filter`.
    ///
    /// # Panics
    /// If the database does not answer.
    pub async fn stored_where(&self, collection: &str, filter: Document) -> Vec<Document> {
        self.mongo()
            .collection::<Document>(collection)
            .find(filter.clone())
            .await
            .unwrap_or_else(|e| panic!("reading {collection} where {filter}: {e}"))
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("reading {collection} where {filter}: {e}"))
    }
}
