//! chat-service's actions, including those other processes send it.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::ids::{ConversationId, GroupId, UserId};
use super::{payload, unknown};
use crate::client::ServerFrame;
use crate::profiles::ProfileChanged;
use crate::routing::{PRESENCE_CHANGED, PROFILE_CHANGED, SESSION_STARTED};

/// `{"userId"}`: whose presence may have changed. Who is online is read
/// anew when it is handled, so a late or repeated one tells the truth.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceChanged {
    pub user_id: UserId,
}

/// `{"nickname"}` (a prefix) or `{"email"}` (exact), not both.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SearchUsers {
    #[serde(default)]
    pub nickname: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// `{"userId"}`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserTarget {
    pub user_id: UserId,
}

/// `{"userId", "accept"}`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FriendRespond {
    pub user_id: UserId,
    pub accept: bool,
}

/// `{"to": {"userId"} | {"groupId"}, "text", "clientMsgId", "attachments"?}`:
/// `attachments` are the ids of files the sender uploaded; with any, `text`
/// may be `""`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    pub to: Recipient,
    pub text: String,
    pub client_msg_id: String,
    #[serde(default)]
    pub attachments: Vec<String>,
}

/// Exactly one of the two is expected; the handler says so if not.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recipient {
    #[serde(default)]
    pub user_id: Option<UserId>,
    #[serde(default)]
    pub group_id: Option<GroupId>,
}

/// `{"conversationId", "beforeSeq"?, "limit"?}`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub conversation_id: ConversationId,
    #[serde(default)]
    pub before_seq: Option<i64>,
    #[serde(default)]
    pub limit: Option<i64>,
}

/// `{"conversationId", "seq"}`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarkRead {
    pub conversation_id: ConversationId,
    pub seq: i64,
}

/// `{"conversationId"}`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationTarget {
    pub conversation_id: ConversationId,
}

/// `{"name", "description"?}`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CreateGroup {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// `{"query"}`: a prefix of the group's name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SearchGroups {
    pub query: String,
}

/// `{"groupId"}`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupTarget {
    pub group_id: GroupId,
}

/// `{"groupId", "userId"}`: a moderation action on a member.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupMember {
    pub group_id: GroupId,
    pub user_id: UserId,
}

/// `{"groupId", "userId", "accept"}`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RespondJoin {
    pub group_id: GroupId,
    pub user_id: UserId,
    pub accept: bool,
}

/// An action chat-service handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatAction {
    /// From a gateway: a connection logged in.
    SessionStarted,
    /// From auth-service: a profile changed.
    ProfileChanged(ProfileChanged),
    /// From a gateway: a user came online or went offline.
    PresenceChanged(PresenceChanged),
    SearchUsers(SearchUsers),
    FriendRequest(UserTarget),
    FriendRespond(FriendRespond),
    FriendRemove(UserTarget),
    ListFriends,
    SendMessage(SendMessage),
    History(History),
    ListConversations,
    MarkRead(MarkRead),
    Typing(ConversationTarget),
    CreateGroup(CreateGroup),
    SearchGroups(SearchGroups),
    GroupInfo(GroupTarget),
    ListGroups,
    JoinGroup(GroupTarget),
    RespondJoin(RespondJoin),
    AddMember(GroupMember),
    RemoveMember(GroupMember),
    BanMember(GroupMember),
    UnbanMember(GroupMember),
    PromoteAdmin(GroupMember),
    DemoteAdmin(GroupMember),
    LeaveGroup(GroupTarget),
}

impl ChatAction {
    /// Every action name this enum parses.
    pub const NAMES: &[&str] = &[
        SESSION_STARTED,
        PROFILE_CHANGED,
        PRESENCE_CHANGED,
        "SEARCH_USERS",
        "FRIEND_REQUEST",
        "FRIEND_RESPOND",
        "FRIEND_REMOVE",
        "LIST_FRIENDS",
        "SEND_MESSAGE",
        "HISTORY",
        "LIST_CONVERSATIONS",
        "MARK_READ",
        "TYPING",
        "CREATE_GROUP",
        "SEARCH_GROUPS",
        "GROUP_INFO",
        "LIST_GROUPS",
        "JOIN_GROUP",
        "RESPOND_JOIN",
        "ADD_MEMBER",
        "REMOVE_MEMBER",
        "BAN_MEMBER",
        "UNBAN_MEMBER",
        "PROMOTE_ADMIN",
        "DEMOTE_ADMIN",
        "LEAVE_GROUP",
    ];

    /// The action `name` with `fields`, or the frame that refuses it.
    pub fn parse(name: &str, fields: &Map<String, Value>) -> Result<Self, ServerFrame> {
        use ChatAction as A;
        Ok(match name {
            SESSION_STARTED => A::SessionStarted,
            PROFILE_CHANGED => A::ProfileChanged(payload(name, fields)?),
            PRESENCE_CHANGED => A::PresenceChanged(payload(name, fields)?),
            "SEARCH_USERS" => A::SearchUsers(payload(name, fields)?),
            "FRIEND_REQUEST" => A::FriendRequest(payload(name, fields)?),
            "FRIEND_RESPOND" => A::FriendRespond(payload(name, fields)?),
            "FRIEND_REMOVE" => A::FriendRemove(payload(name, fields)?),
            "LIST_FRIENDS" => A::ListFriends,
            "SEND_MESSAGE" => A::SendMessage(payload(name, fields)?),
            "HISTORY" => A::History(payload(name, fields)?),
            "LIST_CONVERSATIONS" => A::ListConversations,
            "MARK_READ" => A::MarkRead(payload(name, fields)?),
            "TYPING" => A::Typing(payload(name, fields)?),
            "CREATE_GROUP" => A::CreateGroup(payload(name, fields)?),
            "SEARCH_GROUPS" => A::SearchGroups(payload(name, fields)?),
            "GROUP_INFO" => A::GroupInfo(payload(name, fields)?),
            "LIST_GROUPS" => A::ListGroups,
            "JOIN_GROUP" => A::JoinGroup(payload(name, fields)?),
            "RESPOND_JOIN" => A::RespondJoin(payload(name, fields)?),
            "ADD_MEMBER" => A::AddMember(payload(name, fields)?),
            "REMOVE_MEMBER" => A::RemoveMember(payload(name, fields)?),
            "BAN_MEMBER" => A::BanMember(payload(name, fields)?),
            "UNBAN_MEMBER" => A::UnbanMember(payload(name, fields)?),
            "PROMOTE_ADMIN" => A::PromoteAdmin(payload(name, fields)?),
            "DEMOTE_ADMIN" => A::DemoteAdmin(payload(name, fields)?),
            "LEAVE_GROUP" => A::LeaveGroup(payload(name, fields)?),
            other => return Err(unknown("chat-service", other)),
        })
    }

    /// The name the action has on the wire.
    pub fn name(&self) -> &'static str {
        use ChatAction as A;
        match self {
            A::SessionStarted => SESSION_STARTED,
            A::ProfileChanged(_) => PROFILE_CHANGED,
            A::PresenceChanged(_) => PRESENCE_CHANGED,
            A::SearchUsers(_) => "SEARCH_USERS",
            A::FriendRequest(_) => "FRIEND_REQUEST",
            A::FriendRespond(_) => "FRIEND_RESPOND",
            A::FriendRemove(_) => "FRIEND_REMOVE",
            A::ListFriends => "LIST_FRIENDS",
            A::SendMessage(_) => "SEND_MESSAGE",
            A::History(_) => "HISTORY",
            A::ListConversations => "LIST_CONVERSATIONS",
            A::MarkRead(_) => "MARK_READ",
            A::Typing(_) => "TYPING",
            A::CreateGroup(_) => "CREATE_GROUP",
            A::SearchGroups(_) => "SEARCH_GROUPS",
            A::GroupInfo(_) => "GROUP_INFO",
            A::ListGroups => "LIST_GROUPS",
            A::JoinGroup(_) => "JOIN_GROUP",
            A::RespondJoin(_) => "RESPOND_JOIN",
            A::AddMember(_) => "ADD_MEMBER",
            A::RemoveMember(_) => "REMOVE_MEMBER",
            A::BanMember(_) => "BAN_MEMBER",
            A::UnbanMember(_) => "UNBAN_MEMBER",
            A::PromoteAdmin(_) => "PROMOTE_ADMIN",
            A::DemoteAdmin(_) => "DEMOTE_ADMIN",
            A::LeaveGroup(_) => "LEAVE_GROUP",
        }
    }
}
