//! Picture bytes → normalised CHW floats: format sniffing, bounded decoding (large JPEGs
//! reduced in the DCT domain), the centre square the model sees.

use std::io::Cursor;

use image::imageops::{self, FilterType};
use image::{
    DynamicImage, GenericImageView, GrayImage, ImageBuffer, ImageFormat, ImageReader, Pixel,
    RgbImage,
};
use jpeg_decoder::{CodingProcess, PixelFormat};

use crate::config::ImagePreprocessing;
use crate::error::{Error, Result};

/// The largest picture file read: more than any camera's JPEG of `max_side`, and every byte
/// of it sits in the page's wasm memory while it is decoded.
pub const MAX_FILE_BYTES: usize = 32 << 20;

/// Most memory a picture decoded at full size may take (PNG, WebP, GIF, and JPEGs too small
/// to decode reduced): 40 MiB is 3,600 x 3,600 px as RGBA.
pub const MAX_DECODED_BYTES: u64 = 40 << 20;

/// The most pixels of a progressive JPEG: its decoder keeps every DCT coefficient (two bytes a
/// sample, up to three samples a pixel) until the last scan, whatever the output size.
pub const MAX_PROGRESSIVE_PIXELS: u64 = 10_000_000;

/// The picture formats the image crate is built with here, in plain words.
pub const FORMATS: &str = "a JPEG, PNG, WebP or GIF picture";

fn reader(bytes: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>> {
    ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(unreadable)
}

/// A decoder's error, said for a person: the file is damaged or cut short (what every decoding
/// error after a good header means), with the decoder's own words after it.
fn unreadable(e: impl std::fmt::Display) -> Error {
    // Some decoders end their message with a newline, which would break the sentence.
    let said = e.to_string();
    Error::Image(format!(
        "the picture is damaged or cut short and cannot be read (the decoder says: {})",
        said.trim_end()
    ))
}

const MB: f64 = (1 << 20) as f64;

/// Whether a JPEG's data is all there: its segments, walked from the start, reach an
/// end-of-image marker (FF D9) after a scan. A file cut short has none, and the decoders fill
/// the missing rows with grey without a word. Segments are skipped by their length (an EXIF
/// thumbnail's own markers inside one are never seen), entropy-coded data up to the next
/// marker (an FF there is followed by 00 or a restart marker), and whatever follows the end
/// (a motion photo's video, say) is not read. A structure this walk does not follow is left
/// to the decoder to judge. Every JPEG of the data set ends with its marker.
fn jpeg_complete(bytes: &[u8]) -> bool {
    let mut i = 2; // after the start-of-image marker, which the format sniffing found
    let mut scanned = false;
    while i + 1 < bytes.len() {
        if bytes[i] != 0xFF {
            if !scanned {
                return true; // not a marker where one must be: the decoder says what is wrong
            }
            i += 1; // entropy-coded data
            continue;
        }
        match bytes[i + 1] {
            0xFF => i += 1,                             // fill byte
            0x00 | 0xD0..=0xD7 | 0x01 | 0xD8 => i += 2, // stuffed byte, restart, standalone
            0xD9 => return scanned,
            marker => {
                let Some(length) = bytes.get(i + 2..i + 4) else {
                    return false; // cut inside a segment's header
                };
                let length = u16::from_be_bytes([length[0], length[1]]) as usize;
                if length < 2 {
                    return true;
                }
                scanned |= marker == 0xDA;
                i += 2 + length;
            }
        }
    }
    false
}

/// Over this float buffer, or this many pixels, `resize` cuts out the centre square before
/// resizing, and over this many pixels a JPEG is decoded reduced: the data set's pictures are
/// all far under both, so what training saw is what the page sees.
const RESIZE_BUFFER_BYTES: u64 = 16 << 20;
const EXACT_PIXELS: u64 = 4_000_000;

/// The centre square of a large picture at `side` x `side`: box-filtered to twice `side` first
/// where it is larger (cheap, and it allocates only its output), then the triangle filter.
fn centre_square<I>(image: &I, side: u32) -> ImageBuffer<I::Pixel, Vec<u8>>
where
    I: GenericImageView,
    I::Pixel: Pixel<Subpixel = u8> + 'static,
{
    let (width, height) = image.dimensions();
    let short = width.min(height);
    let square = imageops::crop_imm(
        image,
        (width - short) / 2,
        (height - short) / 2,
        short,
        short,
    );
    if short > 2 * side {
        let half = imageops::thumbnail(&*square, 2 * side, 2 * side);
        imageops::resize(&half, side, side, FilterType::Triangle)
    } else {
        imageops::resize(&*square, side, side, FilterType::Triangle)
    }
}

/// Decodes, resizes and normalises pictures the way the model's config says.
#[derive(Clone, Debug)]
pub struct ImagePreprocessor {
    config: ImagePreprocessing,
}

impl ImagePreprocessor {
    pub fn new(config: ImagePreprocessing) -> Self {
        Self { config }
    }

    pub fn config(&self) -> &ImagePreprocessing {
        &self.config
    }

    /// The picture's width and height from its header, without decoding it: an error in plain
    /// words for a file that is no picture of a known format, is over `MAX_FILE_BYTES`, has no
    /// pixels or is over `max_side`.
    pub fn dimensions(&self, bytes: &[u8]) -> Result<(u32, u32)> {
        self.probe(bytes).map(|(_, width, height)| (width, height))
    }

    fn probe(&self, bytes: &[u8]) -> Result<(ImageFormat, u32, u32)> {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(Error::Image(format!(
                "the file is {:.1} MB; pictures up to {} MB are read",
                bytes.len() as f64 / MB,
                MAX_FILE_BYTES >> 20
            )));
        }
        let probe = reader(bytes)?;
        let Some(format) = probe.format() else {
            return Err(Error::Image(format!(
                "not a picture this page can read; use {FORMATS}"
            )));
        };
        if format == ImageFormat::Jpeg && !jpeg_complete(bytes) {
            return Err(Error::Image(
                "the JPEG is cut short: it stops before its end-of-image marker (a download \
                 or copy that did not finish), so part of the picture is missing"
                    .into(),
            ));
        }
        let (width, height) = probe.into_dimensions().map_err(unreadable)?;
        let limit = self.config.max_side;
        if width > limit || height > limit {
            return Err(Error::ImageTooLarge {
                width,
                height,
                limit,
            });
        }
        if width == 0 || height == 0 {
            return Err(Error::Image("the picture has no pixels".into()));
        }
        Ok((format, width, height))
    }

    /// Decode the picture (the first frame of an animation) within a memory bound: a large
    /// JPEG is decoded reduced (see `jpeg_reduced`), anything else refused before it is
    /// allocated if it needs more than `MAX_DECODED_BYTES`. Use `dimensions` for the picture's
    /// own size.
    pub fn decode(&self, bytes: &[u8]) -> Result<DynamicImage> {
        let (format, width, height) = self.probe(bytes)?;
        if format == ImageFormat::Jpeg
            && let Some(image) = self.jpeg_reduced(bytes, width, height)?
        {
            return Ok(image);
        }
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(MAX_DECODED_BYTES);
        let mut decoder = reader(bytes)?;
        decoder.limits(limits);
        let image = decoder.decode().map_err(|e| match e {
            image::ImageError::Limits(_) => Error::Image(format!(
                "{width}x{height} px needs more than {} MB to decode; use a smaller picture \
                 (or a JPEG, which is decoded reduced)",
                MAX_DECODED_BYTES >> 20
            )),
            e => unreadable(e),
        })?;
        Ok(image)
    }

    /// A JPEG decoded in the DCT domain at 1/8, 1/4 or 1/2 of its size (jpeg-decoder's scaled
    /// IDCT): the strongest reduction that keeps the short side at least twice `resize`, so
    /// the final resize still filters; an 8000 x 8000 photo decodes to 1000 x 1000 (3 MB, not
    /// 192 MB). `None` for pictures of up to `EXACT_PIXELS` (every picture of the data set, so
    /// training and the page see the same pixels), where no reduction applies, or for the
    /// rare CMYK and 16-bit JPEGs: the full decode then serves, under its bound. Progressive
    /// JPEGs over `MAX_PROGRESSIVE_PIXELS` are refused.
    fn jpeg_reduced(&self, bytes: &[u8], width: u32, height: u32) -> Result<Option<DynamicImage>> {
        let pixels = width as u64 * height as u64;
        let mut decoder = jpeg_decoder::Decoder::new(bytes);
        let info = match decoder.read_info() {
            Ok(()) => decoder.info(),
            Err(_) => None,
        };
        let Some(info) = info else {
            // Headers only the other decoder reads: it decodes what the bounds allow.
            return match pixels <= MAX_PROGRESSIVE_PIXELS {
                true => Ok(None),
                false => Err(unreadable("the JPEG headers are malformed")),
            };
        };
        if info.coding_process == CodingProcess::DctProgressive && pixels > MAX_PROGRESSIVE_PIXELS {
            return Err(Error::Image(format!(
                "{width}x{height} px is too many for a progressive JPEG (up to {} megapixels \
                 are read); save it as a baseline JPEG or smaller",
                MAX_PROGRESSIVE_PIXELS / 1_000_000
            )));
        }
        let keep = 2 * self.config.resize as u32;
        let short = width.min(height);
        let eighths = [1u32, 2, 4].into_iter().find(|k| short * k / 8 >= keep);
        let Some(eighths) = eighths.filter(|_| pixels > EXACT_PIXELS) else {
            return Ok(None);
        };
        if !matches!(info.pixel_format, PixelFormat::L8 | PixelFormat::RGB24) {
            return Ok(None);
        }
        let reduced = |side: u32| (side * eighths).div_ceil(8) as u16;
        let (w, h) = (decoder.scale(reduced(width), reduced(height))).map_err(unreadable)?;
        decoder.set_max_decoding_buffer_size(MAX_DECODED_BYTES as usize);
        let samples = decoder.decode().map_err(unreadable)?;
        let (w, h) = (w as u32, h as u32);
        let image = match info.pixel_format {
            PixelFormat::L8 => GrayImage::from_raw(w, h, samples).map(DynamicImage::ImageLuma8),
            _ => RgbImage::from_raw(w, h, samples).map(DynamicImage::ImageRgb8),
        };
        image
            .map(Some)
            .ok_or_else(|| unreadable("fewer pixels than the header says"))
    }

    /// Where the centre square the model sees lies in a `width` x `height` picture: x, y,
    /// width, height as fractions of the picture's (resize to fill, then the centre crop).
    pub fn crop_fraction(&self, width: u32, height: u32) -> [f32; 4] {
        let kept = self.config.size as f32 / self.config.resize as f32;
        let short = width.min(height) as f32;
        let (w, h) = (kept * short / width as f32, kept * short / height as f32);
        [(1.0 - w) / 2.0, (1.0 - h) / 2.0, w, h]
    }

    /// Resize to fill a `resize`² square and centre-crop: the stored form training crops from.
    pub fn resize(&self, image: DynamicImage) -> RgbImage {
        let side = self.config.resize as u32;
        let (width, height) = image.dimensions();
        // The image crate's resize first fills a float buffer of width x new height (16 bytes
        // a pixel), and works on RGB copies: for a picture too long or too large for that,
        // the centre square is cut out first and only the small result is converted.
        let scale = side as f64 / width.min(height) as f64;
        let buffer = width as u64 * (height as f64 * scale).ceil() as u64 * 16;
        if buffer <= RESIZE_BUFFER_BYTES && width as u64 * height as u64 <= EXACT_PIXELS {
            // Every picture of the data set: exactly what the shipped models were trained on.
            let rgb = DynamicImage::ImageRgb8(image.into_rgb8());
            return rgb
                .resize_to_fill(side, side, FilterType::Triangle)
                .into_rgb8();
        }
        match image {
            DynamicImage::ImageRgb8(rgb) => centre_square(&rgb, side),
            other => DynamicImage::ImageRgba8(centre_square(&other, side)).into_rgb8(),
        }
    }

    /// `decode` then `resize`.
    pub fn load(&self, bytes: &[u8]) -> Result<RgbImage> {
        Ok(self.resize(self.decode(bytes)?))
    }

    /// The `size`² crop at (`left`, `top`) of a stored image, optionally mirrored, as normalised
    /// CHW floats.
    pub fn crop(&self, stored: &RgbImage, left: usize, top: usize, flip: bool) -> Vec<f32> {
        let size = self.config.size;
        let (mean, std) = (self.config.mean, self.config.std);
        let mut out = vec![0.0; 3 * size * size];
        for y in 0..size {
            for x in 0..size {
                let sx = if flip { left + size - 1 - x } else { left + x };
                let pixel = stored.get_pixel(sx as u32, (top + y) as u32);
                for c in 0..3 {
                    out[c * size * size + y * size + x] =
                        (pixel[c] as f32 / 255.0 - mean[c]) / std[c];
                }
            }
        }
        out
    }

    /// How far a training crop may move from the corner: `resize - size`.
    pub fn margin(&self) -> usize {
        self.config.resize - self.config.size
    }

    /// The centre crop: what inference (and validation) sees.
    pub fn center(&self, stored: &RgbImage) -> Vec<f32> {
        let margin = self.margin() / 2;
        self.crop(stored, margin, margin, false)
    }

    /// `load` then `center`: image bytes → model input.
    pub fn preprocess(&self, bytes: &[u8]) -> Result<Vec<f32>> {
        Ok(self.center(&self.load(bytes)?))
    }
}
