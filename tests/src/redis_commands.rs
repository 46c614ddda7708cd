//! How many times Redis ran each command, counted by Redis itself
//! (`INFO commandstats`), from a moment on: what a test checks when it
//! counts the round trips or scripts an action costs.

use redis::aio::MultiplexedConnection;

use crate::Stack;

/// Redis's command counts, reset when this was made.
pub struct RedisCommands(MultiplexedConnection);

impl RedisCommands {
    /// Resets Redis's counts; [`RedisCommands::calls`] counts from here.
    ///
    /// # Panics
    ///
    /// If Redis does not answer.
    pub async fn from_now(stack: &Stack) -> RedisCommands {
        let mut redis = stack.redis().await;
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut redis)
            .await
            .expect("resetting Redis's command counts");
        RedisCommands(redis)
    }

    /// How many times each of `commands` (lower case, as Redis names them:
    /// `evalsha`, `xlen`) ran since the reset, each counted on its own.
    ///
    /// # Panics
    ///
    /// If Redis does not answer.
    pub async fn calls<const N: usize>(&mut self, commands: [&str; N]) -> [usize; N] {
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.0)
            .await
            .expect("reading Redis's command counts");
        commands.map(|command| {
            stats
                .lines()
                .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
                .and_then(|rest| rest.split(',').next()?.parse().ok())
                .unwrap_or(0)
        })
    }

    /// How many scripts Redis ran since the reset, by hash or by body.
    ///
    /// # Panics
    ///
    /// If Redis does not answer.
    pub async fn scripts(&mut self) -> usize {
        let [by_hash, by_body] = self.calls(["evalsha", "eval"]).await;
        by_hash + by_body
    }
}
