//! What an upload is, decided from its first bytes: never from its name or
//! the type the client declared, which anyone can set to anything.
//!
//! Pictures are the four formats browsers show everywhere and the thumbnailer
//! decodes: PNG, JPEG, GIF and WebP. Everything else, SVG included (it can
//! carry script), is a file, served for download.

use image::ImageFormat;

/// How many bytes are looked at: enough for every signature `infer` knows.
pub const HEAD_BYTES: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Picture(ImageFormat),
    File(&'static str),
}

impl Sniffed {
    pub fn content_type(self) -> &'static str {
        match self {
            Sniffed::Picture(format) => format.to_mime_type(),
            Sniffed::File(mime) => mime,
        }
    }
}

/// What the first bytes of an upload say it is.
pub fn sniff(head: &[u8]) -> Sniffed {
    match image::guess_format(head) {
        Ok(
            format @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP),
        ) => Sniffed::Picture(format),
        _ => Sniffed::File(
            infer::get(head)
                .map(|kind| kind.mime_type())
                // Types a browser would render are never served as such.
                .filter(|mime| !is_active_content(mime))
                .unwrap_or("application/octet-stream"),
        ),
    }
}

/// True if the client presents the upload as a picture, by its name or its
/// declared type: then bytes that are not one are refused rather than kept
/// as a file the sender did not mean to send.
pub fn claims_picture(name: &str, declared: Option<&str>) -> bool {
    let extension = name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    let by_name = matches!(extension.as_str(), "png" | "jpg" | "jpeg" | "gif" | "webp");
    let by_type = declared
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .is_some_and(|t| {
            matches!(
                t.as_str(),
                "image/png" | "image/jpeg" | "image/gif" | "image/webp"
            )
        });
    by_name || by_type
}

fn is_active_content(mime: &str) -> bool {
    mime.starts_with("text/")
        || mime.contains("html")
        || mime.contains("xml")
        || mime.contains("javascript")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_HEAD: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn pictures_are_known_by_their_bytes_whatever_their_name() {
        assert_eq!(sniff(PNG_HEAD), Sniffed::Picture(ImageFormat::Png));
        assert_eq!(
            sniff(b"\xff\xd8\xff\xe0\0\x10JFIF"),
            Sniffed::Picture(ImageFormat::Jpeg)
        );
        assert_eq!(
            sniff(b"GIF89a\x01\0\x01\0"),
            Sniffed::Picture(ImageFormat::Gif)
        );
        assert_eq!(
            sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Sniffed::Picture(ImageFormat::WebP)
        );
    }

    #[test]
    fn an_executable_or_an_svg_is_a_file() {
        assert_eq!(
            sniff(b"MZ\x90\0\x03\0\0\0\x04\0\0\0").content_type(),
            "application/vnd.microsoft.portable-executable"
        );
        assert!(matches!(
            sniff(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0"),
            Sniffed::File(_)
        ));
        let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>";
        assert!(matches!(sniff(svg), Sniffed::File(_)));
        assert_eq!(sniff(svg).content_type(), "application/octet-stream");
        assert_eq!(sniff(b"%PDF-1.7\n").content_type(), "application/pdf");
    }

    #[test]
    fn a_picture_is_claimed_by_name_or_declared_type() {
        assert!(claims_picture("photo.PNG", None));
        assert!(claims_picture("x", Some("image/jpeg; q=1")));
        assert!(!claims_picture("drawing.svg", Some("image/svg+xml")));
        assert!(!claims_picture(
            "notes.txt",
            Some("application/octet-stream")
        ));
    }
}
