//! Frames this server writes, encoded once.
//!
//! A server's frames are not masked (RFC 6455, 5.1), so a frame's bytes are
//! the same for every connection it goes to: a group event is encoded once
//! and the same buffer is written to each member's socket. The header is the
//! WebSocket library's; only the payload is put after it here.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// A close frame's payload is at most 125 bytes: the code and the reason.
const MAX_CLOSE_REASON: usize = 123;

/// One complete WebSocket frame, ready to be written to any connection.
#[derive(Debug, Clone)]
pub struct Frame {
    bytes: Bytes,
    is_close: bool,
}

impl Frame {
    /// A text frame carrying `text` whole.
    pub fn text(text: &str) -> Frame {
        Frame {
            bytes: encode(OpCode::Data(Data::Text), &[text.as_bytes()]),
            is_close: false,
        }
    }

    /// A close frame with a status code and a reason, cut to fit (on a
    /// character boundary: the reason must stay valid UTF-8).
    pub fn close(code: u16, reason: &str) -> Frame {
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Frame {
            bytes: encode(
                OpCode::Control(Control::Close),
                &[&code.to_be_bytes(), &reason.as_bytes()[..end]],
            ),
            is_close: true,
        }
    }

    /// Bytes already framed elsewhere (the WebSocket library's own answers
    /// to pings and closes), passed on as they are.
    pub fn framed(bytes: Bytes) -> Frame {
        Frame {
            bytes,
            is_close: false,
        }
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Nothing may follow a close frame on its connection.
    pub fn is_close(&self) -> bool {
        self.is_close
    }
}

/// One final frame of `opcode` carrying `parts`, one after the other.
fn encode(opcode: OpCode, parts: &[&[u8]]) -> Bytes {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let length: usize = parts.iter().map(|part| part.len()).sum();
    let mut bytes = Vec::with_capacity(header.len(length as u64) + length);
    header
        .format(length as u64, &mut bytes)
        .expect("writing to a Vec cannot fail");
    for part in parts {
        bytes.extend_from_slice(part);
    }
    Bytes::from(bytes)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use tokio_tungstenite::tungstenite::error::ProtocolError;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket, frame::coding::CloseCode};
    use tokio_tungstenite::tungstenite::{Error, Message};

    use super::*;

    /// Reads `frames` the way a client does, with the WebSocket library the
    /// clients of this project use.
    fn read_as_client(frames: &[Frame]) -> Vec<Message> {
        let wire: Vec<u8> = frames.iter().flat_map(|f| f.bytes().to_vec()).collect();
        let mut client = WebSocket::from_raw_socket(Cursor::new(wire), Role::Client, None);
        let mut messages = Vec::new();
        loop {
            match client.read() {
                Ok(message) => messages.push(message),
                // The end of the bytes.
                Err(
                    Error::ConnectionClosed
                    | Error::AlreadyClosed
                    | Error::Protocol(ProtocolError::ResetWithoutClosingHandshake),
                ) => return messages,
                Err(err) => panic!("a client could not read our frames: {err}"),
            }
        }
    }

    #[test]
    fn text_frames_of_every_length_class_read_back_whole() {
        let short = "{\"rocketStatus\":\"OK\"}".to_owned();
        let medium = "m".repeat(126);
        let long = "é".repeat(40_000);
        let messages = read_as_client(&[
            Frame::text(""),
            Frame::text(&short),
            Frame::text(&medium),
            Frame::text(&long),
        ]);
        let texts: Vec<String> = messages
            .iter()
            .map(|m| m.to_text().expect("text").to_owned())
            .collect();
        assert_eq!(texts, ["".to_owned(), short, medium, long]);
    }

    #[test]
    fn a_close_frame_carries_its_code_and_a_reason_cut_to_fit() {
        let reason = "ü".repeat(100);
        let close = Frame::close(1012, &reason);
        assert!(close.is_close());
        let messages = read_as_client(&[close]);
        let Some(Message::Close(Some(frame))) = messages.first() else {
            panic!("expected a close frame, got {messages:?}");
        };
        assert_eq!(frame.code, CloseCode::Restart);
        assert!(reason.starts_with(frame.reason.as_str()));
        assert!(frame.reason.len() <= MAX_CLOSE_REASON);
        assert!(!frame.reason.is_empty());
    }
}
