//! The progress bar shown while a phase runs (hidden when stderr is not a
//! terminal, e.g. in CI logs, where a line per phase is printed instead).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

/// A bar for one phase, refreshed from `read` until dropped.
pub struct Phase {
    bar: ProgressBar,
    stop: CancellationToken,
}

impl Phase {
    /// `read` returns the position and a short status line.
    pub fn start(
        name: &str,
        total: u64,
        read: impl Fn() -> (u64, String) + Send + 'static,
    ) -> Phase {
        eprintln!("loadgen: {name}");
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:32}] {pos}/{len} {msg}",
            )
            .expect("the progress template is valid")
            .progress_chars("=> "),
        );
        bar.set_prefix(name.to_owned());
        let stop = CancellationToken::new();
        let ticker = bar.clone();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            // Bounded by the phase: it ends when the phase is dropped.
            while !stopped.is_cancelled() {
                tokio::select! {
                    _ = stopped.cancelled() => break,
                    _ = tick.tick() => {
                        let (position, message) = read();
                        ticker.set_position(position);
                        ticker.set_message(message);
                    }
                }
            }
        });
        Phase { bar, stop }
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        self.stop.cancel();
        self.bar.finish_and_clear();
    }
}
