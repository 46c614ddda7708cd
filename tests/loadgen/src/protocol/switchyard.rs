//! This product's client protocol: accounts through the real flow
//! (REGISTER, the code from MailDev, CONFIRMATION, LOGIN), then FASTLOGIN
//! with the session tokens; friends for one-to-one chat (FRIEND_REQUEST,
//! FRIEND_RESPOND); groups for group chat (CREATE_GROUP, ADD_MEMBER); and
//! SEND_MESSAGE, whose NEW_MESSAGE event is what recipients receive.
//!
//! Passwords are hashed with Argon2id, which is deliberately slow, so a run
//! signs up a modest number of users and opens any further connections with
//! FASTLOGIN as those users. Signed-up users can be kept in a file and reused
//! by later runs against the same database.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{Conn, Dest, Other, Protocol, Stamp, Topology, request};
use crate::dial::{Dialer, Ws};
use crate::ledger::Outcome;
use crate::maildev::Codes;
use crate::metrics::{Counters, Failure, Metric, Recorder};

/// `rocketStatus` values that report an error (the contract's error codes).
const ERROR_CODES: &[&str] = &[
    "BAD_REQUEST",
    "UNKNOWN_ACTION",
    "UNAUTHORIZED",
    "FORBIDDEN",
    "NOT_FOUND",
    "CONFLICT",
    "RATE_LIMITED",
    "BUSY",
    "TOO_MANY_CONNECTIONS",
    "SERVICE_UNAVAILABLE",
    "TIMEOUT",
    "INTERNAL",
];

/// The prefix of a measured message's `requestId`, before its stamp id; set-up
/// requests use `lg-`, so the two never meet.
const MESSAGE_REQUEST: &str = "m";

/// How long a sign-up waits for its confirmation mail.
const MAIL_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries of a set-up request the gateway refused with RATE_LIMITED.
const RATE_LIMITED_TRIES: usize = 50;
/// The least a set-up request waits after a refusal, in milliseconds.
const MIN_SET_UP_RETRY_MS: u64 = 1000;
/// Set-up requests (friendships, groups) in flight at once.
const WIRING_CONCURRENCY: usize = 32;

/// A confirmed account with an open session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub email: String,
    pub password: String,
    pub token: String,
    pub user_id: String,
}

#[derive(Debug)]
pub struct Switchyard {
    pub maildev: String,
    pub password: String,
    pub run_id: String,
    pub accounts_file: Option<PathBuf>,
    pub signup_concurrency: usize,
    pub accounts: Vec<Account>,
    group_ids: Vec<String>,
    next_request: AtomicU64,
}

/// The `rocketStatus` of a frame, or `""`.
fn status(value: &Value) -> &str {
    value["rocketStatus"].as_str().unwrap_or_default()
}

fn refused(what: &str, reply: &Value) -> Failure {
    let kind = match status(reply) {
        "" => "unexpected_reply",
        s => s,
    };
    Failure::new(
        kind,
        format!("{what}: {}", reply["message"].as_str().unwrap_or_default()),
    )
}

impl Switchyard {
    pub fn new(
        maildev: String,
        password: String,
        run_id: String,
        accounts_file: Option<PathBuf>,
        signup_concurrency: usize,
    ) -> Self {
        Switchyard {
            maildev,
            password,
            run_id,
            accounts_file,
            signup_concurrency: signup_concurrency.max(1),
            accounts: Vec::new(),
            group_ids: Vec::new(),
            next_request: AtomicU64::new(1),
        }
    }

    /// Sends an action with a fresh `requestId` and returns the reply that
    /// echoes it, trying again (bounded) while the gateway says RATE_LIMITED
    /// or BUSY, after the `retryAfterMs` it names when it names one.
    pub async fn call(&self, ws: &mut Ws, action: Value) -> Result<Value, Failure> {
        for attempt in 0..RATE_LIMITED_TRIES {
            let request_id = format!("lg-{}", self.next_request.fetch_add(1, Ordering::Relaxed));
            let mut frame = action.clone();
            frame["requestId"] = json!(request_id);
            let reply = request(self, ws, Message::text(frame.to_string()), |text| {
                let value: Value = serde_json::from_str(text).ok()?;
                (value["requestId"] == request_id.as_str()).then_some(Ok(value))
            })
            .await?;
            if !matches!(status(&reply), "RATE_LIMITED" | "BUSY") {
                return Ok(reply);
            }
            let backoff = 100 * (attempt as u64 + 1).min(10);
            // Never sooner than a second: retrying the moment a token is due
            // races this connection's other set-up requests for it, and a
            // connection whose frames are mostly refused is disconnected as a
            // flood (gateway/src/rate_limit.rs).
            let wait = reply["retryAfterMs"]
                .as_u64()
                .unwrap_or(backoff)
                .max(MIN_SET_UP_RETRY_MS);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        Err(Failure::new(
            "RATE_LIMITED",
            "still rate limited after many tries",
        ))
    }

    /// Walks one new account through the real flow; records each step's
    /// latency when a recorder is given.
    pub async fn sign_up(
        &self,
        ws: &mut Ws,
        email: &str,
        codes: &Codes,
        timing: Option<(&Recorder, usize)>,
    ) -> Result<Account, Failure> {
        let record = |metric, since: Instant| {
            if let Some((recorder, shard)) = timing {
                recorder.record(metric, since.elapsed().as_micros() as u64, shard);
            }
        };
        let start = Instant::now();
        let step = Instant::now();
        let reply = self
            .call(ws, json!({"action": "REGISTER", "userRegData": {"email": email, "password": self.password}}))
            .await?;
        if status(&reply) != "USER_REGISTERED" {
            return Err(refused("REGISTER", &reply));
        }
        record(Metric::Register, step);
        let step = Instant::now();
        let code = codes.code_for(email, MAIL_TIMEOUT).await?;
        record(Metric::MailWait, step);
        let step = Instant::now();
        let reply = self
            .call(
                ws,
                json!({"action": "CONFIRMATION", "userRegData": {"email": email, "token": code}}),
            )
            .await?;
        if status(&reply) != "USER_CONFIRMED" {
            return Err(refused("CONFIRMATION", &reply));
        }
        record(Metric::Confirm, step);
        let step = Instant::now();
        let reply = self
            .call(ws, json!({"action": "LOGIN", "userLoginData": {"email": email, "password": self.password}}))
            .await?;
        if status(&reply) != "USER_LOGGED" {
            return Err(refused("LOGIN", &reply));
        }
        record(Metric::AccountLogin, step);
        record(Metric::SignUp, start);
        let flag = &reply["flag"];
        Ok(Account {
            email: email.to_owned(),
            password: self.password.clone(),
            token: flag["token"].as_str().unwrap_or_default().to_owned(),
            user_id: flag["userId"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// A fresh address for account `i` of this run.
    pub fn email(&self, i: usize) -> String {
        format!("lg-{}-{i}@example.com", self.run_id)
    }

    /// Signs up `count` new accounts over `signup_concurrency` connections.
    async fn sign_up_many(&self, count: usize, dialer: &Dialer) -> anyhow::Result<Vec<Account>> {
        let codes = Codes::start(&self.maildev);
        let workers = self.signup_concurrency.min(count).max(1);
        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let results = futures_util::stream::iter(0..workers)
            .map(|worker| {
                let codes = &codes;
                let done = done.clone();
                async move {
                    let mut ws = dialer.open(worker).await?;
                    let mut accounts = Vec::new();
                    for i in (worker..count).step_by(workers) {
                        accounts.push(self.sign_up(&mut ws, &self.email(i), codes, None).await?);
                        Counters::add(&done, 1);
                    }
                    Ok::<_, Failure>(accounts)
                }
            })
            .buffer_unordered(workers)
            .collect::<Vec<_>>()
            .await;
        let mut accounts = Vec::with_capacity(count);
        for result in results {
            accounts.extend(result.context("signing up the load generator's users")?);
        }
        eprintln!(
            "loadgen: signed up {} users in {:.1} s",
            accounts.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(accounts)
    }

    /// Accounts kept by an earlier run, if their sessions still work here.
    async fn reusable_accounts(&self, dialer: &Dialer) -> Vec<Account> {
        let Some(path) = &self.accounts_file else {
            return Vec::new();
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return Vec::new();
        };
        let accounts: Vec<Account> = serde_json::from_str(&text).unwrap_or_default();
        let Some(first) = accounts.first() else {
            return Vec::new();
        };
        let works = match dialer.open(0).await {
            Ok(mut ws) => self.fast_login(&mut ws, first).await.is_ok(),
            Err(_) => false,
        };
        if works {
            accounts
        } else {
            eprintln!(
                "loadgen: the users in {} do not work here; signing up new ones",
                path.display()
            );
            Vec::new()
        }
    }

    async fn fast_login(&self, ws: &mut Ws, account: &Account) -> Result<(), Failure> {
        let reply = self
            .call(ws, json!({"action": "FASTLOGIN", "userLoginData": {"email": account.email, "token": account.token}}))
            .await?;
        if status(&reply) == "USER_LOGGED" {
            Ok(())
        } else {
            Err(refused("FASTLOGIN", &reply))
        }
    }

    fn account(&self, user: usize) -> &Account {
        &self.accounts[user % self.accounts.len()]
    }

    /// Makes the users of `a` and `b` friends; friends already is fine.
    async fn befriend(&self, a: &mut Conn, b: &mut Conn) -> Result<(), Failure> {
        let a_id = self.account(a.user).user_id.clone();
        let b_id = self.account(b.user).user_id.clone();
        let reply = self
            .call(
                &mut a.ws,
                json!({"action": "FRIEND_REQUEST", "userId": b_id}),
            )
            .await?;
        match status(&reply) {
            "FRIEND_REQUEST_SENT" => {}
            // Friends from an earlier run, or b had asked first and this accepted.
            "CONFLICT" | "FRIEND_RESPONDED" => return Ok(()),
            _ => return Err(refused("FRIEND_REQUEST", &reply)),
        }
        let reply = self
            .call(
                &mut b.ws,
                json!({"action": "FRIEND_RESPOND", "userId": a_id, "accept": true}),
            )
            .await?;
        match status(&reply) {
            "FRIEND_RESPONDED" => Ok(()),
            _ => Err(refused("FRIEND_RESPOND", &reply)),
        }
    }

    /// Creates a group from `admin`'s connection and adds the other members.
    async fn create_group(
        &self,
        admin: &mut Conn,
        name: String,
        members: Vec<String>,
    ) -> Result<String, Failure> {
        let reply = self
            .call(
                &mut admin.ws,
                json!({"action": "CREATE_GROUP", "name": name}),
            )
            .await?;
        if status(&reply) != "GROUP_CREATED" {
            return Err(refused("CREATE_GROUP", &reply));
        }
        let group_id = reply["group"]["groupId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for user_id in members {
            let reply = self
                .call(
                    &mut admin.ws,
                    json!({"action": "ADD_MEMBER", "groupId": group_id, "userId": user_id}),
                )
                .await?;
            if status(&reply) != "MEMBER_ADDED" {
                return Err(refused("ADD_MEMBER", &reply));
            }
        }
        Ok(group_id)
    }
}

impl Protocol for Switchyard {
    async fn prepare(&mut self, users: usize, dialer: &Dialer) -> anyhow::Result<()> {
        let mut accounts = self.reusable_accounts(dialer).await;
        if accounts.len() < users {
            let missing = users - accounts.len();
            eprintln!(
                "loadgen: signing up {missing} users through REGISTER, mail and CONFIRMATION"
            );
            accounts.extend(self.sign_up_many(missing, dialer).await?);
            if let Some(path) = &self.accounts_file {
                std::fs::write(path, serde_json::to_string_pretty(&accounts)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        accounts.truncate(users);
        self.accounts = accounts;
        Ok(())
    }

    async fn login(&self, ws: &mut Ws, user: usize) -> Result<(), Failure> {
        self.fast_login(ws, self.account(user)).await
    }

    async fn wire(&mut self, conns: Vec<Conn>, topology: &Topology) -> anyhow::Result<Vec<Conn>> {
        let mut by_index: HashMap<usize, Conn> = conns.into_iter().map(|c| (c.index, c)).collect();

        let pairs: Vec<(Conn, Conn)> = topology
            .pairs
            .iter()
            .filter_map(|(a, b)| {
                let a = by_index.remove(a)?;
                match by_index.remove(b) {
                    Some(b) => Some((a, b)),
                    None => {
                        by_index.insert(a.index, a);
                        None
                    }
                }
            })
            .collect();
        let this = &*self;
        let befriended = futures_util::stream::iter(pairs)
            .map(|(mut a, mut b)| async move {
                let result = this.befriend(&mut a, &mut b).await;
                (a, b, result)
            })
            .buffer_unordered(WIRING_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        for (a, b, result) in befriended {
            result.context("making friends of the load generator's users")?;
            by_index.insert(a.index, a);
            by_index.insert(b.index, b);
        }

        let mut groups = Vec::new();
        for (r, members) in topology.rooms.iter().enumerate() {
            // A room none of whose connections opened gets no group and no messages.
            let Some(admin) = members.first().and_then(|m| by_index.remove(m)) else {
                continue;
            };
            let others: Vec<String> = members[1..]
                .iter()
                .filter_map(|m| by_index.get(m))
                .map(|c| this.account(c.user).user_id.clone())
                .collect();
            groups.push((r, admin, others));
        }
        let run_id = self.run_id.clone();
        let created = futures_util::stream::iter(groups)
            .map(|(r, mut admin, others)| {
                let name = format!("lg-{run_id}-{r}");
                async move {
                    let result = this.create_group(&mut admin, name, others).await;
                    (r, admin, result)
                }
            })
            .buffer_unordered(WIRING_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut group_ids = vec![String::new(); topology.rooms.len()];
        for (r, admin, result) in created {
            group_ids[r] = result.context("creating the load generator's groups")?;
            by_index.insert(admin.index, admin);
        }
        self.group_ids = group_ids;

        let mut conns: Vec<Conn> = by_index.into_values().collect();
        conns.sort_by_key(|c| c.index);
        Ok(conns)
    }

    fn message(&self, dest: Dest, stamp: &Stamp) -> Message {
        let to = match dest {
            Dest::User(user) => json!({"userId": self.account(user).user_id}),
            Dest::Room(room) => {
                json!({"groupId": self.group_ids.get(room).cloned().unwrap_or_default()})
            }
        };
        Message::text(
            json!({
                "action": "SEND_MESSAGE",
                "to": to,
                "text": stamp.marker(),
                // Unique per run and sender: a reused id would be taken for a resend.
                "clientMsgId": format!("{}-{}", self.run_id, stamp.id),
                // Ties the reply (MESSAGE_SENT, BUSY, TIMEOUT) to the message.
                "requestId": format!("{MESSAGE_REQUEST}{}", stamp.id),
            })
            .to_string(),
        )
    }

    fn classify(&self, text: &str) -> Other {
        #[derive(Deserialize)]
        struct Status<'a> {
            #[serde(rename = "rocketStatus", borrow, default)]
            rocket_status: Option<std::borrow::Cow<'a, str>>,
        }
        let Ok(frame) = serde_json::from_str::<Status<'_>>(text) else {
            return Other::Error("malformed_frame".into());
        };
        match frame.rocket_status {
            Some(status) if ERROR_CODES.contains(&status.as_ref()) => {
                Other::Error(status.into_owned())
            }
            _ => Other::Ignore,
        }
    }

    fn outcomes(&self, text: &str, mut found: impl FnMut(u64, Outcome)) -> usize {
        // Events carry no requestId: most frames are skipped without parsing.
        if !text.contains("\"requestId\"") {
            return 0;
        }
        #[derive(Deserialize)]
        struct Reply<'a> {
            #[serde(rename = "rocketStatus", borrow, default)]
            rocket_status: Option<std::borrow::Cow<'a, str>>,
            #[serde(rename = "requestId", borrow, default)]
            request_id: Option<std::borrow::Cow<'a, str>>,
        }
        let Ok(reply) = serde_json::from_str::<Reply<'_>>(text) else {
            return 0;
        };
        let Some(id) = reply
            .request_id
            .as_deref()
            .and_then(|r| r.strip_prefix(MESSAGE_REQUEST))
            .and_then(|id| id.parse::<u64>().ok())
        else {
            return 0;
        };
        let outcome = match reply.rocket_status.as_deref() {
            Some("MESSAGE_SENT") => Outcome::Acked,
            Some("BUSY") => Outcome::Busy,
            Some("TIMEOUT") => Outcome::Timeout,
            _ => Outcome::Refused,
        };
        found(id, outcome);
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protocol() -> Switchyard {
        Switchyard::new(
            "http://127.0.0.1:1".into(),
            "pw".into(),
            "run".into(),
            None,
            1,
        )
    }

    #[test]
    fn error_statuses_are_errors_and_others_are_not() {
        let p = protocol();
        assert_eq!(
            p.classify(r#"{"rocketStatus":"RATE_LIMITED","message":"x"}"#),
            Other::Error("RATE_LIMITED".into())
        );
        assert_eq!(
            p.classify(r#"{"rocketStatus":"MESSAGE_SENT","message":"x"}"#),
            Other::Ignore
        );
        assert_eq!(
            p.classify("not json"),
            Other::Error("malformed_frame".into())
        );
    }

    #[test]
    fn messages_carry_the_marker_and_a_unique_client_id() {
        let mut p = protocol();
        p.accounts.push(Account {
            email: "a@example.com".into(),
            password: "pw".into(),
            token: "t".into(),
            user_id: "u1".into(),
        });
        let stamp = Stamp {
            id: 9,
            from: 2,
            at_us: 100,
        };
        let Message::Text(text) = p.message(Dest::User(0), &stamp) else {
            panic!("a text frame");
        };
        let value: Value = serde_json::from_str(text.as_str()).expect("json");
        assert_eq!(value["action"], "SEND_MESSAGE");
        assert_eq!(value["to"]["userId"], "u1");
        assert_eq!(value["text"], stamp.marker());
        assert_eq!(value["clientMsgId"], "run-9");
        assert_eq!(value["requestId"], "m9");
    }

    #[test]
    fn replies_to_messages_are_matched_by_request_id() {
        let p = protocol();
        let mut seen = Vec::new();
        for frame in [
            r#"{"rocketStatus":"MESSAGE_SENT","requestId":"m4","seq":1}"#,
            r#"{"rocketStatus":"BUSY","requestId":"m5","retryAfterMs":1000}"#,
            r#"{"rocketStatus":"TIMEOUT","requestId":"m6"}"#,
            r#"{"rocketStatus":"RATE_LIMITED","requestId":"m7"}"#,
            r#"{"rocketStatus":"USER_LOGGED","requestId":"lg-8"}"#,
            r##"{"rocketStatus":"NEW_MESSAGE","text":"#LG1.2.3#"}"##,
        ] {
            p.outcomes(frame, |id, outcome| seen.push((id, outcome)));
        }
        assert_eq!(
            seen,
            [
                (4, Outcome::Acked),
                (5, Outcome::Busy),
                (6, Outcome::Timeout),
                (7, Outcome::Refused)
            ]
        );
    }
}
