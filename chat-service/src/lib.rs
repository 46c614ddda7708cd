//! chat-service: people, friends, conversations and groups.
//!
//! - [`handler`]: parses each action into a `ChatAction` and routes it to the
//!   module that handles it.
//! - [`service`]: the state every action is handed, and the call context.
//! - [`people`]: PROFILE_CHANGED (the copy of profiles), SEARCH_USERS.
//! - [`friends`]: FRIEND_REQUEST, FRIEND_RESPOND, FRIEND_REMOVE, LIST_FRIENDS.
//! - [`groups`]: creating and finding groups, and changing one safely.
//! - [`moderation`]: the actions of members and admins on a group; the rules
//!   themselves are in [`group_rules`], free of I/O.
//! - [`messages`]: SEND_MESSAGE, and a message as clients see it;
//!   [`message_log`] stores messages in batches; [`partitions`]: which
//!   conversations' messages this replica handles.
//! - [`known`]: what SEND_MESSAGE needs to know (friends, members,
//!   conversations), remembered between actions and forgotten on change.
//! - [`reading`]: HISTORY, LIST_CONVERSATIONS, MARK_READ (and its receipts).
//! - [`typing`]: TYPING, forwarded live and never stored.
//! - [`presence`]: PRESENCE_CHANGED, told to the user's friends.
//! - [`conversations`]: conversation ids, for messages and groups alike.
//! - [`events`]: every event this service pushes is built here.
//! - [`replies`]: the data of each kind of reply and event, one struct each.
//! - [`views`]: what clients see of users, messages, conversations, groups.
//! - [`store`]: the collections, their documents and indexes.
//! - [`input`]: payload fields parsed into checked values.
//! - [`files`]: attachments over HTTP (upload, download, thumbnails, signed
//!   URLs), on their own port; [`attachments`]: files in messages.

pub mod attachments;
pub mod conversations;
pub mod events;
pub mod files;
pub mod friends;
pub mod group_rules;
pub mod groups;
pub mod handler;
pub mod input;
pub mod known;
pub mod message_log;
pub mod messages;
pub mod moderation;
pub mod partitions;
pub mod people;
pub mod presence;
pub mod reading;
pub mod replies;
pub mod service;
pub mod settings;
pub mod startup;
pub mod store;
pub mod typing;
pub mod views;

pub use settings::Settings;
