//! Groups: CREATE_GROUP, SEARCH_GROUPS, GROUP_INFO, LIST_GROUPS, and what
//! the moderation actions ([`crate::moderation`]) share: loading a group and
//! changing it.
//!
//! A change reads the group, applies a rule to a copy and writes it back only
//! if the version it read is still current (retrying otherwise), so two
//! admins acting at once cannot undo each other. The ids of recent actions are
//! kept in the group, so an action delivered twice is applied once.

use crate::known::Change;
use std::collections::BTreeMap;
use std::time::Duration;

use shared_proto::action::chat::{CreateGroup, GroupTarget, SearchGroups};
use shared_proto::action::{GroupId, UserId};
use shared_proto::bus::actions::{ActionError, Outcome};
use shared_proto::client::ServerFrame;
use shared_proto::now_ms;
use shared_proto::status::ErrorCode;
use shared_proto::status::ReplyStatus;
use tracing::warn;

use crate::conversations::group_conversation;
use crate::group_rules::Refusal;
use crate::input::{bad_request, display_name, id, search_prefix};
use crate::replies::{GroupDetails, GroupList, SessionReady};
use crate::service::{Call, ChatService, unavailable};
use crate::store::{Group, Memberships, StoreError};
use crate::views::{GroupSummary, GroupView};

const RECENT_ACTIONS_KEPT: usize = 32;
const WRITE_ATTEMPTS: usize = 10;
const SEARCH_LIMIT: i64 = 20;

pub async fn create(
    service: &ChatService,
    call: &Call<'_>,
    input: CreateGroup,
) -> Result<Outcome, ActionError> {
    let (name, description) = parse_group_fields(&input.name, &input.description)?;
    let me = &call.me.user_id;
    // Derived from the action, so a redelivery creates no second group.
    let group = Group {
        id: GroupId::new(call.request.action_id.clone()),
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
        ServerFrame::new(
            ReplyStatus::GroupCreated,
            "Group created; you are its admin.",
        )
        .with_fields(GroupDetails { group: view }),
    )
    .with_event(service.events.membership(me, &group.id, true)))
}

pub async fn search(
    service: &ChatService,
    call: &Call<'_>,
    input: SearchGroups,
) -> Result<Outcome, ActionError> {
    let prefix = search_prefix(&input.query)?;
    let groups = service
        .store
        .groups_by_name_prefix(&prefix, SEARCH_LIMIT)
        .await
        .map_err(unavailable)?;
    let found: Vec<GroupSummary> = groups
        .iter()
        .map(|g| summary(g, &call.me.user_id))
        .collect();
    Ok(Outcome::reply(
        ServerFrame::new(ReplyStatus::GroupsFound, format!("{} found.", found.len()))
            .with_fields(GroupList { groups: found }),
    ))
}

pub async fn info(
    service: &ChatService,
    call: &Call<'_>,
    input: GroupTarget,
) -> Result<Outcome, ActionError> {
    let group = load(service, &input.group_id).await?;
    let view = group_view(service, &group, &call.me.user_id).await?;
    Ok(Outcome::reply(
        ServerFrame::new(ReplyStatus::GroupInfo, group.name.clone())
            .with_fields(GroupDetails { group: view }),
    ))
}

pub async fn list(service: &ChatService, call: &Call<'_>) -> Result<Outcome, ActionError> {
    let groups = service
        .store
        .groups_of(&call.me.user_id)
        .await
        .map_err(unavailable)?;
    let list: Vec<GroupSummary> = groups
        .iter()
        .map(|g| summary(g, &call.me.user_id))
        .collect();
    Ok(Outcome::reply(
        ServerFrame::new(ReplyStatus::Groups, format!("{} groups.", list.len()))
            .with_fields(GroupList { groups: list }),
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
    let groups = member_groups(service, me).await?;
    Ok(Outcome::reply(
        ServerFrame::new(shared_proto::routing::SESSION_READY, "The user's groups.")
            .with_fields(SessionReady { group_ids: groups }),
    ))
}

/// How long the copy of a user's memberships in Redis is kept after it was
/// last written: users who log in within that time cost the database
/// nothing at login.
const MEMBERSHIPS_COPY_LIFE: Duration = Duration::from_secs(24 * 3600);

/// The ids of the groups `user` is a member of: from the copy of their
/// memberships in Redis, which every change writes through (see
/// [`record_membership`]); else from their memberships document, then
/// copied. Every login asks, and reading every group instead costs as much as
/// all the groups together on a database that scans.
async fn member_groups(service: &ChatService, user: &UserId) -> Result<Vec<GroupId>, ActionError> {
    let copy = service.bus.names().user_groups_copy(user.as_str());
    match service.bus.complete_versions(&copy).await {
        Ok(Some(entries)) => {
            return Ok(entries
                .into_iter()
                .filter(|(_, entry)| entry % 2 == 1)
                .map(|(group, _)| GroupId::new(group))
                .collect());
        }
        Ok(None) => {}
        Err(err) => warn!(error = %err, "could not read the copy of a user's memberships"),
    }
    let entries = stored_memberships(service, user)
        .await
        .map_err(unavailable)?;
    let copied: Vec<(String, i64)> = entries
        .iter()
        .map(|(group, entry)| (group.as_str().to_owned(), *entry))
        .collect();
    if let Err(err) = service
        .bus
        .raise_versions(&copy, &copied, true, MEMBERSHIPS_COPY_LIFE)
        .await
    {
        warn!(error = %err, "could not copy a user's memberships");
    }
    Ok(entries
        .into_iter()
        .filter(|(_, entry)| entry % 2 == 1)
        .map(|(group, _)| group)
        .collect())
}

/// A user's memberships document, as group to entry (see [`Memberships`]).
/// The document is filled in from the groups once, the first time it is
/// found incomplete.
async fn stored_memberships(
    service: &ChatService,
    user: &UserId,
) -> Result<BTreeMap<GroupId, i64>, StoreError> {
    if let Some(memberships) = service.store.memberships(user).await? {
        if memberships.complete {
            return Ok(memberships.groups);
        }
    }
    let groups = service.store.groups_of(user).await?;
    service.store.complete_memberships(user, &groups).await?;
    Ok(groups
        .iter()
        .map(|group| (group.id.clone(), Memberships::entry(group, user)))
        .collect())
}

/// Records where `user` stands in `group` as written. The group is stored
/// already, so a failure here asks for the action to be finished later; a
/// redelivered action records the group as it is then.
pub(crate) async fn record_membership(
    service: &ChatService,
    user: &UserId,
    group: &Group,
) -> Result<(), ActionError> {
    service
        .store
        .record_membership(user, group)
        .await
        .map_err(|err| ActionError::Retry(err.into()))?;
    let entry = (
        group.id.as_str().to_owned(),
        Memberships::entry(group, user),
    );
    service
        .bus
        .raise_versions(
            &service.bus.names().user_groups_copy(user.as_str()),
            &[entry],
            false,
            MEMBERSHIPS_COPY_LIFE,
        )
        .await
        .map_err(|err| ActionError::Retry(err.into()))
}

/// Applies a rule to a group with compare-and-set, returning the group as
/// written. An action already applied returns the group as it is.
pub(crate) async fn apply(
    service: &ChatService,
    group_id: &GroupId,
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
            service
                .known
                .changed(Change::Group {
                    group_id: group_id.clone(),
                })
                .await;
            return Ok(next);
        }
    }
    Err(ActionError::refused(
        ErrorCode::Conflict,
        "The group is changing too fast right now; try again.",
    ))
}

pub(crate) async fn load(service: &ChatService, group_id: &GroupId) -> Result<Group, ActionError> {
    let group_id = id("groupId", group_id)?;
    service
        .store
        .group(group_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ActionError::refused(ErrorCode::NotFound, "No group with this id."))
}

fn role(group: &Group, user: &UserId) -> &'static str {
    if group.admins.contains(user) {
        "admin"
    } else if group.members.contains(user) {
        "member"
    } else if group.join_requests.contains(user) {
        "requested"
    } else if group.banned.contains(user) {
        "banned"
    } else {
        "none"
    }
}

/// What anyone may see of a group.
fn summary<'a>(group: &'a Group, viewer: &UserId) -> GroupSummary<'a> {
    GroupSummary {
        group_id: &group.id,
        name: &group.name,
        description: &group.description,
        member_count: group.members.len(),
        role: role(group, viewer),
    }
}

/// Members see who is in the group; admins also see requests and bans.
async fn group_view<'a>(
    service: &ChatService,
    group: &'a Group,
    viewer: &UserId,
) -> Result<GroupView<'a>, ActionError> {
    let is_member = group.members.contains(viewer);
    let is_admin = group.admins.contains(viewer);
    if !is_member {
        return Ok(GroupView::outside(summary(group, viewer)));
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
    let online = service
        .bus
        .online(&group.members)
        .await
        .map_err(|err| ActionError::Unavailable(err.into()))?;
    Ok(GroupView::inside(
        summary(group, viewer),
        group,
        &cards,
        &online,
        is_admin,
    ))
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
        assert_eq!(
            role(&g, &UserId::new("admin")),
            "admin",
            "an admin is a member too"
        );
        assert_eq!(role(&g, &UserId::new("member")), "member");
        assert_eq!(role(&g, &UserId::new("asker")), "requested");
        assert_eq!(role(&g, &UserId::new("outcast")), "banned");
        assert_eq!(role(&g, &UserId::new("stranger")), "none");
    }

    #[test]
    fn a_summary_visible_to_anyone_shows_no_members_requests_or_bans() {
        let g = group();
        let summary = serde_json::to_value(summary(&g, &UserId::new("stranger"))).expect("json");
        assert_eq!(
            summary,
            serde_json::json!({"groupId": "g", "name": "G", "description": "", "memberCount": 2, "role": "none"})
        );
    }
}
