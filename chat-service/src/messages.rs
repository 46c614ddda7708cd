//! SEND_MESSAGE, and a message as clients see it. Reading conversations is
//! in [`crate::reading`].
//!
//! A message is written to the database before MESSAGE_SENT is answered. Its
//! sequence number is the conversation's last plus one, claimed by inserting
//! under a unique (conversation, seq) index, so numbers have no gaps even with
//! several replicas; its primary key is (sender, clientMsgId), so a resent
//! message returns the first one instead of creating another. Its files are
//! attached under that same key before it is stored ([`crate::attachments`]),
//! so a handling that dies in between is finished by the next one.

use shared_proto::action::chat::{Recipient, SendMessage};
use shared_proto::action::{GroupId, MessageId, UserId};
use shared_proto::bus::actions::{ActionError, Outcome};
use shared_proto::client::ServerFrame;
use shared_proto::now_ms;
use shared_proto::status::ErrorCode;
use shared_proto::status::ReplyStatus;

use crate::attachments::{self, AttachRules, Reader};
use crate::conversations::{direct_conversation_id, group_conversation, group_conversation_id};
use crate::input::{bad_request, client_msg_id, id, message_text};
use crate::known::Change;
use crate::message_log::Written;
use crate::replies;
use crate::service::{Call, ChatService, unavailable};
use crate::store::{Conversation, Message};
use crate::views::{ConversationRef, MessageView};

/// Where a message goes, once the sender's right to send it is checked.
enum Destination {
    User { user_id: UserId, temporary: bool },
    Group { group_id: GroupId },
}

pub async fn send(
    service: &ChatService,
    call: &Call<'_>,
    input: SendMessage,
) -> Result<Outcome, ActionError> {
    match store_and_push(service, call, input).await {
        // Handled again after a crash, the action may have stored its
        // message and died before pushing it; answering "unavailable" would
        // end it there, and no resend would push the message either (see
        // `owes_events`). It is tried again instead, up to the dead letters.
        Err(ActionError::Unavailable(err)) if call.delivery.reclaimed => {
            Err(ActionError::Retry(err))
        }
        other => other,
    }
}

async fn store_and_push(
    service: &ChatService,
    call: &Call<'_>,
    input: SendMessage,
) -> Result<Outcome, ActionError> {
    let text = if input.attachments.is_empty() || !input.text.trim().is_empty() {
        message_text(&input.text, service.settings.max_text_chars)?
    } else {
        String::new()
    };
    let client_msg_id = client_msg_id(&input.client_msg_id)?;
    let me = &call.me.user_id;

    let destination = match authorize_send(service, me, &input.to).await {
        Ok(destination) => destination,
        Err(refusal @ ActionError::Refused(_)) => {
            // A resend of a message stored before the sender lost the right
            // to send it is still answered as the first time.
            let stored = service
                .store
                .message_by_client_id(me, client_msg_id)
                .await
                .map_err(unavailable)?;
            return match stored {
                Some(existing) => resent(service, call, existing).await,
                None => Err(refusal),
            };
        }
        Err(err) => return Err(err),
    };
    let conversation = open_conversation(service, me, &destination).await?;
    let key = Message::key(me, client_msg_id);
    let attachments = if input.attachments.is_empty() {
        Vec::new()
    } else {
        let rules = AttachRules {
            to_group: matches!(destination, Destination::Group { .. }),
            files_in_groups: service.files.files_in_groups,
        };
        let files = &service.store.files;
        attachments::attach(files, me, &input.attachments, &rules, &key, &conversation).await?
    };

    // Resends are found by the insert itself (the message's key is taken)
    // rather than by a lookup first: the messages collection only grows,
    // and the common case should not read it.
    let message = Message {
        key,
        id: MessageId::new(uuid::Uuid::now_v7().to_string()),
        conversation_id: conversation.id.clone(),
        // Numbered by the log, after the conversation's last.
        seq: 0,
        sender_id: me.clone(),
        client_msg_id: client_msg_id.to_owned(),
        text,
        attachments,
        sent_at_ms: now_ms(),
        stored_by_action: Some(call.request.action_id.clone()),
    };
    let message = match service
        .messages
        .write(&call.delivery.entry_id, message, conversation.last_seq)
        .await
    {
        Written::Stored(message) => message,
        Written::StoredUnfinished(_, err) => {
            // Stored: from here on a failure means "finish later" (the entry
            // is handled again and takes the resend path).
            return Err(ActionError::Retry(err.into()));
        }
        Written::Duplicate(existing) => {
            // A resend, or this very action handled again after its first
            // handling stored the message. Files this resend named that the
            // stored message does not carry are let go again.
            if !input.attachments.is_empty() {
                let kept: Vec<String> = existing.attachments.iter().map(|a| a.id.clone()).collect();
                service
                    .store
                    .files
                    .detach_except(&existing.key, &kept)
                    .await
                    .map_err(unavailable)?;
            }
            return resent(service, call, *existing).await;
        }
        Written::Contended => {
            // The files wait for the same message to be sent again.
            service
                .store
                .files
                .detach(&Message::key(me, client_msg_id))
                .await
                .map_err(unavailable)?;
            return Err(ActionError::refused(
                ErrorCode::Conflict,
                "The conversation is too busy right now; send again with the same clientMsgId.",
            ));
        }
        Written::Failed(err) => return Err(ActionError::Unavailable(err)),
        // Answering "unavailable" would end the action, and if the message
        // was stored after all, no resend would push it (see
        // `owes_events`): the action is handled again instead, and then
        // finds out.
        Written::Uncertain(err) => return Err(ActionError::Retry(err)),
    };
    Ok(sent_outcome(
        service,
        call,
        &message,
        Some(&conversation),
        true,
    ))
}

/// The answer to a message that is stored already: the first answer again.
/// The action that stored it, handled again after its first handling died
/// (`reclaimed`), may also have to finish storing it and push it, which the
/// first did not; see [`Message::stored_by_action`].
async fn resent(
    service: &ChatService,
    call: &Call<'_>,
    existing: Message,
) -> Result<Outcome, ActionError> {
    let owes_events = owes_events(call.delivery.reclaimed, &call.request.action_id, &existing);
    if owes_events {
        service
            .messages
            .finish_stored(&call.delivery.entry_id, existing.clone())
            .await
            .map_err(ActionError::Retry)?;
    }
    let conversation = service
        .store
        .conversation(&existing.conversation_id)
        .await
        .map_err(unavailable)?;
    Ok(sent_outcome(
        service,
        call,
        &existing,
        conversation.as_ref(),
        owes_events,
    ))
}

/// Whether this handling must push a message it found stored: only the
/// action that stored it, handled again after dying, might not have.
fn owes_events(reclaimed: bool, action_id: &str, existing: &Message) -> bool {
    reclaimed
        && existing
            .stored_by_action
            .as_ref()
            .is_none_or(|stored_by| stored_by == action_id)
}

/// The conversation a message goes to, created on its first message, with
/// its current last sequence number.
async fn open_conversation(
    service: &ChatService,
    me: &UserId,
    destination: &Destination,
) -> Result<Conversation, ActionError> {
    let (id, temporary) = match destination {
        Destination::User { user_id, temporary } => {
            (direct_conversation_id(me, user_id), *temporary)
        }
        Destination::Group { group_id } => (group_conversation_id(group_id), false),
    };
    let store = &service.store;
    let mut conversation = service
        .known
        .conversation(store, &id)
        .await
        .map_err(unavailable)?;
    if conversation.is_none() {
        let fresh = match destination {
            Destination::User { user_id, temporary } => {
                let mut participants = vec![me.clone(), user_id.clone()];
                participants.sort();
                Conversation {
                    id: id.clone(),
                    kind: "direct".into(),
                    participants,
                    group_id: None,
                    temporary: *temporary,
                    last_seq: 0,
                    last_message: None,
                    updated_at_ms: now_ms(),
                }
            }
            Destination::Group { group_id } => group_conversation(group_id),
        };
        // Another replica may create it at the same moment: read back
        // whichever document won.
        store
            .ensure_conversation(&fresh)
            .await
            .map_err(unavailable)?;
        conversation = service
            .known
            .conversation(store, &id)
            .await
            .map_err(unavailable)?;
    }
    let mut conversation = conversation
        .ok_or_else(|| ActionError::Unavailable(anyhow::anyhow!("conversation {id} vanished")))?;
    // Friends who fell out but share a group (or the other way round): the
    // conversation follows what the two users are to each other now.
    if conversation.kind == "direct" && conversation.temporary != temporary {
        store
            .set_temporary(&id, temporary)
            .await
            .map_err(unavailable)?;
        service
            .known
            .changed(Change::Conversation {
                conversation_id: id.clone(),
            })
            .await;
        conversation.temporary = temporary;
    }
    Ok(conversation)
}

/// Checks that the sender may write to the recipient, and how.
async fn authorize_send(
    service: &ChatService,
    me: &UserId,
    to: &Recipient,
) -> Result<Destination, ActionError> {
    match (&to.user_id, &to.group_id) {
        (Some(user_id), None) => {
            let user_id = id("to.userId", user_id)?;
            if user_id == me {
                return Err(bad_request("You cannot message yourself."));
            }
            // Friends exist (the usual case, settled in one read); anyone
            // else is looked up before the slower shared-group check.
            if service
                .known
                .are_friends(&service.store, me, user_id)
                .await
                .map_err(unavailable)?
            {
                return Ok(Destination::User {
                    user_id: user_id.clone(),
                    temporary: false,
                });
            }
            if service
                .store
                .user(user_id)
                .await
                .map_err(unavailable)?
                .is_none()
            {
                return Err(ActionError::refused(
                    ErrorCode::NotFound,
                    "No user with this id.",
                ));
            }
            if service
                .known
                .share_a_group(&service.store, me, user_id)
                .await
                .map_err(unavailable)?
            {
                return Ok(Destination::User {
                    user_id: user_id.clone(),
                    temporary: true,
                });
            }
            Err(ActionError::refused(
                ErrorCode::Forbidden,
                "You can message only your friends, or members of a group you are in.",
            ))
        }
        (None, Some(group_id)) => {
            let group_id = id("to.groupId", group_id)?;
            let group = service
                .known
                .group(&service.store, group_id)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| {
                    ActionError::refused(ErrorCode::NotFound, "No group with this id.")
                })?;
            if !group.members.contains(me) {
                return Err(ActionError::refused(
                    ErrorCode::Forbidden,
                    "Only members can write to this group.",
                ));
            }
            Ok(Destination::Group {
                group_id: group_id.clone(),
            })
        }
        _ => Err(bad_request(
            "\"to\" must hold either \"userId\" or \"groupId\".",
        )),
    }
}

/// MESSAGE_SENT for the sender, and NEW_MESSAGE for everyone else concerned
/// (when `push` is set: the first handling, or a redelivery that may have
/// died before pushing).
fn sent_outcome(
    service: &ChatService,
    call: &Call<'_>,
    message: &Message,
    conversation: Option<&Conversation>,
    push: bool,
) -> Outcome {
    let temporary = conversation.is_some_and(|c| c.temporary);
    let reply = ServerFrame::new(ReplyStatus::MessageSent, "Message sent.").with_fields(
        replies::MessageSent {
            message_id: &message.id,
            conversation_id: &message.conversation_id,
            seq: message.seq,
            client_msg_id: &message.client_msg_id,
            sent_at: message.sent_at_ms,
            temporary,
            attachments: attachments::views(
                &message.attachments,
                &service.signer,
                Reader::User(&call.me.user_id),
            ),
        },
    );
    let mut outcome = Outcome::reply(reply);
    let Some(conversation) = conversation.filter(|_| push) else {
        return outcome;
    };
    // One event reaches every member of a group, so its URLs are signed
    // for the conversation; each user of a direct conversation gets their own.
    let event = |reader: Reader<'_>| {
        ServerFrame::new(ReplyStatus::NewMessage, "New message.").with_fields(replies::NewMessage {
            message: MessageView::of(message, &service.signer, reader),
            conversation: ConversationRef {
                conversation_id: &conversation.id,
                kind: &conversation.kind,
                group_id: conversation.group_id.as_ref(),
                temporary,
            },
        })
    };
    let origin = Some(&call.request.origin);
    if let Some(group_id) = &conversation.group_id {
        let event = event(Reader::Conversation(&conversation.id));
        outcome = outcome.with_event(service.events.to_group(group_id, event, origin));
    } else {
        for participant in &conversation.participants {
            outcome = outcome.with_event(service.events.to_user_except(
                participant,
                event(Reader::User(participant)),
                origin,
            ));
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANA: &str = "0192f4c1-7a2e-7c3d-8e4f-5a6b7c8d9e01";
    const BEN: &str = "0192f4c1-9b10-7d22-a1b3-c4d5e6f70812";
    const CAL: &str = "0192f4c2-0c5d-7abc-9def-0123456789ab";

    fn user(id: &str) -> UserId {
        UserId::new(id)
    }

    #[test]
    fn a_direct_conversation_is_the_same_whoever_writes_first() {
        assert_eq!(
            direct_conversation_id(&user(ANA), &user(BEN)),
            direct_conversation_id(&user(BEN), &user(ANA))
        );
        // The shape the protocol document shows: `d:` and the two ids sorted.
        assert_eq!(
            direct_conversation_id(&user(BEN), &user(ANA)).as_str(),
            format!("d:{ANA}|{BEN}")
        );
    }

    #[test]
    fn each_pair_of_users_has_its_own_direct_conversation() {
        let ids = [
            direct_conversation_id(&user(ANA), &user(BEN)),
            direct_conversation_id(&user(ANA), &user(CAL)),
            direct_conversation_id(&user(BEN), &user(CAL)),
            group_conversation_id(&GroupId::new(ANA)),
        ];
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn conversation_ids_are_valid_ids_a_client_can_send_back() {
        let direct = direct_conversation_id(&user(ANA), &user(BEN));
        assert!(
            crate::input::id("conversationId", &direct).is_ok(),
            "{direct}"
        );
        let group = group_conversation_id(&GroupId::new(CAL));
        assert_eq!(group.as_str(), format!("g:{CAL}"));
        assert!(
            crate::input::id("conversationId", &group).is_ok(),
            "{group}"
        );
    }

    #[test]
    fn a_groups_conversation_exists_from_the_start_and_is_never_temporary() {
        let conversation = group_conversation(&GroupId::new(CAL));
        assert_eq!(conversation.id, group_conversation_id(&GroupId::new(CAL)));
        assert_eq!(conversation.kind, "group");
        assert_eq!(
            conversation.group_id.as_ref().map(GroupId::as_str),
            Some(CAL)
        );
        assert!(!conversation.temporary);
        assert!(conversation.participants.is_empty());
        assert_eq!(conversation.last_seq, 0);
        assert_eq!(conversation.last_message, None);
    }

    fn message(stored_by_action: Option<&str>) -> Message {
        Message {
            key: Message::key(&user(ANA), "c-1"),
            id: MessageId::new("m-1"),
            conversation_id: direct_conversation_id(&user(ANA), &user(BEN)),
            seq: 3,
            sender_id: user(ANA),
            client_msg_id: "c-1".into(),
            text: "<b>hi</b>".into(),
            attachments: Vec::new(),
            sent_at_ms: 1_730_698_940_842,
            stored_by_action: stored_by_action.map(str::to_owned),
        }
    }

    #[test]
    fn only_the_action_that_stored_a_message_pushes_it_when_handled_again() {
        let stored_by_a = message(Some("action-a"));
        // The storing action, reclaimed after its handler died: it may not
        // have pushed the message yet.
        assert!(owes_events(true, "action-a", &stored_by_a));
        // A resend, whether handled first or reclaimed: the storing action
        // pushes (or pushed) it.
        assert!(!owes_events(true, "action-b", &stored_by_a));
        assert!(!owes_events(false, "action-b", &stored_by_a));
        // The storing action handled again without a crash never gets here
        // unreclaimed; a message from before the field: pushed on reclaim.
        assert!(owes_events(true, "action-b", &message(None)));
        assert!(!owes_events(false, "action-b", &message(None)));
    }

    #[test]
    fn a_message_as_clients_see_it_has_empty_attachments_and_no_storage_key() {
        let message = message(None);
        assert_eq!(
            serde_json::to_value(MessageView::of(
                &message,
                &crate::files::signing::UrlSigner::new(b"k", std::time::Duration::from_secs(60)),
                Reader::User(&user(BEN)),
            ))
            .expect("json"),
            serde_json::json!({
                "messageId": "m-1",
                "conversationId": format!("d:{ANA}|{BEN}"),
                "seq": 3,
                "senderId": ANA,
                "clientMsgId": "c-1",
                "text": "<b>hi</b>",
                "attachments": [],
                "sentAt": 1_730_698_940_842_i64,
            })
        );
    }

    #[test]
    fn a_resend_finds_its_message_by_sender_and_client_msg_id_only() {
        assert_eq!(
            Message::key(&user(ANA), "c-1"),
            Message::key(&user(ANA), "c-1")
        );
        assert_ne!(
            Message::key(&user(ANA), "c-1"),
            Message::key(&user(BEN), "c-1")
        );
        assert_ne!(
            Message::key(&user(ANA), "c-1"),
            Message::key(&user(ANA), "c-2")
        );
    }
}
