//! The rules of a group, as pure functions on its document: who may do what
//! to whom. No I/O here, so every rule is unit-tested directly.

use shared_proto::status::ErrorCode;

use shared_proto::action::UserId;

use crate::store::Group;

/// Why a rule refused a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotMember,
    NotAdmin,
    Banned,
    AlreadyMember,
    AlreadyRequested,
    NoRequest,
    TargetNotMember,
    TargetIsAdmin,
    AlreadyAdmin,
    TargetNotAdmin,
    LastAdmin,
    NotBanned,
    SelfTarget,
}

impl Refusal {
    pub fn code(self) -> ErrorCode {
        match self {
            Refusal::NotMember
            | Refusal::NotAdmin
            | Refusal::Banned
            | Refusal::TargetIsAdmin
            | Refusal::LastAdmin => ErrorCode::Forbidden,
            Refusal::NoRequest
            | Refusal::TargetNotMember
            | Refusal::NotBanned
            | Refusal::TargetNotAdmin => ErrorCode::NotFound,
            Refusal::AlreadyMember | Refusal::AlreadyRequested | Refusal::AlreadyAdmin => {
                ErrorCode::Conflict
            }
            Refusal::SelfTarget => ErrorCode::BadRequest,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::NotMember => "Only members of this group may do that.",
            Refusal::NotAdmin => "Only an admin of this group may do that.",
            Refusal::Banned => {
                "This user is banned from the group; an admin must unban them first."
            }
            Refusal::AlreadyMember => "Already a member of this group.",
            Refusal::AlreadyRequested => "A request to join is already waiting for an admin.",
            Refusal::NoRequest => "No request to join from this user is waiting.",
            Refusal::TargetNotMember => "This user is not a member of the group.",
            Refusal::TargetIsAdmin => "This user is an admin; demote them first.",
            Refusal::AlreadyAdmin => "This user is an admin already.",
            Refusal::TargetNotAdmin => "This user is not an admin.",
            Refusal::LastAdmin => {
                "The last admin cannot leave or step down while other members remain; promote someone first."
            }
            Refusal::NotBanned => "This user is not banned.",
            Refusal::SelfTarget => "Use LEAVE_GROUP or DEMOTE_ADMIN on yourself instead.",
        }
    }
}

pub type Rule = Result<(), Refusal>;

fn has(list: &[UserId], user: &UserId) -> bool {
    list.iter().any(|u| u == user)
}

fn remove(list: &mut Vec<UserId>, user: &UserId) {
    list.retain(|u| u != user);
}

fn add(list: &mut Vec<UserId>, user: &UserId) {
    if !has(list, user) {
        list.push(user.to_owned());
    }
}

fn require_admin(group: &Group, actor: &UserId) -> Rule {
    if has(&group.admins, actor) {
        Ok(())
    } else {
        Err(Refusal::NotAdmin)
    }
}

/// A user asks to join.
pub fn request_join(group: &mut Group, user: &UserId) -> Rule {
    if has(&group.banned, user) {
        return Err(Refusal::Banned);
    }
    if has(&group.members, user) {
        return Err(Refusal::AlreadyMember);
    }
    if has(&group.join_requests, user) {
        return Err(Refusal::AlreadyRequested);
    }
    group.join_requests.push(user.to_owned());
    Ok(())
}

/// An admin answers a join request.
pub fn respond_join(group: &mut Group, admin: &UserId, user: &UserId, accept: bool) -> Rule {
    require_admin(group, admin)?;
    if !has(&group.join_requests, user) {
        return Err(Refusal::NoRequest);
    }
    remove(&mut group.join_requests, user);
    if accept {
        if has(&group.banned, user) {
            return Err(Refusal::Banned);
        }
        add(&mut group.members, user);
    }
    Ok(())
}

/// An admin adds a user directly.
pub fn add_member(group: &mut Group, admin: &UserId, user: &UserId) -> Rule {
    require_admin(group, admin)?;
    if has(&group.banned, user) {
        return Err(Refusal::Banned);
    }
    if has(&group.members, user) {
        return Err(Refusal::AlreadyMember);
    }
    remove(&mut group.join_requests, user);
    group.members.push(user.to_owned());
    Ok(())
}

/// An admin removes a (non-admin) member.
pub fn remove_member(group: &mut Group, admin: &UserId, user: &UserId) -> Rule {
    require_admin(group, admin)?;
    if admin == user {
        return Err(Refusal::SelfTarget);
    }
    if !has(&group.members, user) {
        return Err(Refusal::TargetNotMember);
    }
    if has(&group.admins, user) {
        return Err(Refusal::TargetIsAdmin);
    }
    remove(&mut group.members, user);
    Ok(())
}

/// An admin bans a user (member or not), removing them if they are in.
pub fn ban(group: &mut Group, admin: &UserId, user: &UserId) -> Rule {
    require_admin(group, admin)?;
    if admin == user {
        return Err(Refusal::SelfTarget);
    }
    if has(&group.admins, user) {
        return Err(Refusal::TargetIsAdmin);
    }
    remove(&mut group.members, user);
    remove(&mut group.join_requests, user);
    add(&mut group.banned, user);
    Ok(())
}

pub fn unban(group: &mut Group, admin: &UserId, user: &UserId) -> Rule {
    require_admin(group, admin)?;
    if !has(&group.banned, user) {
        return Err(Refusal::NotBanned);
    }
    remove(&mut group.banned, user);
    Ok(())
}

pub fn promote(group: &mut Group, admin: &UserId, user: &UserId) -> Rule {
    require_admin(group, admin)?;
    if !has(&group.members, user) {
        return Err(Refusal::TargetNotMember);
    }
    if has(&group.admins, user) {
        return Err(Refusal::AlreadyAdmin);
    }
    group.admins.push(user.to_owned());
    Ok(())
}

/// An admin demotes an admin (themselves included), never the last one while
/// others remain in the group.
pub fn demote(group: &mut Group, admin: &UserId, user: &UserId) -> Rule {
    require_admin(group, admin)?;
    if !has(&group.admins, user) {
        return Err(Refusal::TargetNotAdmin);
    }
    if group.admins.len() == 1 {
        return Err(Refusal::LastAdmin);
    }
    remove(&mut group.admins, user);
    Ok(())
}

/// A member leaves. The last admin may leave only as the last member.
pub fn leave(group: &mut Group, user: &UserId) -> Rule {
    if !has(&group.members, user) {
        return Err(Refusal::NotMember);
    }
    let last_admin = group.admins.len() == 1 && has(&group.admins, user);
    if last_admin && group.members.len() > 1 {
        return Err(Refusal::LastAdmin);
    }
    remove(&mut group.members, user);
    remove(&mut group.admins, user);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::group;

    fn u(id: &str) -> UserId {
        UserId::new(id)
    }

    #[test]
    fn only_admins_moderate() {
        let mut g = group();
        assert_eq!(
            add_member(&mut g, &u("member"), &u("newcomer")),
            Err(Refusal::NotAdmin)
        );
        assert_eq!(
            remove_member(&mut g, &u("member"), &u("admin")),
            Err(Refusal::NotAdmin)
        );
        assert_eq!(
            ban(&mut g, &u("member"), &u("asker")),
            Err(Refusal::NotAdmin)
        );
        assert_eq!(
            unban(&mut g, &u("member"), &u("outcast")),
            Err(Refusal::NotAdmin)
        );
        assert_eq!(
            promote(&mut g, &u("member"), &u("member")),
            Err(Refusal::NotAdmin)
        );
        assert_eq!(
            respond_join(&mut g, &u("member"), &u("asker"), true),
            Err(Refusal::NotAdmin)
        );
        assert_eq!(g, group(), "nothing changed");
    }

    #[test]
    fn a_banned_user_cannot_ask_or_be_added_until_unbanned() {
        let mut g = group();
        assert_eq!(request_join(&mut g, &u("outcast")), Err(Refusal::Banned));
        assert_eq!(
            add_member(&mut g, &u("admin"), &u("outcast")),
            Err(Refusal::Banned)
        );
        assert_eq!(unban(&mut g, &u("admin"), &u("outcast")), Ok(()));
        assert_eq!(add_member(&mut g, &u("admin"), &u("outcast")), Ok(()));
    }

    #[test]
    fn banning_removes_and_blocks() {
        let mut g = group();
        assert_eq!(ban(&mut g, &u("admin"), &u("member")), Ok(()));
        assert!(!has(&g.members, &u("member")));
        assert!(has(&g.banned, &u("member")));
        assert_eq!(
            ban(&mut g, &u("admin"), &u("admin")),
            Err(Refusal::SelfTarget)
        );
    }

    #[test]
    fn the_last_admin_stays_while_others_remain() {
        let mut g = group();
        assert_eq!(leave(&mut g, &u("admin")), Err(Refusal::LastAdmin));
        assert_eq!(
            demote(&mut g, &u("admin"), &u("admin")),
            Err(Refusal::LastAdmin)
        );
        assert_eq!(promote(&mut g, &u("admin"), &u("member")), Ok(()));
        assert_eq!(leave(&mut g, &u("admin")), Ok(()), "another admin remains");
        assert_eq!(g.admins, vec![u("member")]);
    }

    #[test]
    fn the_last_member_may_leave() {
        let mut g = group();
        assert_eq!(leave(&mut g, &u("member")), Ok(()));
        assert_eq!(leave(&mut g, &u("admin")), Ok(()));
        assert!(g.members.is_empty());
    }

    #[test]
    fn join_requests_are_answered_once() {
        let mut g = group();
        assert_eq!(
            request_join(&mut g, &u("asker")),
            Err(Refusal::AlreadyRequested)
        );
        assert_eq!(respond_join(&mut g, &u("admin"), &u("asker"), true), Ok(()));
        assert!(has(&g.members, &u("asker")));
        assert_eq!(
            respond_join(&mut g, &u("admin"), &u("asker"), true),
            Err(Refusal::NoRequest)
        );
    }

    #[test]
    fn admins_are_removed_only_after_demotion() {
        let mut g = group();
        assert_eq!(promote(&mut g, &u("admin"), &u("member")), Ok(()));
        assert_eq!(
            remove_member(&mut g, &u("admin"), &u("member")),
            Err(Refusal::TargetIsAdmin)
        );
        assert_eq!(demote(&mut g, &u("admin"), &u("member")), Ok(()));
        assert_eq!(remove_member(&mut g, &u("admin"), &u("member")), Ok(()));
    }

    #[test]
    fn join_group_is_refused_with_conflict_to_a_member_and_adds_a_waiting_request_otherwise() {
        let mut g = group();
        assert_eq!(
            request_join(&mut g, &u("member")),
            Err(Refusal::AlreadyMember)
        );
        assert_eq!(Refusal::AlreadyMember.code(), ErrorCode::Conflict);
        assert_eq!(Refusal::AlreadyRequested.code(), ErrorCode::Conflict);
        assert_eq!(Refusal::Banned.code(), ErrorCode::Forbidden);
        assert_eq!(request_join(&mut g, &u("stranger")), Ok(()));
        assert!(has(&g.join_requests, &u("stranger")));
        assert!(
            !has(&g.members, &u("stranger")),
            "asking does not make a member"
        );
    }

    #[test]
    fn respond_join_declining_drops_the_request_without_adding_and_they_may_ask_again() {
        let mut g = group();
        assert_eq!(
            respond_join(&mut g, &u("admin"), &u("asker"), false),
            Ok(())
        );
        assert!(!has(&g.members, &u("asker")));
        assert!(!has(&g.join_requests, &u("asker")));
        assert_eq!(request_join(&mut g, &u("asker")), Ok(()));
    }

    #[test]
    fn respond_join_without_a_waiting_request_is_not_found() {
        let mut g = group();
        assert_eq!(
            respond_join(&mut g, &u("admin"), &u("stranger"), true),
            Err(Refusal::NoRequest)
        );
        assert_eq!(Refusal::NoRequest.code(), ErrorCode::NotFound);
        assert!(!has(&g.members, &u("stranger")));
    }

    #[test]
    fn respond_join_approving_a_banned_user_is_forbidden() {
        // Only reachable with a request stored before the ban.
        let mut g = group();
        g.banned.push(u("asker"));
        assert_eq!(
            respond_join(&mut g, &u("admin"), &u("asker"), true),
            Err(Refusal::Banned)
        );
        assert!(!has(&g.members, &u("asker")));
    }

    #[test]
    fn add_member_drops_a_pending_request_of_theirs() {
        let mut g = group();
        assert_eq!(add_member(&mut g, &u("admin"), &u("asker")), Ok(()));
        assert!(has(&g.members, &u("asker")));
        assert!(!has(&g.join_requests, &u("asker")));
    }

    #[test]
    fn add_member_of_a_member_already_is_a_conflict() {
        let mut g = group();
        assert_eq!(
            add_member(&mut g, &u("admin"), &u("member")),
            Err(Refusal::AlreadyMember)
        );
        assert_eq!(g.members.iter().filter(|m| *m == &u("member")).count(), 1);
    }

    #[test]
    fn remove_member_refuses_the_callers_own_id_with_bad_request() {
        let mut g = group();
        assert_eq!(
            remove_member(&mut g, &u("admin"), &u("admin")),
            Err(Refusal::SelfTarget)
        );
        assert_eq!(Refusal::SelfTarget.code(), ErrorCode::BadRequest);
        assert!(has(&g.members, &u("admin")));
    }

    #[test]
    fn remove_member_of_a_non_member_is_not_found() {
        let mut g = group();
        assert_eq!(
            remove_member(&mut g, &u("admin"), &u("asker")),
            Err(Refusal::TargetNotMember)
        );
        assert_eq!(Refusal::TargetNotMember.code(), ErrorCode::NotFound);
    }

    #[test]
    fn remove_member_an_admin_is_forbidden_demote_them_first() {
        let mut g = group();
        g.admins.push(u("member"));
        assert_eq!(
            remove_member(&mut g, &u("admin"), &u("member")),
            Err(Refusal::TargetIsAdmin)
        );
        assert_eq!(Refusal::TargetIsAdmin.code(), ErrorCode::Forbidden);
        assert!(has(&g.members, &u("member")));
    }

    #[test]
    fn a_removed_member_may_ask_to_join_again() {
        let mut g = group();
        assert_eq!(remove_member(&mut g, &u("admin"), &u("member")), Ok(()));
        assert!(!has(&g.members, &u("member")));
        assert_eq!(request_join(&mut g, &u("member")), Ok(()));
    }

    #[test]
    fn ban_member_need_not_be_a_member_and_drops_their_join_request() {
        let mut g = group();
        assert_eq!(ban(&mut g, &u("admin"), &u("stranger")), Ok(()));
        assert!(has(&g.banned, &u("stranger")));
        assert_eq!(ban(&mut g, &u("admin"), &u("asker")), Ok(()));
        assert!(!has(&g.join_requests, &u("asker")));
        assert!(has(&g.banned, &u("asker")));
        assert_eq!(request_join(&mut g, &u("stranger")), Err(Refusal::Banned));
    }

    #[test]
    fn ban_member_of_an_admin_is_forbidden() {
        let mut g = group();
        g.admins.push(u("member"));
        assert_eq!(
            ban(&mut g, &u("admin"), &u("member")),
            Err(Refusal::TargetIsAdmin)
        );
        assert!(has(&g.members, &u("member")));
        assert!(!has(&g.banned, &u("member")));
    }

    #[test]
    fn unban_member_of_a_user_not_banned_is_not_found() {
        let mut g = group();
        assert_eq!(
            unban(&mut g, &u("admin"), &u("member")),
            Err(Refusal::NotBanned)
        );
        assert_eq!(Refusal::NotBanned.code(), ErrorCode::NotFound);
    }

    #[test]
    fn unban_member_lets_them_ask_again_but_does_not_re_add_them() {
        let mut g = group();
        assert_eq!(ban(&mut g, &u("admin"), &u("member")), Ok(()));
        assert_eq!(unban(&mut g, &u("admin"), &u("member")), Ok(()));
        assert!(!has(&g.banned, &u("member")));
        assert!(!has(&g.members, &u("member")), "they are not re-added");
        assert_eq!(request_join(&mut g, &u("member")), Ok(()));
    }

    #[test]
    fn promote_admin_needs_a_member_not_found_otherwise() {
        let mut g = group();
        for outsider in [&u("stranger"), &u("asker"), &u("outcast")] {
            assert_eq!(
                promote(&mut g, &u("admin"), outsider),
                Err(Refusal::TargetNotMember),
                "{outsider}"
            );
        }
        assert!(!has(&g.admins, &u("outcast")));
    }

    #[test]
    fn promote_admin_of_an_admin_already_is_a_conflict() {
        let mut g = group();
        assert_eq!(
            promote(&mut g, &u("admin"), &u("admin")),
            Err(Refusal::AlreadyAdmin)
        );
        assert_eq!(Refusal::AlreadyAdmin.code(), ErrorCode::Conflict);
        assert_eq!(g.admins.len(), 1);
    }

    #[test]
    fn demote_admin_only_by_an_admin_and_only_of_an_admin() {
        let mut g = group();
        assert_eq!(
            demote(&mut g, &u("member"), &u("admin")),
            Err(Refusal::NotAdmin)
        );
        assert_eq!(
            demote(&mut g, &u("admin"), &u("member")),
            Err(Refusal::TargetNotAdmin)
        );
        assert_eq!(Refusal::TargetNotAdmin.code(), ErrorCode::NotFound);
        assert_eq!(g.admins, vec![u("admin")]);
    }

    #[test]
    fn demote_admin_the_caller_included_as_long_as_another_admin_remains() {
        let mut g = group();
        assert_eq!(promote(&mut g, &u("admin"), &u("member")), Ok(()));
        assert_eq!(
            demote(&mut g, &u("admin"), &u("admin")),
            Ok(()),
            "themselves"
        );
        assert_eq!(g.admins, vec![u("member")]);
        assert!(
            has(&g.members, &u("admin")),
            "a demoted admin stays a member"
        );
        assert_eq!(
            demote(&mut g, &u("member"), &u("member")),
            Err(Refusal::LastAdmin)
        );
        assert_eq!(Refusal::LastAdmin.code(), ErrorCode::Forbidden);
    }

    #[test]
    fn demote_admin_of_the_only_admin_is_refused_even_as_the_only_member() {
        let mut g = group();
        assert_eq!(leave(&mut g, &u("member")), Ok(()));
        assert_eq!(
            demote(&mut g, &u("admin"), &u("admin")),
            Err(Refusal::LastAdmin)
        );
    }

    #[test]
    fn leave_group_is_forbidden_to_a_non_member() {
        let mut g = group();
        for outsider in [&u("stranger"), &u("asker"), &u("outcast")] {
            assert_eq!(
                leave(&mut g, outsider),
                Err(Refusal::NotMember),
                "{outsider}"
            );
        }
        assert_eq!(Refusal::NotMember.code(), ErrorCode::Forbidden);
        assert_eq!(g, group());
    }

    #[test]
    fn leave_group_an_admin_who_is_not_the_only_one_also_gives_up_admin_rights() {
        let mut g = group();
        assert_eq!(promote(&mut g, &u("admin"), &u("member")), Ok(()));
        assert_eq!(leave(&mut g, &u("member")), Ok(()));
        assert_eq!(g.admins, vec![u("admin")]);
        assert!(!has(&g.members, &u("member")));
    }

    #[test]
    fn not_an_admin_is_forbidden_and_every_refusal_has_a_sentence() {
        assert_eq!(Refusal::NotAdmin.code(), ErrorCode::Forbidden);
        let all = [
            Refusal::NotMember,
            Refusal::NotAdmin,
            Refusal::Banned,
            Refusal::AlreadyMember,
            Refusal::AlreadyRequested,
            Refusal::NoRequest,
            Refusal::TargetNotMember,
            Refusal::TargetIsAdmin,
            Refusal::AlreadyAdmin,
            Refusal::TargetNotAdmin,
            Refusal::LastAdmin,
            Refusal::NotBanned,
            Refusal::SelfTarget,
        ];
        for refusal in all {
            assert!(refusal.message().ends_with('.'), "{refusal:?}");
        }
    }
}
