//! Groups: CREATE_GROUP, SEARCH_GROUPS, GROUP_INFO, LIST_GROUPS, and the
//! moderation actions, whose rules live in [`crate::group_rules`].
//!
//! A change reads the group, applies a rule to a copy and writes it back only
//! if the version it read is still current (retrying otherwise), so two
//! admins acting at once cannot undo each other. The ids of recent actions are
//! kept in the group, so an action delivered twice is applied once.

use serde::Deserialize;
use serde_json::{Value, json};
use shared_proto::bus::actions::{ActionError, Outcome};
use shared_proto::client::ServerFrame;
use shared_proto::now_ms;
use shared_proto::status::ErrorCode;

use crate::conversations::group_conversation;
use crate::group_rules::{self, Refusal};
use crate::input::{GroupTarget, bad_request, display_name, id, payload, search_prefix};
use crate::people::card;
use crate::service::{Call, ChatService, unavailable};
use crate::store::{Group, StoreError, UserCard};

const RECENT_ACTIONS_KEPT: usize = 32;
const WRITE_ATTEMPTS: usize = 10;
const SEARCH_LIMIT: i64 = 20;

#[derive(Deserialize)]
struct CreateGroup {
    name: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct SearchGroups {
    query: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Moderation {
    group_id: String,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    accept: Option<bool>,
}

pub async fn create(service: &ChatService, call: &Call<'_>) -> Result<Outcome, ActionError> {
    let input: CreateGroup = payload(call.request)?;
    let (name, description) = parse_group_fields(&input.name, &input.description)?;
    let me = &call.me.user_id;
    // Derived from the action, so a redelivery creates no second group.
    let group = Group {
        id: call.request.action_id.clone(),
        name_lower: name.to_lowercase(),
        name,
        description,
        created_by: me.clone(),
        created_at_ms: now_ms(),
        admins: vec![me.clone()],
        members: vec![me.clone()],
        banned: Vec::new(),
        join_requests: Vec::new(),
        version: 0,
        recent_actions: vec![call.request.action_id.clone()],
    };
    service
        .store
        .insert_group(&group)
        .await
        .map_err(unavailable)?;
    // The group is stored now: a failure here means "finish later"
    // (idempotently), not "nothing was done".
    service
        .store
        .ensure_conversation(&group_conversation(&group.id))
        .await
        .map_err(|err| ActionError::Retry(err.into()))?;
    record_membership(service, me, &group).await?;
    let view = group_view(service, &group, me).await?;
    Ok(Outcome::reply(
        ServerFrame::new("GROUP_CREATED", "Group created; you are its admin.").with("group", view),
    )
    .with_event(service.events.membership(me, &group.id, true)))
}

pub async fn search(service: &ChatService, call: &Call<'_>) -> Result<Outcome, ActionError> {
    let input: SearchGroups = payload(call.request)?;
    let prefix = search_prefix(&input.query)?;
    let groups = service
        .store
        .groups_by_name_prefix(&prefix, SEARCH_LIMIT)
        .await
        .map_err(unavailable)?;
    let found: Vec<Value> = groups
        .iter()
        .map(|g| summary(g, &call.me.user_id))
        .collect();
    Ok(Outcome::reply(
        ServerFrame::new("GROUPS_FOUND", format!("{} found.", found.len())).with("groups", found),
    ))
}

pub async fn info(service: &ChatService, call: &Call<'_>) -> Result<Outcome, ActionError> {
    let input: GroupTarget = payload(call.request)?;
    let group = load(service, &input.group_id).await?;
    let view = group_view(service, &group, &call.me.user_id).await?;
    Ok(Outcome::reply(
        ServerFrame::new("GROUP_INFO", group.name.clone()).with("group", view),
    ))
}

pub async fn list(service: &ChatService, call: &Call<'_>) -> Result<Outcome, ActionError> {
    let groups = service
        .store
        .groups_of(&call.me.user_id)
        .await
        .map_err(unavailable)?;
    let list: Vec<Value> = groups
        .iter()
        .map(|g| summary(g, &call.me.user_id))
        .collect();
    Ok(Outcome::reply(
        ServerFrame::new("GROUPS", format!("{} groups.", list.len())).with("groups", list),
    ))
}

/// Tells the gateway where the user is logging in which groups to deliver
/// to them, in `groupIds`. The gateway answers the login once it listens to
/// them; no client sees this reply.
pub async fn session_started(
    service: &ChatService,
    call: &Call<'_>,
) -> Result<Outcome, ActionError> {
    let me = &call.me.user_id;
    let groups = member_groups(service, me).await.map_err(unavailable)?;
    Ok(Outcome::reply(
        ServerFrame::new("SESSION_READY", "The user's groups.").with("groupIds", groups),
    ))
}

/// The ids of the groups `user` is a member of, from their memberships
/// document: every login asks, and reading every group instead costs as much
/// as all the groups together on a database that scans. The document is filled
/// in from the groups once, the first time it is found incomplete.
async fn member_groups(service: &ChatService, user: &str) -> Result<Vec<String>, StoreError> {
    if let Some(memberships) = service.store.memberships(user).await? {
        if memberships.complete {
            return Ok(memberships.member_of().map(str::to_owned).collect());
        }
    }
    let groups = service.store.groups_of(user).await?;
    service.store.complete_memberships(user, &groups).await?;
    Ok(groups.into_iter().map(|group| group.id).collect())
}

/// Records where `user` stands in `group` as written. The group is stored
/// already, so a failure here asks for the action to be finished later; a
/// redelivered action records the group as it is then.
async fn record_membership(
    service: &ChatService,
    user: &str,
    group: &Group,
) -> Result<(), ActionError> {
    service
        .store
        .record_membership(user, group)
        .await
        .map_err(|err| ActionError::Retry(err.into()))
}

/// JOIN_GROUP, RESPOND_JOIN, ADD_MEMBER, REMOVE_MEMBER, BAN_MEMBER,
/// UNBAN_MEMBER, PROMOTE_ADMIN, DEMOTE_ADMIN and LEAVE_GROUP.
pub async fn moderate(service: &ChatService, call: &Call<'_>) -> Result<Outcome, ActionError> {
    let input: Moderation = payload(call.request)?;
    let group_id = id("groupId", &input.group_id)?.to_owned();
    let me = call.me.user_id.clone();
    let action = call.request.action.as_str();
    let target = match action {
        "JOIN_GROUP" | "LEAVE_GROUP" => me.clone(),
        _ => {
            let user_id = input
                .user_id
                .as_deref()
                .ok_or_else(|| bad_request(format!("{action} needs \"userId\".")))?;
            id("userId", user_id)?.to_owned()
        }
    };
    let accept = match action {
        "RESPOND_JOIN" => input
            .accept
            .ok_or_else(|| bad_request("RESPOND_JOIN needs \"accept\": true or false."))?,
        _ => true,
    };
    let target_card = if target == me {
        None
    } else {
        let card = service.store.user(&target).await.map_err(unavailable)?;
        Some(
            card.ok_or_else(|| ActionError::refused(ErrorCode::NotFound, "No user with this id."))?,
        )
    };

    let group = apply(
        service,
        &group_id,
        &call.request.action_id,
        |g| match action {
            "JOIN_GROUP" => group_rules::request_join(g, &me),
            "RESPOND_JOIN" => group_rules::respond_join(g, &me, &target, accept),
            "ADD_MEMBER" => group_rules::add_member(g, &me, &target),
            "REMOVE_MEMBER" => group_rules::remove_member(g, &me, &target),
            "BAN_MEMBER" => group_rules::ban(g, &me, &target),
            "UNBAN_MEMBER" => group_rules::unban(g, &me, &target),
            "PROMOTE_ADMIN" => group_rules::promote(g, &me, &target),
            "DEMOTE_ADMIN" => group_rules::demote(g, &me, &target),
            _ => group_rules::leave(g, &me),
        },
    )
    .await?;
    if changes_membership(action) {
        record_membership(service, &target, &group).await?;
    }

    let events = &service.events;
    let origin = Some(&call.request.origin);
    let about = |status: &str, message: &str| {
        ServerFrame::new(status, message)
            .with("groupId", &group.id)
            .with("groupName", &group.name)
            .with("userId", &target)
    };
    let outcome = match action {
        "JOIN_GROUP" => {
            let me_card = service.store.user(&me).await.map_err(unavailable)?;
            let from = me_card.as_ref().map_or_else(|| json!({"userId": me}), card);
            let mut outcome = Outcome::reply(about(
                "JOIN_REQUESTED",
                "Request sent; an admin will answer it.",
            ));
            for admin in &group.admins {
                outcome = outcome.with_event(
                    events.to_user(
                        admin,
                        about("JOIN_REQUEST_RECEIVED", "Someone asks to join your group.")
                            .with("from", &from),
                    ),
                );
            }
            outcome
        }
        "RESPOND_JOIN" if !accept => {
            Outcome::reply(about("JOIN_RESPONDED", "Request declined.").with("accepted", false))
                .with_event(events.to_user(
                    &target,
                    about("JOIN_REJECTED", "Your request to join was declined."),
                ))
        }
        "RESPOND_JOIN" | "ADD_MEMBER" => {
            let reply = if action == "ADD_MEMBER" {
                about("MEMBER_ADDED", "Member added.")
            } else {
                about("JOIN_RESPONDED", "Request approved.").with("accepted", true)
            };
            let joined = about("GROUP_JOINED", "A member joined the group.")
                .with("member", target_card.as_ref().map(card));
            Outcome::reply(reply)
                .with_event(events.membership(&target, &group.id, true))
                .with_event(events.to_user(&target, joined.clone()))
                .with_event(events.to_group_skipping(&group.id, joined, &target, origin))
        }
        "REMOVE_MEMBER" | "BAN_MEMBER" => {
            let (status, text) = if action == "BAN_MEMBER" {
                ("MEMBER_BANNED", "A member was banned from the group.")
            } else {
                ("MEMBER_REMOVED", "A member was removed from the group.")
            };
            // Membership first: from this publication on, no gateway delivers
            // the group's messages to the removed user.
            Outcome::reply(about(status, text))
                .with_event(events.membership(&target, &group.id, false))
                .with_event(events.to_user(&target, about(status, text)))
                .with_event(events.to_group(&group.id, about(status, text), origin))
        }
        "UNBAN_MEMBER" => Outcome::reply(about("MEMBER_UNBANNED", "The user may join again."))
            .with_event(events.to_user(
                &target,
                about("MEMBER_UNBANNED", "You may join this group again."),
            )),
        "PROMOTE_ADMIN" => Outcome::reply(about("ADMIN_PROMOTED", "Member promoted to admin."))
            .with_event(events.to_group(
                &group.id,
                about("ADMIN_PROMOTED", "A member became an admin."),
                origin,
            )),
        "DEMOTE_ADMIN" => {
            Outcome::reply(about("ADMIN_DEMOTED", "Admin demoted.")).with_event(events.to_group(
                &group.id,
                about("ADMIN_DEMOTED", "An admin stepped down."),
                origin,
            ))
        }
        _ => Outcome::reply(about("GROUP_LEFT", "You left the group."))
            .with_event(events.membership(&me, &group.id, false))
            .with_event(events.to_user_except(
                &me,
                about("GROUP_LEFT", "You left the group."),
                origin,
            ))
            .with_event(events.to_group(
                &group.id,
                about("GROUP_LEFT", "A member left the group."),
                origin,
            )),
    };
    Ok(outcome)
}

/// True for the actions that can put a user into a group or out of it.
fn changes_membership(action: &str) -> bool {
    matches!(
        action,
        "RESPOND_JOIN" | "ADD_MEMBER" | "REMOVE_MEMBER" | "BAN_MEMBER" | "LEAVE_GROUP"
    )
}

/// Applies a rule to a group with compare-and-set, returning the group as
/// written. An action already applied returns the group as it is.
async fn apply(
    service: &ChatService,
    group_id: &str,
    action_id: &str,
    rule: impl Fn(&mut Group) -> Result<(), Refusal>,
) -> Result<Group, ActionError> {
    for _ in 0..WRITE_ATTEMPTS {
        let current = load(service, group_id).await?;
        if current.recent_actions.iter().any(|a| a == action_id) {
            return Ok(current);
        }
        let mut next = current.clone();
        rule(&mut next)
            .map_err(|refusal| ActionError::refused(refusal.code(), refusal.message()))?;
        next.version += 1;
        next.recent_actions.push(action_id.to_owned());
        let excess = next
            .recent_actions
            .len()
            .saturating_sub(RECENT_ACTIONS_KEPT);
        next.recent_actions.drain(..excess);
        if service
            .store
            .replace_group(&next, current.version)
            .await
            .map_err(unavailable)?
        {
            return Ok(next);
        }
    }
    Err(ActionError::refused(
        ErrorCode::Conflict,
        "The group is changing too fast right now; try again.",
    ))
}

async fn load(service: &ChatService, group_id: &str) -> Result<Group, ActionError> {
    let group_id = id("groupId", group_id)?;
    service
        .store
        .group(group_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ActionError::refused(ErrorCode::NotFound, "No group with this id."))
}

fn role(group: &Group, user: &str) -> &'static str {
    if group.admins.iter().any(|a| a == user) {
        "admin"
    } else if group.members.iter().any(|m| m == user) {
        "member"
    } else if group.join_requests.iter().any(|r| r == user) {
        "requested"
    } else if group.banned.iter().any(|b| b == user) {
        "banned"
    } else {
        "none"
    }
}

/// What anyone may see of a group.
fn summary(group: &Group, viewer: &str) -> Value {
    json!({
        "groupId": group.id,
        "name": group.name,
        "description": group.description,
        "memberCount": group.members.len(),
        "role": role(group, viewer),
    })
}

/// Members see who is in the group; admins also see requests and bans.
async fn group_view(
    service: &ChatService,
    group: &Group,
    viewer: &str,
) -> Result<Value, ActionError> {
    let mut view = summary(group, viewer);
    let is_member = group.members.iter().any(|m| m == viewer);
    let is_admin = group.admins.iter().any(|a| a == viewer);
    if !is_member {
        return Ok(view);
    }
    let mut ids = group.members.clone();
    if is_admin {
        ids.extend(group.join_requests.iter().cloned());
        ids.extend(group.banned.iter().cloned());
    }
    let cards = service
        .store
        .users_by_ids(&ids)
        .await
        .map_err(unavailable)?;
    let cards_of = |list: &[String]| -> Vec<Value> {
        list.iter()
            .map(|id| {
                cards
                    .iter()
                    .find(|c: &&UserCard| c.id == *id)
                    .map_or_else(|| json!({"userId": id}), card)
            })
            .collect()
    };
    view["members"] = Value::Array(cards_of(&group.members));
    view["admins"] = json!(group.admins);
    if is_admin {
        view["joinRequests"] = Value::Array(cards_of(&group.join_requests));
        view["banned"] = Value::Array(cards_of(&group.banned));
    }
    Ok(view)
}

/// A new group's name (1 to 64 printable characters) and description (at
/// most 500 characters), both trimmed.
fn parse_group_fields(name: &str, description: &str) -> Result<(String, String), ActionError> {
    let name = display_name("name", name, 1, 64)?;
    let description = description.trim().to_owned();
    if description.chars().count() > 500 {
        return Err(bad_request(
            "\"description\" must have at most 500 characters.",
        ));
    }
    Ok((name, description))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::group;

    fn bad_request_refusal<T>(result: Result<T, ActionError>) -> bool {
        matches!(result, Err(ActionError::Refused(frame)) if frame.status() == "BAD_REQUEST")
    }

    #[test]
    fn create_group_name_is_1_to_64_printable_characters() {
        assert_eq!(
            parse_group_fields("  Hiking club ", "").ok(),
            Some(("Hiking club".into(), String::new()))
        );
        assert!(parse_group_fields(&"n".repeat(64), "").is_ok());
        assert!(bad_request_refusal(parse_group_fields(&"n".repeat(65), "")));
        assert!(bad_request_refusal(parse_group_fields("   ", "")));
        assert!(bad_request_refusal(parse_group_fields("tab\tname", "")));
    }

    #[test]
    fn create_group_description_is_at_most_500_characters() {
        let longest = "é".repeat(500);
        assert_eq!(
            parse_group_fields("G", &format!(" {longest} ")).ok(),
            Some(("G".into(), longest))
        );
        assert!(bad_request_refusal(parse_group_fields(
            "G",
            &"d".repeat(501)
        )));
    }

    #[test]
    fn role_is_the_viewers_admin_member_requested_banned_or_none() {
        let g = group();
        assert_eq!(role(&g, "admin"), "admin", "an admin is a member too");
        assert_eq!(role(&g, "member"), "member");
        assert_eq!(role(&g, "asker"), "requested");
        assert_eq!(role(&g, "outcast"), "banned");
        assert_eq!(role(&g, "stranger"), "none");
    }

    #[test]
    fn a_summary_visible_to_anyone_shows_no_members_requests_or_bans() {
        let g = group();
        let summary = summary(&g, "stranger");
        assert_eq!(
            summary,
            json!({"groupId": "g", "name": "G", "description": "", "memberCount": 2, "role": "none"})
        );
    }

    #[test]
    fn the_actions_that_put_a_user_in_or_out_of_a_group_record_the_membership() {
        for action in [
            "RESPOND_JOIN",
            "ADD_MEMBER",
            "REMOVE_MEMBER",
            "BAN_MEMBER",
            "LEAVE_GROUP",
        ] {
            assert!(changes_membership(action), "{action}");
        }
        for action in [
            "JOIN_GROUP",
            "UNBAN_MEMBER",
            "PROMOTE_ADMIN",
            "DEMOTE_ADMIN",
        ] {
            assert!(!changes_membership(action), "{action}");
        }
    }
}
