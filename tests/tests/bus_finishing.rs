//! Entries a service finishes at the same moment are published and
//! acknowledged together, in fewer runs of Redis's script than entries;
//! each still gets its publications out and its acknowledgement, and a run
//! whose caller is dropped halfway holds up no entry after it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use shared_proto::bus::{Bus, Finished, Publication};
use shared_proto::client::ServerFrame;
use shared_proto::envelope::ToGateway;
use shared_proto::names::Names;
use switchyard_tests::Stack;
use switchyard_tests::redis_commands::RedisCommands;
use tokio_util::sync::CancellationToken;

const STREAM: &str = "finishing:stream";
const GROUP: &str = "finishers";
const CHANNEL: &str = "finishing:events";
/// Entries finished at once.
const AT_ONCE: usize = 200;
/// How long any one finish may take here.
const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn entries_finished_at_once_go_out_together_and_each_is_acknowledged() {
    let stack = Stack::builder().infrastructure_only().start().await;
    let bus = connect(&stack).await;
    let mut redis = stack.redis().await;
    let ids = pending_entries(&mut redis, AT_ONCE).await;
    let mut events = redis::Client::open(stack.redis_url())
        .expect("a Redis client")
        .get_async_pubsub()
        .await
        .expect("a subscription");
    events.subscribe(CHANNEL).await.expect("subscribed");
    let mut redis_commands = RedisCommands::from_now(&stack).await;

    let finishes = ids.iter().map(|id| bus.finish_entry(finished(id)));
    let outcomes = tokio::time::timeout(PATIENCE, join_all(finishes))
        .await
        .expect("every entry finished in time");
    for (id, outcome) in ids.iter().zip(&outcomes) {
        assert!(outcome.is_ok(), "entry {id}: {outcome:?}");
    }

    // Each entry's event was published once, each entry acknowledged and
    // deleted.
    let mut published = Vec::new();
    let mut messages = events.on_message();
    while published.len() < AT_ONCE {
        let message = tokio::time::timeout(PATIENCE, messages.next())
            .await
            .expect("every event arrives")
            .expect("the subscription stays open");
        let payload: String = message.get_payload().expect("a text payload");
        published.push(payload);
    }
    for id in &ids {
        let marked = format!("entry {id}\"");
        assert_eq!(
            published.iter().filter(|p| p.contains(&marked)).count(),
            1,
            "entry {id}'s event, once"
        );
    }
    let (length, pending): (usize, (usize, redis::Value, redis::Value, redis::Value)) =
        redis::pipe()
            .cmd("XLEN")
            .arg(STREAM)
            .cmd("XPENDING")
            .arg(STREAM)
            .arg(GROUP)
            .query_async(&mut redis)
            .await
            .expect("the stream's state");
    assert_eq!(
        (length, pending.0),
        (0, 0),
        "every entry acknowledged and deleted"
    );

    let runs = redis_commands.scripts().await;
    assert!(
        runs * 10 <= AT_ONCE,
        "{AT_ONCE} entries finished at once took {runs} runs of the script"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finish_dropped_halfway_holds_up_no_entry_after_it() {
    let stack = Stack::builder().infrastructure_only().start().await;
    let bus = connect(&stack).await;
    let mut redis = stack.redis().await;
    let ids = pending_entries(&mut redis, 3).await;
    // Redis holds every write back for a moment, so the first finish is
    // surely halfway, its run sent and unanswered, when it is dropped; the
    // second queues behind that run meanwhile.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(500)
        .arg("WRITE")
        .query_async(&mut redis)
        .await
        .expect("pausing Redis's writes");
    let first = {
        let bus = bus.clone();
        let entry = finished(&ids[0]);
        tokio::spawn(async move { bus.finish_entry(entry).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = {
        let bus = bus.clone();
        let entry = finished(&ids[1]);
        tokio::spawn(async move { bus.finish_entry(entry).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.abort();

    let second = tokio::time::timeout(PATIENCE, second)
        .await
        .expect("the entry queued behind a dropped run finishes")
        .expect("not aborted");
    assert!(second.is_ok(), "{second:?}");
    let third = tokio::time::timeout(PATIENCE, bus.finish_entry(finished(&ids[2])))
        .await
        .expect("a later entry finishes");
    assert!(third.is_ok(), "{third:?}");
}

async fn connect(stack: &Stack) -> Bus {
    Bus::connect(
        stack.redis_url(),
        Names::new("finishing"),
        &CancellationToken::new(),
    )
    .await
    .expect("the bus connects")
}

/// `count` new entries, delivered to a consumer and not yet acknowledged.
async fn pending_entries(redis: &mut MultiplexedConnection, count: usize) -> Vec<String> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(STREAM)
        .arg(GROUP)
        .arg("$")
        .arg("MKSTREAM")
        .query_async(redis)
        .await;
    if let Err(err) = created {
        assert_eq!(err.code(), Some("BUSYGROUP"), "creating the group: {err}");
    }
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        let id: String = redis::cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("e")
            .arg(n)
            .query_async(redis)
            .await
            .expect("an entry appended");
        ids.push(id);
    }
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg("consumer")
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(STREAM)
        .arg(">")
        .query_async(redis)
        .await
        .expect("the entries delivered");
    ids
}

/// Entry `id` done, with one event naming it to publish and keep.
fn finished(id: &str) -> Finished {
    let frame = ServerFrame::new("NOTICE", format!("entry {id}"));
    Finished {
        stream: Arc::from(STREAM),
        group: Arc::from(GROUP),
        entry_id: id.into(),
        publications: vec![Publication {
            channel: CHANNEL.into(),
            message: ToGateway::Event {
                frame,
                except: None,
                skip_user: None,
            },
            kept_in: Some("finishing:history".into()),
        }],
    }
}
