//! Files in messages: which uploads a `SEND_MESSAGE` may attach, and what a
//! message shows of each (with URLs signed for whoever reads it).
//!
//! Pictures go anywhere; other files only one-to-one, unless groups are
//! allowed them (`files.files_in_groups`). A file is attached by its
//! uploader, once: attaching writes the message's key into the file, and
//! from then on whoever may read the conversation may read the file.

use serde::Serialize;
use shared_proto::action::{ConversationId, UserId};
use shared_proto::bus::actions::ActionError;
use shared_proto::status::ErrorCode;

use crate::files::signing::UrlSigner;
use crate::input::bad_request;
use crate::service::unavailable;
use crate::store::files::{Attach, FileKind, FileStore};
use crate::store::{Attachment, Conversation};

/// Most files one message carries.
pub const MAX_ATTACHMENTS: usize = 10;

/// What the files may be, and where they may go.
pub struct AttachRules {
    pub to_group: bool,
    pub files_in_groups: bool,
}

/// Checks that `me` may attach `ids` and attaches them to the message
/// `message_key` of `conversation`; returns what the message keeps of them,
/// in the order given.
pub async fn attach(
    files: &FileStore,
    me: &UserId,
    ids: &[String],
    rules: &AttachRules,
    message_key: &str,
    conversation: &Conversation,
) -> Result<Vec<Attachment>, ActionError> {
    check_ids(ids)?;
    let found = files.files(ids).await.map_err(unavailable)?;
    let mut attachments = Vec::with_capacity(ids.len());
    for id in ids {
        let file = found
            .iter()
            .find(|f| f.id == *id && f.metadata.kind != FileKind::Thumbnail)
            .ok_or_else(|| bad_request(format!("No uploaded file has the id {id}.")))?;
        let meta = &file.metadata;
        if meta.uploader != *me {
            return Err(ActionError::refused(
                ErrorCode::Forbidden,
                format!(
                    "The file {id} was uploaded by someone else; only its uploader may attach it."
                ),
            ));
        }
        if meta
            .attached_to
            .as_deref()
            .is_some_and(|key| key != message_key)
        {
            return Err(bad_request(format!(
                "The file {id} is already in a message; upload it again to send it again."
            )));
        }
        if rules.to_group && !rules.files_in_groups && meta.kind != FileKind::Picture {
            return Err(ActionError::refused(
                ErrorCode::Forbidden,
                format!("The file {id} is not a picture; only pictures may be sent to groups."),
            ));
        }
        attachments.push(Attachment {
            id: file.id.clone(),
            kind: meta.kind.as_str().to_owned(),
            name: file.filename.clone(),
            size: file.length,
            content_type: meta.content_type.clone(),
            width: meta.width,
            height: meta.height,
        });
    }
    match files
        .attach(ids, me, message_key, &conversation.id)
        .await
        .map_err(unavailable)?
    {
        Attach::Done => Ok(attachments),
        Attach::Lost => Err(ActionError::refused(
            ErrorCode::Conflict,
            "One of the files was attached to another message meanwhile; upload it again to send it again.",
        )),
    }
}

fn check_ids(ids: &[String]) -> Result<(), ActionError> {
    if ids.len() > MAX_ATTACHMENTS {
        return Err(bad_request(format!(
            "A message carries at most {MAX_ATTACHMENTS} attachments."
        )));
    }
    for (i, id) in ids.iter().enumerate() {
        if !crate::files::access::valid_file_id(id) || id.contains('.') {
            return Err(bad_request(format!(
                "\"attachments[{i}]\" is not a file id."
            )));
        }
        if ids[..i].contains(id) {
            return Err(bad_request(format!("The file {id} is attached twice.")));
        }
    }
    Ok(())
}

/// One attachment as a message shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentView<'a> {
    pub file_id: &'a str,
    pub name: &'a str,
    pub size: i64,
    pub content_type: &'a str,
    pub kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    pub url: String,
    /// Pictures only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
}

/// Whom the URLs of a message are signed for: the user reading it, or, in
/// an event every member of a conversation receives, the conversation.
#[derive(Debug, Clone, Copy)]
pub enum Reader<'a> {
    User(&'a UserId),
    Conversation(&'a ConversationId),
}

impl Reader<'_> {
    fn scope(&self) -> &str {
        match self {
            Reader::User(user) => user.as_str(),
            Reader::Conversation(conversation) => conversation.as_str(),
        }
    }
}

/// The views of `attachments`, their URLs signed for `reader`.
pub fn views<'a>(
    attachments: &'a [Attachment],
    signer: &UrlSigner,
    reader: Reader<'_>,
) -> Vec<AttachmentView<'a>> {
    attachments
        .iter()
        .map(|a| {
            let path = format!("/files/{}", a.id);
            let thumbnail_url = (a.kind == FileKind::Picture.as_str())
                .then(|| signer.sign(&format!("{path}/thumbnail"), reader.scope()));
            AttachmentView {
                file_id: &a.id,
                name: &a.name,
                size: a.size,
                content_type: &a.content_type,
                kind: &a.kind,
                width: a.width,
                height: a.height,
                url: signer.sign(&path, reader.scope()),
                thumbnail_url,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn attachment(id: &str, kind: FileKind) -> Attachment {
        Attachment {
            id: id.into(),
            kind: kind.as_str().into(),
            name: "a.png".into(),
            size: 10,
            content_type: "image/png".into(),
            width: (kind == FileKind::Picture).then_some(4),
            height: (kind == FileKind::Picture).then_some(3),
        }
    }

    #[test]
    fn a_picture_shows_its_size_and_thumbnail_and_a_file_neither() {
        let signer = UrlSigner::new(b"k", Duration::from_secs(60));
        let me = UserId::new("u1");
        let stored = [
            attachment("p1", FileKind::Picture),
            attachment("f1", FileKind::File),
        ];
        let views = serde_json::to_value(views(&stored, &signer, Reader::User(&me))).expect("json");
        let picture = &views[0];
        let keys: Vec<&str> = picture
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "fileId",
                "name",
                "size",
                "contentType",
                "kind",
                "width",
                "height",
                "url",
                "thumbnailUrl"
            ]
        );
        let url = picture["url"].as_str().expect("a url");
        assert!(url.starts_with("/files/p1?for=u1&exp="), "{url}");
        let thumbnail = picture["thumbnailUrl"].as_str().expect("a thumbnail url");
        assert!(
            thumbnail.starts_with("/files/p1/thumbnail?for=u1&"),
            "{thumbnail}"
        );
        let file = views[1].as_object().expect("an object");
        for absent in ["width", "height", "thumbnailUrl"] {
            assert!(!file.contains_key(absent), "{absent} in {file:?}");
        }
    }

    #[test]
    fn a_group_event_is_signed_for_its_conversation() {
        let signer = UrlSigner::new(b"k", Duration::from_secs(60));
        let conversation = ConversationId::new("g:abc");
        let stored = [attachment("p1", FileKind::Picture)];
        let views = views(&stored, &signer, Reader::Conversation(&conversation));
        assert!(views[0].url.contains("for=g%3Aabc&"), "{}", views[0].url);
    }

    #[test]
    fn ids_are_checked_before_any_lookup() {
        assert!(check_ids(&vec!["a".to_owned(); 11]).is_err());
        assert!(check_ids(&["a".to_owned(), "a".to_owned()]).is_err());
        assert!(check_ids(&["p1.thumbnail".to_owned()]).is_err());
        assert!(check_ids(&["bad id".to_owned()]).is_err());
        assert!(check_ids(&["0192f4c1-7a2e".to_owned()]).is_ok());
    }
}
