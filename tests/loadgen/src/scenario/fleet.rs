//! One task per open connection: it writes what the scenario tells it to
//! send and reads everything the server pushes, recording each receipt.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::ledger::Outcome;
use crate::metrics::{Counters, Failure, Recorder};
use crate::protocol::{Conn, Other, Protocol, scan_markers};

/// Frames queued for one connection before the scheduler counts a backlog.
const QUEUE: usize = 64;
/// How long stopping waits for the tasks to end.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Something for a connection to send.
#[derive(Debug)]
pub struct Command {
    pub frame: Message,
    /// Other connections expected to receive it.
    pub receivers: u32,
    /// Probes check the wiring and are not measured.
    pub probe: bool,
    /// The message's stamp id, for the run's ledger if it keeps one.
    pub id: u64,
}

/// The running connection tasks.
pub struct Fleet {
    senders: HashMap<usize, mpsc::Sender<Command>>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
    /// Connections still open.
    pub alive: Arc<AtomicU64>,
    recorder: Arc<Recorder>,
}

impl Fleet {
    pub fn spawn<P: Protocol>(
        protocol: Arc<P>,
        conns: Vec<Conn>,
        recorder: Arc<Recorder>,
    ) -> Fleet {
        let stop = CancellationToken::new();
        let alive = Arc::new(AtomicU64::new(conns.len() as u64));
        let mut senders = HashMap::with_capacity(conns.len());
        let mut tasks = JoinSet::new();
        for conn in conns {
            let (tx, rx) = mpsc::channel(QUEUE);
            senders.insert(conn.index, tx);
            tasks.spawn(drive(
                conn,
                rx,
                protocol.clone(),
                recorder.clone(),
                stop.clone(),
                alive.clone(),
            ));
        }
        Fleet {
            senders,
            stop,
            tasks,
            alive,
            recorder,
        }
    }

    pub fn alive(&self) -> u64 {
        self.alive.load(Ordering::Relaxed)
    }

    /// Queues a frame on connection `index` without waiting; returns whether
    /// it was queued. A full queue means the load generator cannot keep up,
    /// which is recorded.
    pub fn send(&self, index: usize, command: Command) -> bool {
        let Some(sender) = self.senders.get(&index) else {
            self.recorder.error(&Failure::new(
                "no_connection",
                format!("connection {index} is not open"),
            ));
            return false;
        };
        let failure = match sender.try_send(command) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Full(_)) => Failure::new(
                "loadgen_backlog",
                format!("connection {index} could not write as fast as scheduled"),
            ),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Failure::new("send_on_closed", format!("connection {index} had closed"))
            }
        };
        self.recorder.error(&failure);
        false
    }

    /// Stops every task and closes the sockets.
    pub async fn stop(mut self) {
        self.stop.cancel();
        self.senders.clear();
        let all_done = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_WAIT, all_done).await.is_err() {
            self.tasks.abort_all();
        }
    }
}

async fn drive<P: Protocol>(
    conn: Conn,
    mut commands: mpsc::Receiver<Command>,
    protocol: Arc<P>,
    recorder: Arc<Recorder>,
    stop: CancellationToken,
    alive: Arc<AtomicU64>,
) {
    let me = conn.index;
    let me_u32 = u32::try_from(me).unwrap_or(u32::MAX);
    let (mut sink, mut stream) = conn.ws.split();
    let mut commands_open = true;
    let counters = &recorder.counters;
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = sink.close().await;
                return;
            }
            command = commands.recv(), if commands_open => {
                let Some(command) = command else {
                    commands_open = false;
                    continue;
                };
                let result = sink.send(command.frame).await;
                if !command.probe {
                    if result.is_ok() {
                        if let Some(ledger) = recorder.ledger.get() {
                            ledger.sent(command.id, clock::now_us());
                        }
                        recorder.mark_sent();
                        Counters::add(&counters.expected, u64::from(command.receivers));
                    }
                    Counters::add(&counters.processed, 1);
                }
                if let Err(e) = result {
                    recorder.error(&Failure::new("send", e.to_string()));
                }
            }
            message = stream.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => {
                        closed(&recorder, &alive, &stop, format!("closed by the server: {frame:?}"));
                        return;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        closed(&recorder, &alive, &stop, e.to_string());
                        return;
                    }
                    None => {
                        closed(&recorder, &alive, &stop, "end of stream".to_owned());
                        return;
                    }
                };
                let now = clock::now_us();
                let ledger = recorder.ledger.get();
                // Acknowledgements and BUSY are what a capacity run measures,
                // not errors of the run; other refusals are both.
                let mut measured_answer = false;
                if let Some(ledger) = ledger {
                    protocol.outcomes(text.as_str(), |id, outcome| {
                        ledger.answered(id, outcome, now);
                        measured_answer |= matches!(outcome, Outcome::Acked | Outcome::Busy);
                    });
                }
                let found = scan_markers(text.as_str(), |stamp| {
                    if stamp.from == me_u32 {
                        Counters::add(&counters.echoes, 1);
                    } else if stamp.is_probe() {
                        let round = (stamp.id >> 32) & 0xFFFF;
                        if round == Counters::get(&counters.probe_round) {
                            Counters::add(&counters.probes, 1);
                        }
                    } else {
                        let latency = now.saturating_sub(stamp.at_us);
                        if let Some(ledger) = ledger {
                            ledger.delivered(stamp.id, latency);
                        }
                        recorder.mark_delivered(latency, me);
                    }
                });
                if found > 0 {
                    if let Some(pong) = protocol.batched_ping_reply(text.as_str()) {
                        if let Err(e) = sink.send(pong).await {
                            recorder.error(&Failure::new("send", e.to_string()));
                        }
                    }
                } else if !measured_answer {
                    match protocol.classify(text.as_str()) {
                        Other::Ignore => {}
                        Other::Reply(frame) => {
                            if let Err(e) = sink.send(frame).await {
                                recorder.error(&Failure::new("send", e.to_string()));
                            }
                        }
                        Other::Error(kind) => {
                            let sample: String = text.as_str().chars().take(200).collect();
                            recorder.error(&Failure::new(kind, sample));
                        }
                    }
                }
            }
        }
    }
}

/// A connection that ended while the run still needed it.
fn closed(recorder: &Recorder, alive: &AtomicU64, stop: &CancellationToken, detail: String) {
    alive.fetch_sub(1, Ordering::Relaxed);
    if !stop.is_cancelled() {
        recorder.error(&Failure::new("disconnected", detail));
    }
}
