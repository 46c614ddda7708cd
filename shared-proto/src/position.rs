//! Where a pushed event stands, so a client that was away can ask for what
//! came after it (`SYNC`, docs/protocol.md).
//!
//! Every kept event gets an [`EventId`] from one clock shared by every user
//! and group history, so ids from different histories still order the
//! events the way they were published. An [`Epoch`] names the life of the
//! histories: if Redis loses them, the epoch changes and an old position no
//! longer claims that nothing was missed.

use std::fmt;
use std::str::FromStr;

/// The id Redis gave an event on the shared event clock: `<ms>-<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventId {
    pub ms: u64,
    pub seq: u64,
}

impl EventId {
    pub const ZERO: EventId = EventId { ms: 0, seq: 0 };
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EventId {
    type Err = BadPosition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (ms, seq) = text.split_once('-').ok_or(BadPosition)?;
        Ok(EventId {
            ms: ms.parse().map_err(|_| BadPosition)?,
            seq: seq.parse().map_err(|_| BadPosition)?,
        })
    }
}

/// The life of the event histories, set when the first event after a loss
/// of Redis's data is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Epoch(String);

impl Epoch {
    /// An epoch as Redis holds it: digits only.
    pub fn new(text: &str) -> Result<Epoch, BadPosition> {
        let valid =
            !text.is_empty() && text.len() <= 32 && text.bytes().all(|b| b.is_ascii_digit());
        valid.then(|| Epoch(text.to_owned())).ok_or(BadPosition)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client's place in its stream of events: `<epoch>:<ms>-<seq>`. Opaque
/// to clients, who only hand it back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    pub epoch: Epoch,
    pub id: EventId,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch.0, self.id)
    }
}

impl FromStr for Position {
    type Err = BadPosition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (epoch, id) = text.split_once(':').ok_or(BadPosition)?;
        Ok(Position {
            epoch: Epoch::new(epoch)?,
            id: id.parse()?,
        })
    }
}

/// A string that is not a position this server handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a position this server handed out")]
pub struct BadPosition;

/// A bus message published with its position: `<position> <json>`. JSON
/// never starts with a digit, so an unpositioned message (plain JSON) is told
/// apart by its first byte.
pub fn split_positioned(payload: &[u8]) -> (Option<Position>, &[u8]) {
    if !payload.first().is_some_and(u8::is_ascii_digit) {
        return (None, payload);
    }
    let Some(space) = payload.iter().position(|b| *b == b' ') else {
        return (None, payload);
    };
    let position = std::str::from_utf8(&payload[..space])
        .ok()
        .and_then(|text| text.parse().ok());
    (position, &payload[space + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_reads_back_as_written() {
        let position: Position = "1733491200123456:1733491200999-7".parse().expect("valid");
        assert_eq!(
            position.id,
            EventId {
                ms: 1733491200999,
                seq: 7
            }
        );
        assert_eq!(position.to_string(), "1733491200123456:1733491200999-7");
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in ["", "abc", "1:2", "1:a-2", "x:1-2", ":1-2", "1:1-2-3", "1-2"] {
            assert_eq!(bad.parse::<Position>(), Err(BadPosition), "{bad:?}");
        }
    }

    #[test]
    fn ids_order_by_time_then_sequence() {
        let a = EventId { ms: 5, seq: 9 };
        let b = EventId { ms: 6, seq: 0 };
        assert!(a < b);
        assert!(EventId { ms: 6, seq: 1 } > b);
    }

    #[test]
    fn a_positioned_message_is_split_from_its_json() {
        let (position, json) = split_positioned(b"17:5-1 {\"kind\":\"event\"}");
        assert_eq!(position.map(|p| p.to_string()).as_deref(), Some("17:5-1"));
        assert_eq!(json, b"{\"kind\":\"event\"}");
        let (position, json) = split_positioned(b"{\"kind\":\"reply\"}");
        assert_eq!(position, None);
        assert_eq!(json, b"{\"kind\":\"reply\"}");
    }
}
