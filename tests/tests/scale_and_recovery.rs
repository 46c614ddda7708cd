//! Several auth-service replicas share the work, each action is done once,
//! and a replica that crashes mid-burst loses nothing: a survivor finishes
//! what it left.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use switchyard_tests::mail::Mail;
use switchyard_tests::{
    AUTH, Client, DEFAULT_PASSWORD, GATEWAY, Stack, USERS, register_request, status,
};

/// Password hashing makes a burst take seconds; nothing here should take
/// anywhere near these.
const BURST_TIMEOUT: Duration = Duration::from_secs(90);
const MAIL_SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Mails are counted once none has arrived for this long, so that a
/// duplicate on its way is counted too.
const MAIL_QUIET: Duration = Duration::from_secs(2);

/// What every action-handling replica logs once per action it answers.
const HANDLED: &str = "action handled";
/// What a replica logs for each entry it takes over from a silent one.
const CLAIMED: &str = "claimed an abandoned entry";

#[tokio::test]
async fn two_replicas_share_a_burst_of_registrations_and_do_each_once() {
    const CONNECTIONS: usize = 20;
    const PER_CONNECTION: usize = 10;
    const TOTAL: usize = CONNECTIONS * PER_CONNECTION;
    let stack = Stack::builder()
        .gateways(2)
        .auth_replicas(2)
        // The burst queues up behind the hashing; a request that waits its
        // turn must not be answered TIMEOUT.
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__ACTION_TIMEOUT_MS", "60000")
        .start()
        .await;

    let replies = register_concurrently(&stack, CONNECTIONS, PER_CONNECTION).await;

    let not_registered: Vec<&(String, Value)> = replies
        .iter()
        .filter(|(_, reply)| status(reply) != "USER_REGISTERED")
        .collect();
    assert!(
        not_registered.is_empty(),
        "{} of {TOTAL} registrations were not USER_REGISTERED: {not_registered:?}",
        not_registered.len()
    );
    assert_one_account_each(&stack, &replies).await;
    assert_one_mail_each(&stack, &replies).await;

    // Both replicas took part, and between them answered each action once.
    let handled = [
        stack.log_count(AUTH, 0, HANDLED),
        stack.log_count(AUTH, 1, HANDLED),
    ];
    assert!(
        handled.iter().all(|&n| n > 0),
        "both replicas handle actions: {handled:?}"
    );
    let claimed = [
        stack.log_count(AUTH, 0, CLAIMED),
        stack.log_count(AUTH, 1, CLAIMED),
    ];
    assert_eq!(
        handled[0] + handled[1],
        TOTAL,
        "each action handled exactly once; handled per replica: {handled:?}, \
         taken over from the other replica: {claimed:?}"
    );
}

#[tokio::test]
async fn a_replica_killed_mid_burst_loses_no_registration() {
    const CONNECTIONS: usize = 20;
    const PER_CONNECTION: usize = 3;
    let mut stack = Stack::builder()
        .gateways(2)
        .auth_replicas(2)
        // Long enough to outlast the takeover (1.5 s idle, see the harness's
        // SWITCHYARD__BUS__CLAIM_IDLE_MS), so each client hears the outcome.
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__ACTION_TIMEOUT_MS", "30000")
        .start()
        .await;

    let clients = connect_all(&stack, CONNECTIONS).await;
    let burst = tokio::spawn(send_registrations(clients, PER_CONNECTION));

    // As soon as replica 0 has answered one action it holds others it has
    // read but not finished: kill it then, as a crash would.
    stack.wait_for_log(AUTH, 0, HANDLED, 1, BURST_TIMEOUT).await;
    stack.kill_service(AUTH, 0).await;
    let handled_before_the_crash = stack.log_count(AUTH, 0, HANDLED);

    let replies = burst.await.expect("the burst's task panicked");
    // A reply may in principle have been a TIMEOUT; the stored accounts
    // below show that such a registration was done all the same.
    let unexpected: Vec<&(String, Value)> = replies
        .iter()
        .filter(|(_, reply)| !matches!(status(reply), "USER_REGISTERED" | "TIMEOUT"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "a registration redone after the crash must still answer USER_REGISTERED: {unexpected:?}"
    );
    assert_one_account_each(&stack, &replies).await;
    assert_one_mail_each(&stack, &replies).await;

    assert!(
        handled_before_the_crash < replies.len(),
        "replica 0 was killed after handling everything; nothing was left to take over"
    );
    assert!(
        stack.log_count(AUTH, 1, CLAIMED) > 0,
        "the surviving replica took over the killed one's entries; its log:\n{}",
        stack.log_tail(AUTH, 1, 40)
    );
}

/// Registers `connections * per_connection` new addresses: `connections`
/// connections spread over the gateways, each sending its registrations all
/// at once, all connections at the same time. Returns each address with
/// its reply.
async fn register_concurrently(
    stack: &Stack,
    connections: usize,
    per_connection: usize,
) -> Vec<(String, Value)> {
    let clients = connect_all(stack, connections).await;
    send_registrations(clients, per_connection).await
}

async fn connect_all(stack: &Stack, connections: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(connections);
    for i in 0..connections {
        clients.push(Client::connect(&stack.gateway_url(i % stack.gateway_count())).await);
    }
    clients
}

async fn send_registrations(clients: Vec<Client>, per_connection: usize) -> Vec<(String, Value)> {
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(c, mut client)| {
            tokio::spawn(async move {
                let emails: Vec<String> = (0..per_connection)
                    .map(|i| format!("user-{c}-{i}@example.com"))
                    .collect();
                let requests = emails
                    .iter()
                    .map(|email| register_request(email, DEFAULT_PASSWORD))
                    .collect();
                let replies = client.request_all(requests, BURST_TIMEOUT).await;
                emails.into_iter().zip(replies).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(
            task.await
                .expect("a registering connection's task panicked"),
        );
    }
    all
}

/// Exactly the registered addresses have an account, one each.
async fn assert_one_account_each(stack: &Stack, replies: &[(String, Value)]) {
    let mut per_address: BTreeMap<String, usize> = BTreeMap::new();
    for user in stack.stored_documents(USERS).await {
        let email = user.get_str("email").unwrap_or_default().to_owned();
        *per_address.entry(email).or_default() += 1;
    }
    assert_each_once(replies, &per_address, "accounts");
    assert_eq!(
        per_address.values().sum::<usize>(),
        replies.len(),
        "no account for anything but the registrations"
    );
}

/// Exactly one confirmation mail reached each registered address, and no
/// other mail was sent.
async fn assert_one_mail_each(stack: &Stack, replies: &[(String, Value)]) {
    let mails = stack
        .maildev()
        .settled_mails(replies.len(), MAIL_QUIET, MAIL_SETTLE_TIMEOUT)
        .await;
    let mut per_address: BTreeMap<String, usize> = BTreeMap::new();
    for mail in &mails {
        *per_address.entry(recipient(mail)).or_default() += 1;
    }
    assert_each_once(replies, &per_address, "mails");
    assert_eq!(mails.len(), replies.len(), "no mail to anyone else");
}

/// Every registered address occurs exactly once in `per_address`.
#[track_caller]
fn assert_each_once(
    replies: &[(String, Value)],
    per_address: &BTreeMap<String, usize>,
    what: &str,
) {
    let wrong: Vec<(&String, usize)> = replies
        .iter()
        .map(|(email, _)| (email, per_address.get(email).copied().unwrap_or(0)))
        .filter(|&(_, n)| n != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "addresses without exactly one of their {what} (address, count): {wrong:?}"
    );
}

fn recipient(mail: &Mail) -> String {
    mail.to
        .first()
        .or(mail.envelope.to.first())
        .map(|a| a.address.to_lowercase())
        .unwrap_or_default()
}
