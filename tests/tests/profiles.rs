//! A profile belongs to the account (auth-service); chat-service shows and
//! searches a copy of it. Whoever changes their nickname is answered only
//! once everyone finds the new one, and accounts from before the copy
//! existed are found too.

use std::time::Duration;

use mongodb::bson::doc;
use serde_json::json;
use switchyard_tests::chat::{ChatUser, EVENT_TIMEOUT, assert_refused, chat_stack, user_ids};
use switchyard_tests::{AUTH, USERS, assert_status};
use tokio::time::Instant;

const ANA: &str = "ana@example.com";
const BOB: &str = "bob@example.com";

/// The users `searcher` finds by nickname prefix, as (id, nickname).
async fn found_by_nickname(searcher: &mut ChatUser, prefix: &str) -> Vec<(String, String)> {
    let reply = searcher
        .client
        .chat("SEARCH_USERS", json!({"nickname": prefix}))
        .await;
    assert_status(&reply, "USERS_FOUND");
    reply["users"]
        .as_array()
        .expect("USERS_FOUND has users")
        .iter()
        .map(|u| {
            (
                u["userId"].as_str().unwrap_or_default().to_owned(),
                u["nickname"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_new_nickname_is_what_everyone_finds_once_its_owner_is_answered() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, ANA, "Anabel").await;
    let mut bob = ChatUser::sign_up(&stack, 1, BOB, "Bobby").await;
    let mut ana_tab = ana.connect_again(&stack, 1).await;
    assert_eq!(
        found_by_nickname(&mut bob, "ana").await,
        vec![(ana.user_id.clone(), "Anabel".to_owned())]
    );

    let reply = ana.client.update_profile("  Zelda ").await;
    assert_status(&reply, "PROFILE_UPDATED");
    assert_eq!(
        reply["profile"],
        json!({"userId": ana.user_id, "nickname": "Zelda"})
    );
    // Right after the answer, on the other gateway: the new name finds her,
    // the old one no longer does.
    assert_eq!(
        found_by_nickname(&mut bob, "zel").await,
        vec![(ana.user_id.clone(), "Zelda".to_owned())]
    );
    assert!(found_by_nickname(&mut bob, "ana").await.is_empty());
    let event = ana_tab.expect_event("PROFILE_UPDATED", EVENT_TIMEOUT).await;
    assert_eq!(
        event["profile"],
        json!({"userId": ana.user_id, "nickname": "Zelda"})
    );
    let stored = stack.stored_user(ANA).await.expect("Ana's account");
    let profile = stored.get_document("profile").expect("a profile");
    assert_eq!(profile.get_str("nickname"), Ok("Zelda"));

    // A bad nickname changes nothing anywhere.
    let reply = ana.client.update_profile("Z").await;
    assert_refused(&reply, "BAD_REQUEST");
    assert_eq!(
        found_by_nickname(&mut bob, "zel").await,
        vec![(ana.user_id.clone(), "Zelda".to_owned())]
    );

    // What auth-service tells chat-service is not a client's to send.
    let forged = json!({
        "userId": bob.user_id, "email": BOB, "nickname": "Forged",
        "profileUrl": "", "version": i64::MAX, "answerClient": true,
    });
    let reply = bob.client.chat("PROFILE_CHANGED", forged).await;
    assert_refused(&reply, "UNKNOWN_ACTION");
    assert!(found_by_nickname(&mut ana, "forg").await.is_empty());
}

#[tokio::test]
async fn accounts_from_before_the_copy_are_found_once_auth_service_starts() {
    let mut stack = chat_stack().await;
    let ana = ChatUser::sign_up(&stack, 0, ANA, "Anabel").await;
    let mut bob = ChatUser::sign_up(&stack, 1, BOB, "Bobby").await;

    // A deployment from before chat-service kept a copy: the account is in
    // `users` only, and auth-service never published the profiles.
    stack
        .mongo()
        .collection::<mongodb::bson::Document>("people")
        .delete_one(doc! {"_id": &ana.user_id})
        .await
        .expect("delete the copy");
    let mut redis = stack.redis().await;
    let _: () = redis::AsyncCommands::del(&mut redis, "switchyard:profiles:published")
        .await
        .expect("forget the published marker");
    assert!(found_by_nickname(&mut bob, "ana").await.is_empty());
    let by_email = bob.client.chat("SEARCH_USERS", json!({"email": ANA})).await;
    assert!(user_ids(&by_email["users"]).is_empty(), "{by_email}");
    assert_eq!(stack.stored_documents(USERS).await.len(), 2);

    stack.stop_service(AUTH, 0).await;
    stack.start_service(AUTH, 0).await;
    stack.wait_ready(AUTH, 0).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = found_by_nickname(&mut bob, "ana").await;
        if found == vec![(ana.user_id.clone(), "Anabel".to_owned())] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Anabel not found 10 s after auth-service started: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let by_email = bob.client.chat("SEARCH_USERS", json!({"email": ANA})).await;
    assert_eq!(user_ids(&by_email["users"]), vec![ana.user_id.clone()]);
}
