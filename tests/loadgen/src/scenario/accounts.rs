//! `accounts`: a sign-up storm through the real flow — REGISTER, the code
//! from the confirmation mail (read from MailDev's API), CONFIRMATION and
//! LOGIN — over `--concurrency` connections, at most `--rate` sign-ups a
//! second if given. Only this product has this flow.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::maildev::Codes;
use crate::metrics::{Counters, Failure};
use crate::progress::Phase;
use crate::protocol::switchyard::Switchyard;

use super::{Ctx, Findings};

pub async fn run(protocol: Switchyard, ctx: &Ctx) -> anyhow::Result<Findings> {
    let count = ctx.options.connections;
    let workers = ctx.options.concurrency.clamp(1, count.max(1));
    let codes = Codes::start(&protocol.maildev);
    let recorder = ctx.recorder.clone();
    let progress = recorder.clone();
    let _phase = Phase::start(
        &format!("signing up {count} accounts"),
        count as u64,
        move || {
            (
                Counters::get(&progress.counters.accounts),
                format!("{} errors", progress.error_count()),
            )
        },
    );
    let rate = ctx.options.open_rate;
    let start = Instant::now();
    let protocol = &protocol;
    let codes = &codes;
    futures_util::stream::iter(0..workers)
        .for_each_concurrent(workers, |worker| {
            let recorder = recorder.clone();
            async move {
                let mut ws = None;
                for i in (worker..count).step_by(workers) {
                    if ctx.past_deadline() {
                        recorder.error(&Failure::new("deadline", "the run's time ran out"));
                        return;
                    }
                    if rate > 0.0 {
                        tokio::time::sleep_until(
                            (start + Duration::from_secs_f64(i as f64 / rate)).into(),
                        )
                        .await;
                    }
                    if ws.is_none() {
                        match ctx.dialer.open(worker).await {
                            Ok(socket) => ws = Some(socket),
                            Err(failure) => {
                                recorder.error(&failure);
                                continue;
                            }
                        }
                    }
                    let Some(socket) = ws.as_mut() else { continue };
                    match protocol
                        .sign_up(socket, &protocol.email(i), codes, Some((&recorder, i)))
                        .await
                    {
                        Ok(_) => Counters::add(&recorder.counters.accounts, 1),
                        Err(failure) => {
                            // A connection that failed may be unusable; open a new one.
                            if matches!(failure.kind.as_str(), "closed" | "send" | "reply_timeout")
                            {
                                ws = None;
                            }
                            recorder.error(&failure);
                        }
                    }
                }
            }
        })
        .await;
    Ok(Findings {
        window_secs: start.elapsed().as_secs_f64(),
        ..Findings::default()
    })
}
