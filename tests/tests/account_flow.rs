//! The account flow as a user lives it, over real WebSockets through two
//! gateways: register, confirm with the code from the mail, log in, resume
//! the session on another connection, log out, and find the session closed
//! everywhere.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_tests::mail::MAIL_TIMEOUT;
use switchyard_tests::{Client, Stack, assert_status, without_request_id};

const ANA: &str = "ana@example.com";
const ANA_PASSWORD: &str = "Correct-Horse-Battery-9";

/// How long a pushed event may take to cross the bus to another gateway.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn an_account_goes_from_registration_to_logout_across_two_gateways() {
    let stack = Stack::builder().gateways(2).start().await;

    // Register through gateway 0.
    let mut first_tab = Client::connect(&stack.gateway_url(0)).await;
    let reply = first_tab.register(ANA, ANA_PASSWORD).await;
    assert_status(&reply, "USER_REGISTERED");
    assert_has_message(&reply);

    // One mail arrives, with the code in it.
    let mails = stack.maildev().wait_for_mail(ANA, 1, MAIL_TIMEOUT).await;
    assert_eq!(mails.len(), 1, "one confirmation mail: {mails:?}");
    let code = mails[0]
        .confirmation_code()
        .unwrap_or_else(|| panic!("the mail has no code: {}", mails[0].text()))
        .to_owned();

    // Confirm through gateway 1: the reply is exactly what the old clients expect.
    let mut second_tab = Client::connect(&stack.gateway_url(1)).await;
    let reply = second_tab.confirm(ANA, &code).await;
    assert_eq!(
        without_request_id(&reply),
        json!({"message": "Confirmation done.", "rocketStatus": "USER_CONFIRMED"})
    );

    // Log in with the password.
    let login = second_tab.login(ANA, ANA_PASSWORD).await;
    assert_logged_in_as_new_account(&login, ANA);
    let token = login["flag"]["token"]
        .as_str()
        .expect("checked above")
        .to_owned();

    // Resume that session with the token on a new connection, through the
    // other gateway: same profile, same token.
    let mut resumed = Client::connect(&stack.gateway_url(0)).await;
    let reply = resumed.fastlogin(ANA, &token).await;
    assert_logged_in_as_new_account(&reply, ANA);
    assert_eq!(
        reply["flag"], login["flag"],
        "FASTLOGIN answers the profile and token LOGIN gave"
    );

    // Log out.
    let reply = resumed.logout(ANA, &token).await;
    assert_eq!(
        without_request_id(&reply),
        json!({"message": "Your account session is closed.", "rocketStatus": "USER_LOGOUT"})
    );

    // The token opens nothing any more, on either gateway.
    let mut later = Client::connect(&stack.gateway_url(1)).await;
    let reply = later.fastlogin(ANA, &token).await;
    assert_status(&reply, "NOT_LOGGED");
    assert_has_message(&reply);
    assert!(
        reply.get("flag").is_none(),
        "a refusal carries no profile: {reply}"
    );
    assert_status(&first_tab.fastlogin(ANA, &token).await, "NOT_LOGGED");
    assert_status(&later.logout(ANA, &token).await, "USER_LOGOUT_ERROR");

    // The password still opens a new, different session.
    let again = later.login(ANA, ANA_PASSWORD).await;
    assert_logged_in_as_new_account(&again, ANA);
    assert_ne!(again["flag"]["token"], login["flag"]["token"]);
    assert_eq!(again["flag"]["userId"], login["flag"]["userId"]);
}

#[tokio::test]
async fn logout_closes_the_session_on_every_connection_using_it_and_no_other() {
    // chat-service runs so that a logged-in connection's chat action gets a
    // real answer, next to the gateway's UNAUTHORIZED for an anonymous one.
    let stack = Stack::builder().gateways(2).chat(true).start().await;
    let mut laptop = Client::connect(&stack.gateway_url(0)).await;
    let session = switchyard_tests::signed_up_user(&stack, &mut laptop, ANA).await;

    // A second tab resumes the laptop's session through the other gateway; a
    // phone logs in with the password, which opens a session of its own.
    let mut tab = Client::connect(&stack.gateway_url(1)).await;
    assert_status(&tab.fastlogin(ANA, &session.token).await, "USER_LOGGED");
    let mut phone = Client::connect(&stack.gateway_url(1)).await;
    let phone_login = phone.login(ANA, &session.password).await;
    assert_status(&phone_login, "USER_LOGGED");
    let phone_token = phone_login["flag"]["token"]
        .as_str()
        .expect("USER_LOGGED carries a token")
        .to_owned();
    assert_ne!(phone_token, session.token);

    // Logged in, the tab can use the chat.
    assert_can_chat(&mut tab).await;

    // The laptop logs its session out.
    assert_status(&laptop.logout(ANA, &session.token).await, "USER_LOGOUT");

    // The tab on the other gateway is told, and is anonymous from then on.
    let pushed = tab.expect_event("SESSION_CLOSED", PUSH_TIMEOUT).await;
    assert_has_message(&pushed);
    assert!(
        pushed.get("requestId").is_none(),
        "SESSION_CLOSED is pushed, not a reply: {pushed}"
    );
    assert_status(&tab.request(list_friends()).await, "UNAUTHORIZED");
    // So is the laptop, which logged out itself.
    assert_status(&laptop.request(list_friends()).await, "UNAUTHORIZED");

    // The phone's own session is untouched: not told, still logged in.
    assert_eq!(
        phone.next_event(Duration::from_secs(1)).await,
        None,
        "the phone's session was not closed, so nothing is pushed to it"
    );
    assert_can_chat(&mut phone).await;
    let mut elsewhere = Client::connect(&stack.gateway_url(0)).await;
    assert_status(&elsewhere.fastlogin(ANA, &phone_token).await, "USER_LOGGED");
}

/// Checks a `USER_LOGGED` reply field by field against the contract's
/// defaults for a new account.
#[track_caller]
fn assert_logged_in_as_new_account(reply: &Value, email: &str) {
    assert_status(reply, "USER_LOGGED");
    assert_eq!(reply["message"], "You logged.", "{reply}");
    let flag = &reply["flag"];
    assert_eq!(flag["email"], email, "{flag}");
    let nickname = flag["nickname"].as_str().unwrap_or_default();
    assert!(
        nickname.starts_with("no-nick-name"),
        "a new account has the placeholder nickname: {flag}"
    );
    assert_eq!(flag["confirmed"], true, "{flag}");
    assert_eq!(flag["online"], true, "{flag}");
    assert_eq!(flag["points"], 1000, "{flag}");
    assert_eq!(flag["rank"], "junior", "{flag}");
    assert_eq!(flag["permission"], "basic", "{flag}");
    assert_eq!(flag["age"], "any", "{flag}");
    assert_eq!(flag["country"], "any", "{flag}");
    assert_eq!(flag["ban"], false, "{flag}");
    assert_eq!(flag["profileUrl"], "/imgs/default", "{flag}");
    let token = flag["token"].as_str().unwrap_or_default();
    assert!(
        token.len() >= 43,
        "the session token carries at least 256 bits: {flag}"
    );
    let user_id = flag["userId"].as_str().unwrap_or_default();
    assert!(!user_id.is_empty(), "the profile names its user: {flag}");
}

#[track_caller]
fn assert_has_message(frame: &Value) {
    let message = frame["message"].as_str().unwrap_or_default();
    assert!(
        !message.trim().is_empty(),
        "every frame has a sentence for a person in `message`: {frame}"
    );
}

fn list_friends() -> Value {
    json!({"action": "LIST_FRIENDS"})
}

/// A logged-in connection lists its friends (none yet).
async fn assert_can_chat(client: &mut Client) {
    let reply = client.request(list_friends()).await;
    assert_status(&reply, "FRIENDS");
    assert_eq!(reply["friends"], json!([]), "{reply}");
}
