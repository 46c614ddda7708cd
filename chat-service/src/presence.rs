//! PRESENCE_CHANGED: a user came online or went offline (a gateway saw their
//! first connection open, or their last close or lapse). Their friends get
//! `PRESENCE`. Who is online is read anew here, so an announcement that
//! arrives late or twice still tells the truth. Members of a group are not
//! told: a group's presence is read with `GROUP_INFO`, so that a large group
//! costs nothing per connection.

use shared_proto::action::chat::PresenceChanged;
use shared_proto::bus::actions::{ActionError, Outcome};
use shared_proto::client::ServerFrame;
use shared_proto::status::ReplyStatus;

use crate::replies;
use crate::service::{Call, ChatService, unavailable};

pub async fn presence_changed(
    service: &ChatService,
    call: &Call<'_>,
    change: PresenceChanged,
) -> Result<Outcome, ActionError> {
    let user_id = &change.user_id;
    if *user_id != call.me.user_id {
        return Err(crate::input::bad_request(
            "A presence change names another user.",
        ));
    }
    let online = service
        .bus
        .online(std::slice::from_ref(user_id))
        .await
        .map_err(|err| ActionError::Unavailable(err.into()))?
        .first()
        .copied()
        .unwrap_or(false);
    let friendships = service
        .store
        .friendships_of(user_id)
        .await
        .map_err(unavailable)?;
    let frame = ServerFrame::new(
        ReplyStatus::Presence,
        if online {
            "A friend is online."
        } else {
            "A friend went offline."
        },
    )
    .with_fields(replies::Presence { user_id, online });
    let mut outcome = Outcome::unanswered("PRESENCE_TOLD");
    for friendship in friendships.iter().filter(|f| f.accepted) {
        outcome = outcome.with_event(service.events.signal_to_user(
            &friendship.other(user_id),
            frame.clone(),
            None,
        ));
    }
    Ok(outcome)
}
