//! Who a session token belongs to, for the processes that serve plain HTTP.
//!
//! auth-service owns sessions (its `sessions` collection), and nothing else
//! reads that collection. A WebSocket learns its identity from auth-service's
//! answer to `LOGIN` or `FASTLOGIN`; an HTTP request (an upload, a download)
//! carries only the token. Rather than a round trip over the action stream
//! per request, auth-service publishes what a verifier needs: at every
//! `LOGIN` and `FASTLOGIN` it writes `session:<session id>` → user id, with
//! the session's remaining lifetime as its expiry, and `LOGOUT` writes the
//! `revoked:<session id>` marker the gateways already check. A verifier
//! hashes the token into its session id and reads both keys in one round
//! trip. If Redis loses them, a token stays refused over HTTP until its
//! client logs in again, which a client that reconnects does anyway.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Bus, BusError, bounded};
use crate::action::UserId;

/// The session id of a token: its SHA-256, as auth-service stores it.
pub fn session_id_of(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Makes the session `session_id` of `user_id` known to HTTP verifiers for
/// `lifetime` (what is left of the session). Called by auth-service only.
pub async fn publish_session(
    bus: &Bus,
    session_id: &str,
    user_id: &UserId,
    lifetime: Duration,
) -> Result<(), BusError> {
    let mut connection = bus.connection();
    let millis = u64::try_from(lifetime.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let _: () = bounded(
        redis::cmd("SET")
            .arg(bus.names().session(session_id))
            .arg(user_id.as_str())
            .arg("PX")
            .arg(millis)
            .query_async(&mut connection),
    )
    .await?;
    Ok(())
}

/// The user whose open session `token` is, or `None` if it is unknown,
/// expired or logged out.
pub async fn session_user(bus: &Bus, token: &str) -> Result<Option<UserId>, BusError> {
    let session_id = session_id_of(token);
    let mut connection = bus.connection();
    let (user, revoked): (Option<String>, Option<String>) = bounded(
        redis::cmd("MGET")
            .arg(bus.names().session(&session_id))
            .arg(bus.names().revoked_session(&session_id))
            .query_async(&mut connection),
    )
    .await?;
    Ok(user.filter(|_| revoked.is_none()).map(UserId::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_id_is_the_hex_sha256_of_its_token() {
        assert_eq!(
            session_id_of("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
