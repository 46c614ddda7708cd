//! FRIEND_REQUEST, FRIEND_RESPOND, FRIEND_REMOVE and LIST_FRIENDS.
//!
//! One document per pair of users holds the request and, once accepted, the
//! friendship; every change is a single conditional write.

use crate::known::Change;
use mongodb::bson::doc;
use shared_proto::bus::actions::{ActionError, Outcome};
use shared_proto::client::ServerFrame;
use shared_proto::now_ms;
use shared_proto::status::ErrorCode;
use shared_proto::status::ReplyStatus;

use shared_proto::action::UserId;
use shared_proto::action::chat::{FriendRespond, UserTarget};

use crate::input::{bad_request, id};
use crate::replies::{FriendNotice, FriendRef, FriendResponded, Friends};
use crate::service::{Call, ChatService, unavailable};
use crate::store::{Friendship, UserCard, is_duplicate_key};
use crate::views::UserView;

pub async fn request(
    service: &ChatService,
    call: &Call<'_>,
    input: UserTarget,
) -> Result<Outcome, ActionError> {
    let other = target(service, call, &input.user_id).await?;
    let me = &call.me.user_id;
    let existing = service
        .store
        .friendship(me, &other.id)
        .await
        .map_err(unavailable)?;
    match standing(existing.as_ref(), me) {
        Standing::Friends => {
            return Err(ActionError::refused(
                ErrorCode::Conflict,
                "You are friends already.",
            ));
        }
        Standing::Asked => return Ok(request_sent(&other)),
        // They asked first: asking back is accepting.
        Standing::AskedBy => return accept(service, call, &other).await,
        Standing::Strangers => {}
    }
    let friendship = Friendship {
        id: Friendship::pair_id(me, &other.id),
        users: vec![me.clone(), other.id.clone()],
        accepted: false,
        requested_by: me.clone(),
        requested_at_ms: now_ms(),
        since_ms: None,
    };
    match service.store.friendships.insert_one(&friendship).await {
        Ok(_) => {}
        Err(err) if is_duplicate_key(&err) => {
            // Both asked at the same moment, or this action was delivered again.
            let now = service
                .store
                .friendship(me, &other.id)
                .await
                .map_err(unavailable)?;
            return match now {
                Some(f) if f.requested_by == *me && !f.accepted => Ok(request_sent(&other)),
                _ => accept(service, call, &other).await,
            };
        }
        Err(err) => return Err(unavailable(err.into())),
    }
    let me_card = service.store.user(me).await.map_err(unavailable)?;
    let from = UserView::of_or_id(me_card.as_ref(), me);
    Ok(request_sent(&other).with_event(
        service.events.to_user(
            &other.id,
            ServerFrame::new(
                ReplyStatus::FriendRequestReceived,
                "Someone wants to be your friend.",
            )
            .with_fields(FriendNotice {
                user_id: me,
                user: from,
            }),
        ),
    ))
}

pub async fn respond(
    service: &ChatService,
    call: &Call<'_>,
    input: FriendRespond,
) -> Result<Outcome, ActionError> {
    let other = target(service, call, &input.user_id).await?;
    let me = &call.me.user_id;
    let existing = service
        .store
        .friendship(me, &other.id)
        .await
        .map_err(unavailable)?;
    match existing {
        Some(f) if f.accepted && input.accept => Ok(Outcome::reply(responded(&other, true))),
        Some(f) if !f.accepted && f.requested_by == other.id => {
            if input.accept {
                accept(service, call, &other).await
            } else {
                service
                    .store
                    .friendships
                    .delete_one(doc! {"_id": &f.id, "accepted": false})
                    .await
                    .map_err(|e| unavailable(e.into()))?;
                Ok(Outcome::reply(responded(&other, false)).with_event(
                    service.events.to_user(
                        &other.id,
                        ServerFrame::new(
                            ReplyStatus::FriendRequestDeclined,
                            "Your friend request was declined.",
                        )
                        .with_fields(FriendRef { user_id: me }),
                    ),
                ))
            }
        }
        _ => Err(ActionError::refused(
            ErrorCode::NotFound,
            "No friend request from this user is waiting.",
        )),
    }
}

pub async fn remove(
    service: &ChatService,
    call: &Call<'_>,
    input: UserTarget,
) -> Result<Outcome, ActionError> {
    let other_id = id("userId", &input.user_id)?;
    let me = &call.me.user_id;
    let pair = Friendship::pair_id(me, other_id);
    let existing = service
        .store
        .friendship(me, other_id)
        .await
        .map_err(unavailable)?;
    let Some(friendship) = existing else {
        return Err(ActionError::refused(
            ErrorCode::NotFound,
            "You are not friends with this user, and no request is open.",
        ));
    };
    service
        .store
        .friendships
        .delete_one(doc! {"_id": &pair})
        .await
        .map_err(|e| unavailable(e.into()))?;
    service
        .known
        .changed(Change::Friendship {
            a: me.clone(),
            b: other_id.clone(),
        })
        .await;
    let frame = |who: &UserId| {
        ServerFrame::new(ReplyStatus::FriendRemoved, "A friendship ended.")
            .with_fields(FriendRef { user_id: who })
    };
    let mut outcome = Outcome::reply(frame(other_id));
    if tells_the_other_on_remove(standing(Some(&friendship), me)) {
        outcome = outcome
            .with_event(service.events.to_user(other_id, frame(me)))
            .with_event(service.events.to_user_except(
                me,
                frame(other_id),
                Some(&call.request.origin),
            ));
    }
    Ok(outcome)
}

pub async fn list(service: &ChatService, call: &Call<'_>) -> Result<Outcome, ActionError> {
    let me = &call.me.user_id;
    let friendships = service
        .store
        .friendships_of(me)
        .await
        .map_err(unavailable)?;
    let others: Vec<UserId> = friendships.iter().map(|f| f.other(me)).collect();
    let cards = service
        .store
        .users_by_ids(&others)
        .await
        .map_err(unavailable)?;
    let card_of = |user: &UserId| UserView::find(&cards, user);
    // Only friends see whether each other is online.
    let friend_ids: Vec<UserId> = friendships
        .iter()
        .filter(|f| standing(Some(f), me) == Standing::Friends)
        .map(|f| f.other(me))
        .collect();
    let online = service
        .bus
        .online(&friend_ids)
        .await
        .map_err(|err| ActionError::Unavailable(err.into()))?;
    let online: std::collections::HashSet<&UserId> = friend_ids
        .iter()
        .zip(online)
        .filter_map(|(id, online)| online.then_some(id))
        .collect();
    let is_online = |user: &UserId| online.contains(user);
    let (mut friends, mut incoming, mut outgoing) = (Vec::new(), Vec::new(), Vec::new());
    for f in &friendships {
        let other = f.other(me);
        match standing(Some(f), me) {
            Standing::Friends => friends.push(card_of(&other).with_online(is_online(&other))),
            Standing::Asked => outgoing.push(card_of(&other)),
            Standing::AskedBy | Standing::Strangers => incoming.push(card_of(&other)),
        }
    }
    Ok(Outcome::reply(
        ServerFrame::new(ReplyStatus::Friends, format!("{} friends.", friends.len())).with_fields(
            Friends {
                friends,
                incoming,
                outgoing,
            },
        ),
    ))
}

/// Turns a pending request between the caller and `other` into a friendship.
async fn accept(
    service: &ChatService,
    call: &Call<'_>,
    other: &UserCard,
) -> Result<Outcome, ActionError> {
    let me = &call.me.user_id;
    service
        .store
        .friendships
        .update_one(
            doc! {"_id": Friendship::pair_id(me, &other.id)},
            doc! {"$set": {"accepted": true, "since_ms": now_ms()}},
        )
        .await
        .map_err(|e| unavailable(e.into()))?;
    service
        .known
        .changed(Change::Friendship {
            a: me.clone(),
            b: other.id.clone(),
        })
        .await;
    let me_card = service.store.user(me).await.map_err(unavailable)?;
    let me_view = UserView::of_or_id(me_card.as_ref(), me);
    let added = |user_id: &UserId, user: UserView| {
        ServerFrame::new(ReplyStatus::FriendAdded, "You have a new friend.")
            .with_fields(FriendNotice { user_id, user })
    };
    Ok(Outcome::reply(responded(other, true))
        .with_event(service.events.to_user(&other.id, added(me, me_view)))
        .with_event(service.events.to_user_except(
            me,
            added(&other.id, UserView::of(other)),
            Some(&call.request.origin),
        )))
}

/// Checks the other user of a friend action: a valid id, not the caller,
/// an existing account.
async fn target(
    service: &ChatService,
    call: &Call<'_>,
    user_id: &UserId,
) -> Result<UserCard, ActionError> {
    let user_id = id("userId", user_id)?;
    if *user_id == call.me.user_id {
        return Err(bad_request("That is you."));
    }
    service
        .store
        .user(user_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ActionError::refused(ErrorCode::NotFound, "No user with this id."))
}

fn request_sent(other: &UserCard) -> Outcome {
    Outcome::reply(
        ServerFrame::new(ReplyStatus::FriendRequestSent, "Friend request sent.").with_fields(
            FriendNotice {
                user_id: &other.id,
                user: UserView::of(other),
            },
        ),
    )
}

fn responded(other: &UserCard, accepted: bool) -> ServerFrame {
    let message = if accepted {
        "You are now friends."
    } else {
        "Request declined."
    };
    ServerFrame::new(ReplyStatus::FriendResponded, message).with_fields(FriendResponded {
        accepted,
        user_id: &other.id,
        user: UserView::of(other),
    })
}

/// Where the caller stands with another user, read from their pair's document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// No document: neither a friendship nor a request.
    Strangers,
    Friends,
    /// The caller asked; the other has not answered.
    Asked,
    /// The other asked; the caller has not answered.
    AskedBy,
}

fn standing(friendship: Option<&Friendship>, me: &UserId) -> Standing {
    match friendship {
        None => Standing::Strangers,
        Some(f) if f.accepted => Standing::Friends,
        Some(f) if f.requested_by == *me => Standing::Asked,
        Some(_) => Standing::AskedBy,
    }
}

/// FRIEND_REMOVE tells the other user when it ends a friendship or withdraws
/// the caller's own request, not when it discards a request to the caller.
fn tells_the_other_on_remove(standing: Standing) -> bool {
    matches!(standing, Standing::Friends | Standing::Asked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(id: &str) -> UserId {
        UserId::new(id)
    }

    fn pair(requested_by: &str, accepted: bool) -> Friendship {
        Friendship {
            id: Friendship::pair_id(&u("ana"), &u("ben")),
            users: vec![u("ana"), u("ben")],
            accepted,
            requested_by: u(requested_by),
            requested_at_ms: 0,
            since_ms: accepted.then_some(1),
        }
    }

    #[test]
    fn list_friends_incoming_is_waiting_for_the_caller_outgoing_is_the_callers_own() {
        let asked_by_ana = pair("ana", false);
        assert_eq!(standing(Some(&asked_by_ana), &u("ana")), Standing::Asked);
        assert_eq!(standing(Some(&asked_by_ana), &u("ben")), Standing::AskedBy);
    }

    #[test]
    fn an_accepted_request_makes_friends_of_both_whoever_asked() {
        let friends = pair("ben", true);
        assert_eq!(standing(Some(&friends), &u("ana")), Standing::Friends);
        assert_eq!(standing(Some(&friends), &u("ben")), Standing::Friends);
        assert_eq!(standing(None, &u("ana")), Standing::Strangers);
    }

    #[test]
    fn friend_remove_tells_the_other_except_when_discarding_a_request_to_the_caller() {
        assert!(
            tells_the_other_on_remove(Standing::Friends),
            "ending a friendship"
        );
        assert!(
            tells_the_other_on_remove(Standing::Asked),
            "withdrawing one's own request"
        );
        assert!(
            !tells_the_other_on_remove(Standing::AskedBy),
            "discarding a request"
        );
    }

    #[test]
    fn the_other_user_of_a_pair_is_the_one_who_is_not_the_caller() {
        let friends = pair("ana", true);
        assert_eq!(friends.other(&u("ana")), "ben");
        assert_eq!(friends.other(&u("ben")), "ana");
        assert_ne!(
            Friendship::pair_id(&u("ana"), &u("ben")),
            Friendship::pair_id(&u("ana"), &u("cal")),
            "one document per pair"
        );
    }
}
