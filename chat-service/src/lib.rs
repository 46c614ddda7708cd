//! chat-service: people, friends, conversations and groups.
//!
//! - [`handler`]: takes actions off the chat stream and routes them.
//! - [`people`]: UPDATE_PROFILE, SEARCH_USERS.
//! - [`friends`]: FRIEND_REQUEST, FRIEND_RESPOND, FRIEND_REMOVE, LIST_FRIENDS.
//! - [`groups`]: creating, finding and moderating groups; the rules
//!   themselves are in [`group_rules`], free of I/O.
//! - [`messages`]: SEND_MESSAGE, HISTORY, LIST_CONVERSATIONS, MARK_READ.
//! - [`events`]: every event this service pushes is built here.
//! - [`store`]: the collections, their documents and indexes.
//! - [`input`]: payload fields parsed into checked values.

pub mod events;
pub mod friends;
pub mod group_rules;
pub mod groups;
pub mod handler;
pub mod input;
pub mod messages;
pub mod people;
pub mod settings;
pub mod startup;
pub mod store;

pub use settings::Settings;
