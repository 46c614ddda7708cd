//! Unit tests of the hub: who gets which event, and when the listener
//! is asked to subscribe.

use shared_proto::envelope::Identity;
use shared_proto::now_ms;

use super::*;
use crate::frame::Frame;

fn identity(user: &str, session: &str) -> Identity {
    Identity {
        user_id: shared_proto::action::UserId::new(user),
        session_id: session.into(),
        email: format!("{user}@example.com"),
    }
}

/// A connection that keeps the frames it is sent.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<Frame>>);

impl FrameSink for Recorder {
    fn push(&self, frame: &Frame) -> Result<(), Refused> {
        lock(&self.0).push(frame.clone());
        Ok(())
    }

    fn cut_off(&self, close: &Frame) {
        lock(&self.0).push(close.clone());
    }
}

impl Recorder {
    /// The texts of the frames sent since the last call.
    fn texts(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.0))
            .iter()
            .filter(|frame| !frame.is_close())
            .map(|frame| {
                let bytes = frame.bytes();
                let header = match bytes[1] & 0x7f {
                    126 => 4,
                    127 => 10,
                    _ => 2,
                };
                String::from_utf8(bytes[header..].to_vec()).expect("utf-8")
            })
            .collect()
    }
}

fn hub() -> (Hub, mpsc::UnboundedReceiver<SubscriptionChange>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Hub::new("gw".into(), Names::default(), tx), rx)
}

#[test]
fn the_first_login_of_a_user_subscribes_and_the_last_logout_unsubscribes() {
    let (hub, mut changes) = hub();
    let a = hub.register(Arc::new(Recorder::default()));
    let b = hub.register(Arc::new(Recorder::default()));
    let session = Session {
        identity: identity("u1", "s1"),
        expires_at_ms: now_ms() + 60_000,
    };
    hub.log_in(a.id, session.clone());
    hub.log_in(b.id, session);
    assert_eq!(
        changes.try_recv().ok(),
        Some(SubscriptionChange::Subscribe("switchyard:user:u1".into()))
    );
    assert!(changes.try_recv().is_err(), "one subscription per user");
    hub.unregister(a.id);
    assert!(changes.try_recv().is_err(), "b is still logged in");
    hub.log_out(b.id);
    assert_eq!(
        changes.try_recv().ok(),
        Some(SubscriptionChange::Unsubscribe("switchyard:user:u1".into()))
    );
}

#[test]
fn group_events_follow_members_and_their_connections() {
    let (hub, _changes) = hub();
    let far = now_ms() + 60_000;
    let connect = |user: &str| {
        let recorder = Arc::new(Recorder::default());
        let handle = hub.register(recorder.clone());
        hub.log_in(
            handle.id,
            Session {
                identity: identity(user, &format!("{user}-{}", handle.id)),
                expires_at_ms: far,
            },
        );
        (handle, recorder)
    };
    let (_ana, ana_frames) = connect("ana");
    let (bob, bob_frames) = connect("bob");
    hub.set_membership("ana", "g", true);
    hub.set_membership("bob", "g", true);
    hub.deliver_to_group("g", &Pushed::live(Frame::text("one")), None, None);
    assert_eq!(ana_frames.texts(), ["one"]);
    assert_eq!(bob_frames.texts(), ["one"]);

    // Bob's second connection gets the next event; his first, once
    // gone, gets nothing; Ana, once out of the group, gets nothing.
    let (_bob_phone, bob_phone_frames) = connect("bob");
    hub.deliver_to_group("g", &Pushed::live(Frame::text("two")), None, Some("ana"));
    assert_eq!(ana_frames.texts(), Vec::<String>::new(), "skipped");
    assert_eq!(bob_phone_frames.texts(), ["two"]);
    hub.unregister(bob.id);
    hub.set_membership("ana", "g", false);
    hub.deliver_to_group("g", &Pushed::live(Frame::text("three")), None, None);
    assert_eq!(ana_frames.texts(), Vec::<String>::new(), "left the group");
    assert_eq!(bob_frames.texts(), ["two"], "only what came before it went");
    assert_eq!(bob_phone_frames.texts(), ["three"]);
}

#[test]
fn revoking_a_session_leaves_other_sessions_of_the_user_alone() {
    let (hub, _changes) = hub();
    let recorder = Arc::new(Recorder::default());
    let a = hub.register(recorder.clone());
    let b = hub.register(recorder.clone());
    let far = now_ms() + 60_000;
    hub.log_in(
        a.id,
        Session {
            identity: identity("u1", "s1"),
            expires_at_ms: far,
        },
    );
    hub.log_in(
        b.id,
        Session {
            identity: identity("u1", "s2"),
            expires_at_ms: far,
        },
    );
    hub.revoke_session("u1", "s1");
    assert!(a.identity().is_none());
    assert_eq!(b.identity().map(|i| i.session_id), Some("s2".into()));
    let texts = recorder.texts();
    assert!(
        texts.len() == 1 && texts[0].contains("SESSION_CLOSED"),
        "{texts:?}"
    );
}

#[test]
fn an_expired_session_is_no_identity() {
    let (hub, _changes) = hub();
    let a = hub.register(Arc::new(Recorder::default()));
    hub.log_in(
        a.id,
        Session {
            identity: identity("u1", "s1"),
            expires_at_ms: now_ms() - 1,
        },
    );
    assert!(a.identity().is_none());
}

#[test]
fn an_expired_session_is_logged_out_and_told() {
    let (hub, mut changes) = hub();
    let recorder = Arc::new(Recorder::default());
    let a = hub.register(recorder.clone());
    let expires = now_ms() + 1_000;
    hub.log_in(
        a.id,
        Session {
            identity: identity("u1", "s1"),
            expires_at_ms: expires,
        },
    );
    let _subscribed = changes.try_recv();
    hub.expire_sessions(expires - 1);
    assert!(recorder.texts().is_empty(), "not expired yet");
    hub.expire_sessions(expires);
    let texts = recorder.texts();
    assert!(
        texts.len() == 1 && texts[0].contains("SESSION_CLOSED"),
        "{texts:?}"
    );
    assert_eq!(
        changes.try_recv().ok(),
        Some(SubscriptionChange::Unsubscribe("switchyard:user:u1".into()))
    );
}

#[test]
fn a_reply_is_delivered_once() {
    let (hub, _changes) = hub();
    let recorder = Arc::new(Recorder::default());
    let a = hub.register(recorder.clone());
    hub.track(
        "act".into(),
        PendingRequest {
            connection_id: a.id,
            action: "LOGIN".into(),
            request_id: None,
            started: Instant::now(),
            deadline: Instant::now(),
            timed_out: false,
        },
    );
    let frame = ServerFrame::new("USER_LOGGED", "You logged.");
    assert!(hub.deliver_reply("act", &frame).is_some());
    assert!(
        hub.deliver_reply("act", &frame).is_none(),
        "duplicate dropped"
    );
    assert_eq!(recorder.texts().len(), 1);
}

fn session(user: &str) -> Session {
    Session {
        identity: identity(user, &format!("{user}-s")),
        expires_at_ms: now_ms() + 60_000,
    }
}

#[tokio::test]
async fn subscriptions_are_settled_once_the_listener_passes_what_came_before() {
    let (hub, mut changes) = hub();
    let a = hub.register(Arc::new(Recorder::default()));
    hub.log_in(a.id, session("u1"));
    let settled = hub.subscriptions_settled();
    assert_eq!(
        changes.try_recv().ok(),
        Some(SubscriptionChange::Subscribe("switchyard:user:u1".into())),
        "the subscription is queued first"
    );
    let Ok(SubscriptionChange::Barrier(barrier)) = changes.try_recv() else {
        panic!("then the barrier");
    };
    barrier.pass();
    assert!(settled.await);

    let settled = hub.subscriptions_settled();
    drop(changes);
    assert!(!settled.await, "a listener that stopped settles nothing");
}

#[test]
fn a_membership_change_during_a_lookup_wins_over_its_answer() {
    let (hub, _changes) = hub();
    let recorder = Arc::new(Recorder::default());
    let a = hub.register(recorder.clone());
    hub.log_in(a.id, session("u1"));
    hub.begin_group_lookup("u1");
    // Removed from g1 after chat-service read the user's groups: the
    // answer still names g1.
    hub.set_membership("u1", "g1", false);
    hub.apply_group_lookup("u1", &["g1".into(), "g2".into()]);
    hub.end_group_lookup("u1");
    hub.deliver_to_group("g1", &Pushed::live(Frame::text("one")), None, None);
    hub.deliver_to_group("g2", &Pushed::live(Frame::text("two")), None, None);
    assert_eq!(recorder.texts(), ["two"]);

    // Without a lookup under way, a change is just a change.
    hub.apply_group_lookup("u1", &["g1".into()]);
    hub.deliver_to_group("g1", &Pushed::live(Frame::text("three")), None, None);
    assert_eq!(recorder.texts(), ["three"]);
}

#[test]
fn a_login_and_the_logout_before_it_are_queued_in_their_order() {
    let (hub, mut changes) = hub();
    let a = hub.register(Arc::new(Recorder::default()));
    hub.log_in(a.id, session("u1"));
    hub.log_out(a.id);
    hub.log_in(a.id, session("u1"));
    let queued: Vec<_> = std::iter::from_fn(|| changes.try_recv().ok()).collect();
    assert_eq!(
        queued,
        [
            SubscriptionChange::Subscribe("switchyard:user:u1".into()),
            SubscriptionChange::Unsubscribe("switchyard:user:u1".into()),
            SubscriptionChange::Subscribe("switchyard:user:u1".into()),
        ]
    );
}
