//! The rules of a group, as pure functions on its document: who may do what
//! to whom. No I/O here, so every rule is unit-tested directly.

use shared_proto::status::ErrorCode;

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

type Rule = Result<(), Refusal>;

fn has(list: &[String], user: &str) -> bool {
    list.iter().any(|u| u == user)
}

fn remove(list: &mut Vec<String>, user: &str) {
    list.retain(|u| u != user);
}

fn add(list: &mut Vec<String>, user: &str) {
    if !has(list, user) {
        list.push(user.to_owned());
    }
}

fn require_admin(group: &Group, actor: &str) -> Rule {
    if has(&group.admins, actor) {
        Ok(())
    } else {
        Err(Refusal::NotAdmin)
    }
}

/// A user asks to join.
pub fn request_join(group: &mut Group, user: &str) -> Rule {
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
pub fn respond_join(group: &mut Group, admin: &str, user: &str, accept: bool) -> Rule {
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
pub fn add_member(group: &mut Group, admin: &str, user: &str) -> Rule {
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
pub fn remove_member(group: &mut Group, admin: &str, user: &str) -> Rule {
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
pub fn ban(group: &mut Group, admin: &str, user: &str) -> Rule {
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

pub fn unban(group: &mut Group, admin: &str, user: &str) -> Rule {
    require_admin(group, admin)?;
    if !has(&group.banned, user) {
        return Err(Refusal::NotBanned);
    }
    remove(&mut group.banned, user);
    Ok(())
}

pub fn promote(group: &mut Group, admin: &str, user: &str) -> Rule {
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
pub fn demote(group: &mut Group, admin: &str, user: &str) -> Rule {
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
pub fn leave(group: &mut Group, user: &str) -> Rule {
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

    #[test]
    fn only_admins_moderate() {
        let mut g = group();
        assert_eq!(
            add_member(&mut g, "member", "newcomer"),
            Err(Refusal::NotAdmin)
        );
        assert_eq!(
            remove_member(&mut g, "member", "admin"),
            Err(Refusal::NotAdmin)
        );
        assert_eq!(ban(&mut g, "member", "asker"), Err(Refusal::NotAdmin));
        assert_eq!(unban(&mut g, "member", "outcast"), Err(Refusal::NotAdmin));
        assert_eq!(promote(&mut g, "member", "member"), Err(Refusal::NotAdmin));
        assert_eq!(
            respond_join(&mut g, "member", "asker", true),
            Err(Refusal::NotAdmin)
        );
        assert_eq!(g, group(), "nothing changed");
    }

    #[test]
    fn a_banned_user_cannot_ask_or_be_added_until_unbanned() {
        let mut g = group();
        assert_eq!(request_join(&mut g, "outcast"), Err(Refusal::Banned));
        assert_eq!(add_member(&mut g, "admin", "outcast"), Err(Refusal::Banned));
        assert_eq!(unban(&mut g, "admin", "outcast"), Ok(()));
        assert_eq!(add_member(&mut g, "admin", "outcast"), Ok(()));
    }

    #[test]
    fn banning_removes_and_blocks() {
        let mut g = group();
        assert_eq!(ban(&mut g, "admin", "member"), Ok(()));
        assert!(!has(&g.members, "member"));
        assert!(has(&g.banned, "member"));
        assert_eq!(ban(&mut g, "admin", "admin"), Err(Refusal::SelfTarget));
    }

    #[test]
    fn the_last_admin_stays_while_others_remain() {
        let mut g = group();
        assert_eq!(leave(&mut g, "admin"), Err(Refusal::LastAdmin));
        assert_eq!(demote(&mut g, "admin", "admin"), Err(Refusal::LastAdmin));
        assert_eq!(promote(&mut g, "admin", "member"), Ok(()));
        assert_eq!(leave(&mut g, "admin"), Ok(()), "another admin remains");
        assert_eq!(g.admins, vec!["member".to_owned()]);
    }

    #[test]
    fn the_last_member_may_leave() {
        let mut g = group();
        assert_eq!(leave(&mut g, "member"), Ok(()));
        assert_eq!(leave(&mut g, "admin"), Ok(()));
        assert!(g.members.is_empty());
    }

    #[test]
    fn join_requests_are_answered_once() {
        let mut g = group();
        assert_eq!(
            request_join(&mut g, "asker"),
            Err(Refusal::AlreadyRequested)
        );
        assert_eq!(respond_join(&mut g, "admin", "asker", true), Ok(()));
        assert!(has(&g.members, "asker"));
        assert_eq!(
            respond_join(&mut g, "admin", "asker", true),
            Err(Refusal::NoRequest)
        );
    }

    #[test]
    fn admins_are_removed_only_after_demotion() {
        let mut g = group();
        assert_eq!(promote(&mut g, "admin", "member"), Ok(()));
        assert_eq!(
            remove_member(&mut g, "admin", "member"),
            Err(Refusal::TargetIsAdmin)
        );
        assert_eq!(demote(&mut g, "admin", "member"), Ok(()));
        assert_eq!(remove_member(&mut g, "admin", "member"), Ok(()));
    }
}
