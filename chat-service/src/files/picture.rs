//! A picture's size and thumbnail, decoded within bounds.
//!
//! The dimensions are read from the header first, and a picture of more
//! than the allowed pixels is refused before a single pixel is decoded: a
//! few kilobytes of PNG can announce 50,000 × 50,000 pixels, ten gigabytes
//! once decoded. The decoder is given the same bound as an allocation limit.
//! The thumbnail is drawn from the decoded pixels and encoded anew, so
//! nothing of the original's metadata (camera, location) reaches it.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};

/// What a picture turned out to be.
#[derive(Debug, Clone)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub thumbnail: Vec<u8>,
    pub thumbnail_type: &'static str,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PictureError {
    #[error("The picture is {width} × {height} pixels; at most {max} pixels are accepted.")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    #[error("The file is not a picture that can be read.")]
    Unreadable,
}

/// Bytes decoded per pixel at most (RGBA, 8 bits a channel), with room for
/// the decoder's own buffers.
const BYTES_PER_PIXEL: u64 = 5;

/// Reads `bytes` as a `format` picture of at most `max_pixels` pixels and
/// draws its thumbnail, at most `side` pixels on its longer side (never
/// larger than the picture). CPU-bound: run it off the async threads.
pub fn inspect(
    bytes: &[u8],
    format: ImageFormat,
    max_pixels: u64,
    side: u32,
) -> Result<Picture, PictureError> {
    let (width, height) = reader(bytes, format, max_pixels)
        .into_dimensions()
        .map_err(|_| PictureError::Unreadable)?;
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(PictureError::TooManyPixels {
            width,
            height,
            max: max_pixels,
        });
    }
    let image = reader(bytes, format, max_pixels)
        .decode()
        .map_err(|_| PictureError::Unreadable)?;
    let small = if width > side || height > side {
        image.thumbnail(side, side)
    } else {
        image
    };
    let (thumbnail, thumbnail_type) = encode(small, format)?;
    Ok(Picture {
        width,
        height,
        thumbnail,
        thumbnail_type,
    })
}

fn reader(bytes: &[u8], format: ImageFormat, max_pixels: u64) -> ImageReader<Cursor<&[u8]>> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    let side = u32::try_from(max_pixels).unwrap_or(u32::MAX);
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    limits.max_alloc = Some(max_pixels.saturating_mul(BYTES_PER_PIXEL));
    reader.limits(limits);
    reader
}

/// Photographs stay JPEG; everything else becomes PNG, which keeps
/// transparency.
fn encode(
    image: DynamicImage,
    format: ImageFormat,
) -> Result<(Vec<u8>, &'static str), PictureError> {
    let mut out = Cursor::new(Vec::new());
    let written = if format == ImageFormat::Jpeg {
        DynamicImage::ImageRgb8(image.to_rgb8())
            .write_to(&mut out, ImageFormat::Jpeg)
            .map(|()| "image/jpeg")
    } else {
        DynamicImage::ImageRgba8(image.to_rgba8())
            .write_to(&mut out, ImageFormat::Png)
            .map(|()| "image/png")
    };
    let content_type = written.map_err(|_| PictureError::Unreadable)?;
    Ok((out.into_inner(), content_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        }));
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).expect("encode");
        out.into_inner()
    }

    #[test]
    fn a_thumbnail_fits_within_its_side_and_keeps_the_shape() {
        let picture = inspect(&png(800, 400), ImageFormat::Png, 40_000_000, 320).expect("picture");
        assert_eq!((picture.width, picture.height), (800, 400));
        let thumb = image::load_from_memory(&picture.thumbnail).expect("thumbnail decodes");
        assert_eq!((thumb.width(), thumb.height()), (320, 160));
        assert_eq!(picture.thumbnail_type, "image/png");
    }

    #[test]
    fn a_small_picture_is_not_enlarged() {
        let picture = inspect(&png(20, 10), ImageFormat::Png, 40_000_000, 320).expect("picture");
        let thumb = image::load_from_memory(&picture.thumbnail).expect("thumbnail decodes");
        assert_eq!((thumb.width(), thumb.height()), (20, 10));
    }

    #[test]
    fn too_many_pixels_are_refused_before_decoding() {
        let err = inspect(&png(100, 100), ImageFormat::Png, 9_999, 320).expect_err("too big");
        assert_eq!(
            err,
            PictureError::TooManyPixels {
                width: 100,
                height: 100,
                max: 9_999
            }
        );
    }

    #[test]
    fn bytes_that_only_start_like_a_picture_are_unreadable() {
        let mut bytes = png(50, 50);
        bytes.truncate(40);
        assert_eq!(
            inspect(&bytes, ImageFormat::Png, 40_000_000, 320).map(|_| ()),
            Err(PictureError::Unreadable)
        );
    }
}
