//! The moderation actions on a group's members: JOIN_GROUP, RESPOND_JOIN,
//! ADD_MEMBER, REMOVE_MEMBER, BAN_MEMBER, UNBAN_MEMBER, PROMOTE_ADMIN,
//! DEMOTE_ADMIN and LEAVE_GROUP. Their rules live in
//! [`crate::group_rules`]; a change is applied as every group change is (see
//! [`crate::groups`]).

use shared_proto::action::{GroupId, UserId};
use shared_proto::bus::actions::{ActionError, Outcome};
use shared_proto::client::ServerFrame;
use shared_proto::status::ErrorCode;
use shared_proto::status::ReplyStatus;

use crate::group_rules::{self, Rule};
use crate::groups::{apply, record_membership};
use crate::input::id;
use crate::replies::{GroupJoined, JoinRequestReceived, JoinResponded, MemberChange};
use crate::service::{Call, ChatService, unavailable};
use crate::store::Group;
use crate::views::UserView;

/// One moderation action, with the member it is about where it names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    Join,
    Leave,
    RespondJoin { user: UserId, accept: bool },
    Add(UserId),
    Remove(UserId),
    Ban(UserId),
    Unban(UserId),
    Promote(UserId),
    Demote(UserId),
}

impl Move {
    /// The member the action is about; `None` for the caller themself.
    fn named_user(&self) -> Option<&UserId> {
        match self {
            Move::Join | Move::Leave => None,
            Move::RespondJoin { user, .. }
            | Move::Add(user)
            | Move::Remove(user)
            | Move::Ban(user)
            | Move::Unban(user)
            | Move::Promote(user)
            | Move::Demote(user) => Some(user),
        }
    }

    /// True for the actions that can put a user into a group or out of it.
    fn changes_membership(&self) -> bool {
        match self {
            Move::RespondJoin { .. } | Move::Add(_) | Move::Remove(_) | Move::Ban(_) => true,
            Move::Leave => true,
            Move::Join | Move::Unban(_) | Move::Promote(_) | Move::Demote(_) => false,
        }
    }

    /// The rule that decides it, for `me` acting on `target`.
    fn apply_rule(&self, group: &mut Group, me: &UserId, target: &UserId) -> Rule {
        match self {
            Move::Join => group_rules::request_join(group, me),
            Move::Leave => group_rules::leave(group, me),
            Move::RespondJoin { accept, .. } => {
                group_rules::respond_join(group, me, target, *accept)
            }
            Move::Add(_) => group_rules::add_member(group, me, target),
            Move::Remove(_) => group_rules::remove_member(group, me, target),
            Move::Ban(_) => group_rules::ban(group, me, target),
            Move::Unban(_) => group_rules::unban(group, me, target),
            Move::Promote(_) => group_rules::promote(group, me, target),
            Move::Demote(_) => group_rules::demote(group, me, target),
        }
    }
}

pub async fn moderate(
    service: &ChatService,
    call: &Call<'_>,
    group_id: GroupId,
    step: Move,
) -> Result<Outcome, ActionError> {
    let group_id = id("groupId", &group_id)?;
    let me = call.me.user_id.clone();
    let target = match step.named_user() {
        Some(user) => id("userId", user)?.clone(),
        None => me.clone(),
    };
    let target_card = if target == me {
        None
    } else {
        let card = service.store.user(&target).await.map_err(unavailable)?;
        Some(
            card.ok_or_else(|| ActionError::refused(ErrorCode::NotFound, "No user with this id."))?,
        )
    };

    let group = apply(service, group_id, &call.request.action_id, |g| {
        step.apply_rule(g, &me, &target)
    })
    .await?;
    if step.changes_membership() {
        record_membership(service, &target, &group).await?;
    }

    let events = &service.events;
    let origin = Some(&call.request.origin);
    let change = MemberChange {
        group_id: &group.id,
        group_name: &group.name,
        user_id: &target,
    };
    let about =
        |status: ReplyStatus, message: &str| ServerFrame::new(status, message).with_fields(&change);
    let joined = || {
        ServerFrame::new(ReplyStatus::GroupJoined, "A member joined the group.").with_fields(
            GroupJoined {
                change: change.clone(),
                member: target_card.as_ref().map(UserView::of),
            },
        )
    };
    let responded = |message: &str, accepted: bool| {
        ServerFrame::new(ReplyStatus::JoinResponded, message).with_fields(JoinResponded {
            change: change.clone(),
            accepted,
        })
    };
    let removed = |status: ReplyStatus, text: &str| {
        // Membership first: from this publication on, no gateway delivers
        // the group's messages to the removed user.
        Outcome::reply(about(status, text))
            .with_event(events.membership(&target, &group.id, false))
            .with_event(events.to_user(&target, about(status, text)))
            .with_event(events.to_group(&group.id, about(status, text), origin))
    };
    let added = |reply: ServerFrame| {
        Outcome::reply(reply)
            .with_event(events.membership(&target, &group.id, true))
            .with_event(events.to_user(&target, joined()))
            .with_event(events.to_group_skipping(&group.id, joined(), &target, origin))
    };
    let outcome = match step {
        Move::Join => {
            let me_card = service.store.user(&me).await.map_err(unavailable)?;
            let from = UserView::of_or_id(me_card.as_ref(), &me);
            let mut outcome = Outcome::reply(about(
                ReplyStatus::JoinRequested,
                "Request sent; an admin will answer it.",
            ));
            for admin in &group.admins {
                outcome = outcome.with_event(
                    events.to_user(
                        admin,
                        ServerFrame::new(
                            ReplyStatus::JoinRequestReceived,
                            "Someone asks to join your group.",
                        )
                        .with_fields(JoinRequestReceived {
                            change: change.clone(),
                            from: &from,
                        }),
                    ),
                );
            }
            outcome
        }
        Move::RespondJoin { accept: false, .. } => {
            Outcome::reply(responded("Request declined.", false)).with_event(events.to_user(
                &target,
                about(
                    ReplyStatus::JoinRejected,
                    "Your request to join was declined.",
                ),
            ))
        }
        Move::RespondJoin { accept: true, .. } => added(responded("Request approved.", true)),
        Move::Add(_) => added(about(ReplyStatus::MemberAdded, "Member added.")),
        Move::Remove(_) => removed(
            ReplyStatus::MemberRemoved,
            "A member was removed from the group.",
        ),
        Move::Ban(_) => removed(
            ReplyStatus::MemberBanned,
            "A member was banned from the group.",
        ),
        Move::Unban(_) => Outcome::reply(about(
            ReplyStatus::MemberUnbanned,
            "The user may join again.",
        ))
        .with_event(events.to_user(
            &target,
            about(
                ReplyStatus::MemberUnbanned,
                "You may join this group again.",
            ),
        )),
        Move::Promote(_) => Outcome::reply(about(
            ReplyStatus::AdminPromoted,
            "Member promoted to admin.",
        ))
        .with_event(events.to_group(
            &group.id,
            about(ReplyStatus::AdminPromoted, "A member became an admin."),
            origin,
        )),
        Move::Demote(_) => Outcome::reply(about(ReplyStatus::AdminDemoted, "Admin demoted."))
            .with_event(events.to_group(
                &group.id,
                about(ReplyStatus::AdminDemoted, "An admin stepped down."),
                origin,
            )),
        Move::Leave => Outcome::reply(about(ReplyStatus::GroupLeft, "You left the group."))
            .with_event(events.membership(&me, &group.id, false))
            .with_event(events.to_user_except(
                &me,
                about(ReplyStatus::GroupLeft, "You left the group."),
                origin,
            ))
            .with_event(events.to_group(
                &group.id,
                about(ReplyStatus::GroupLeft, "A member left the group."),
                origin,
            )),
    };
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::group;

    fn user() -> UserId {
        UserId::new("member")
    }

    #[test]
    fn the_actions_that_put_a_user_in_or_out_of_a_group_record_the_membership() {
        let changing = [
            Move::RespondJoin {
                user: user(),
                accept: true,
            },
            Move::Add(user()),
            Move::Remove(user()),
            Move::Ban(user()),
            Move::Leave,
        ];
        for step in changing {
            assert!(step.changes_membership(), "{step:?}");
        }
        for step in [
            Move::Join,
            Move::Unban(user()),
            Move::Promote(user()),
            Move::Demote(user()),
        ] {
            assert!(!step.changes_membership(), "{step:?}");
        }
    }

    #[test]
    fn joining_and_leaving_are_about_the_caller_and_the_rest_about_the_named_member() {
        assert_eq!(Move::Join.named_user(), None);
        assert_eq!(Move::Leave.named_user(), None);
        assert_eq!(Move::Ban(user()).named_user(), Some(&user()));
        let mut g = group();
        assert!(
            Move::Promote(user())
                .apply_rule(&mut g, &UserId::new("admin"), &user())
                .is_ok()
        );
        assert!(g.admins.iter().any(|a| a == "member"));
    }
}
