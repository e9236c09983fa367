//! Preprocessing shared by the trainer, the predictor and the page: caption bytes → text,
//! text → token ids, image bytes → normalised CHW floats. Nothing here touches the file system
//! or builds tensors; the settings come from the model's config.

use std::borrow::Cow;
use std::io::Cursor;

use image::imageops::{self, FilterType};
use image::{
    DynamicImage, GenericImageView, GrayImage, ImageBuffer, ImageFormat, ImageReader, Pixel,
    RgbImage,
};
use jpeg_decoder::{CodingProcess, PixelFormat};
use tokenizers::Tokenizer;

use crate::config::{ImagePreprocessing, TextBranchConfig, TextPreprocessing};
use crate::error::{Error, Result};

// ---------------------------------------------------------------------------------------------
// Captions

/// Decode a caption from raw bytes, the way the tweets were written: UTF-8 if the whole caption
/// is valid UTF-8; else GBK (the Chinese Windows code page, which is what the data set's other
/// captions are: `A1 B0` is "“", `A1 AD` is "…") if it is valid GBK; else valid UTF-8 runs as
/// they are with every invalid byte read as Windows-1252 (a superset of Latin-1's printable
/// characters). A byte-order mark and surrounding whitespace are dropped.
pub fn decode_caption(bytes: &[u8]) -> String {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => match encoding_rs::GBK.decode_without_bom_handling_and_without_replacement(bytes)
        {
            Some(text) => text.into_owned(),
            None => utf8_or_windows_1252(bytes),
        },
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    text.trim().to_owned()
}

/// Valid UTF-8 runs kept (emoji included), each invalid byte read as Windows-1252.
fn utf8_or_windows_1252(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            let (latin, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(chunk.invalid());
            text.push_str(&latin);
        }
    }
    text
}

/// Emoji spelled out as their names, between spaces ("so sad 😭" → "so sad  loudly crying face
/// "; skin tones left out): MiniLM's vocabulary has next to no emoji, so otherwise "😭💔" and
/// "👍" are the same `[UNK]`. The longest emoji sequence at each place wins (flags, families
/// and skin tones are several code points).
pub fn spell_emoji(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        match (!c.is_ascii()).then(|| longest_emoji(rest)).flatten() {
            Some((emoji, len)) => {
                // A toned emoji is named as its untoned form ("thumbs up: medium skin tone"
                // → "thumbs up"); other qualifiers stay ("person: blond hair").
                let untoned = emoji.with_skin_tone(emojis::SkinTone::Default);
                let name = untoned.unwrap_or(emoji).name();
                out.push(' ');
                out.push_str(name);
                out.push(' ');
                rest = &rest[len..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    Cow::Owned(out)
}

/// A caption as the tokenizer (also the one being learned) sees it, per the config.
pub fn normalise<'a>(settings: &TextPreprocessing, caption: &'a str) -> Cow<'a, str> {
    match settings.emoji_names {
        true => spell_emoji(caption),
        false => Cow::Borrowed(caption),
    }
}

/// The longest emoji at the start of `s` (sequences are at most 10 code points) and its length
/// in bytes.
fn longest_emoji(s: &str) -> Option<(&'static emojis::Emoji, usize)> {
    let ends = s.char_indices().map(|(i, _)| i).skip(1).chain([s.len()]);
    ends.take(10)
        .filter_map(|end| emojis::get(&s[..end]).map(|emoji| (emoji, end)))
        .last()
}

// ---------------------------------------------------------------------------------------------
// Images

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

// ---------------------------------------------------------------------------------------------
// Text

/// Token ids of one caption, at its own length (at most `max_len`); batches pad them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<u32>,
}

impl Tokens {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Token ids and their 1/0 mask for a batch, row-major `[batch, width]`: what the model's token
/// tensors are built from.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRows {
    pub ids: Vec<i64>,
    pub mask: Vec<f32>,
    pub shape: [usize; 2],
}

/// Caption lengths a GPU backend pads batches to. Its kernels are compiled (and tuned) per
/// shape, so padding every caption to one of these few lengths means a warm-up over them
/// leaves nothing to compile for any later caption; padding is masked, so the answer is the
/// same. The CPU backend compiles nothing and pads only to the batch's longest caption.
pub const LENGTH_BUCKETS: [usize; 4] = [16, 32, 64, 128];

/// The caption tokenizer: a `tokenizer.json` (normaliser, pre-tokeniser, vocabulary) plus the
/// config's length and padding settings.
#[derive(Clone)]
pub struct TextPreprocessor {
    tokenizer: Tokenizer,
    config: TextBranchConfig,
    /// Pad batches to the next of [`LENGTH_BUCKETS`] instead of the longest caption.
    bucketed: bool,
}

impl TextPreprocessor {
    pub fn from_json(tokenizer_json: &[u8], config: TextBranchConfig) -> Result<Self> {
        let tokenizer =
            Tokenizer::from_bytes(tokenizer_json).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Self::new(tokenizer, config)
    }

    pub fn new(mut tokenizer: Tokenizer, config: TextBranchConfig) -> Result<Self> {
        if config.pretrained() {
            // A pretrained tokenizer.json may carry its own truncation and padding (MiniLM's pads
            // every caption to 128): the config decides both, and truncation goes through the
            // tokenizer so `[SEP]` survives it.
            tokenizer
                .with_truncation(Some(tokenizers::TruncationParams {
                    max_length: config.preprocess.max_len,
                    ..Default::default()
                }))
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
            tokenizer.with_padding(None);
        }
        let vocab = tokenizer.get_vocab_size(true);
        if vocab != config.vocab_size() {
            return Err(Error::Tokenizer(format!(
                "tokenizer has {vocab} tokens, the config expects {}",
                config.vocab_size()
            )));
        }
        Ok(Self {
            tokenizer,
            config,
            bucketed: false,
        })
    }

    /// Pad batches to the next of [`LENGTH_BUCKETS`] (for a GPU backend; see there).
    pub fn pad_to_buckets(&mut self, bucketed: bool) {
        self.bucketed = bucketed;
    }

    /// Every width a batch of captions can be padded to: the buckets up to `max_len` (and
    /// `max_len` itself) when bucketed, the single `max_len` of the LSTM, or `None` when a
    /// transformer pads to the longest caption (any width).
    pub fn widths(&self) -> Option<Vec<usize>> {
        let max_len = self.config.preprocess.max_len;
        if !self.config.pretrained() {
            return Some(vec![max_len]);
        }
        self.bucketed.then(|| {
            let mut widths: Vec<usize> = LENGTH_BUCKETS
                .iter()
                .copied()
                .filter(|&w| w < max_len)
                .collect();
            widths.push(max_len);
            widths
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Check a caption the way the page and the CLI must: non-empty, not absurdly long.
    pub fn validate(&self, caption: &str) -> Result<()> {
        if caption.trim().is_empty() {
            return Err(Error::EmptyCaption);
        }
        let limit = self.config.preprocess.max_bytes;
        if caption.len() > limit {
            return Err(Error::CaptionTooLong {
                len: caption.len(),
                limit,
            });
        }
        Ok(())
    }

    /// The caption as the tokenizer sees it (emoji spelled out where the config says so).
    pub fn normalise<'a>(&self, caption: &'a str) -> Cow<'a, str> {
        normalise(&self.config.preprocess, caption)
    }

    /// Token ids, truncated to `max_len`. An empty caption (a tweet that was only whitespace)
    /// gives no tokens; batches pad it and the model's pooling copes with that.
    pub fn encode(&self, caption: &str) -> Result<Tokens> {
        let caption = self.normalise(caption);
        let encoding = self
            .tokenizer
            .encode(caption.as_ref(), self.config.pretrained())
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut ids: Vec<u32> = encoding.get_ids().to_vec();
        ids.truncate(self.config.preprocess.max_len);
        Ok(Tokens { ids })
    }

    /// Stack captions into `[batch, width]` ids and mask, padded with `pad_id`. The LSTM
    /// always reads `max_len` steps; a transformer only the batch's longest caption, or the
    /// bucket above it (padding is masked out of attention and pooling, so shorter captions
    /// give the same result).
    pub fn rows(&self, tokens: &[&Tokens]) -> TokenRows {
        let settings = &self.config.preprocess;
        let batch = tokens.len();
        let longest = tokens.iter().map(|t| t.len()).max().unwrap_or(0).max(1);
        let width = match self.widths() {
            Some(widths) => widths
                .into_iter()
                .find(|&w| w >= longest)
                .unwrap_or(settings.max_len),
            None => longest,
        };
        let mut ids = Vec::with_capacity(batch * width);
        let mut mask = Vec::with_capacity(batch * width);
        for t in tokens {
            let real = t.len().min(width);
            ids.extend(t.ids[..real].iter().map(|&id| id as i64));
            ids.extend(std::iter::repeat_n(settings.pad_id as i64, width - real));
            mask.extend((0..width).map(|i| if i < real { 1.0f32 } else { 0.0 }));
        }
        TokenRows {
            ids,
            mask,
            shape: [batch, width],
        }
    }

    /// A lone padding token: what a caption with every word hidden reads as (an empty row
    /// would have nothing to pool).
    pub fn padding(&self) -> Tokens {
        Tokens {
            ids: vec![self.config.preprocess.pad_id],
        }
    }

    /// Ids back to text, for inspection and the round-trip test.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }
}

#[cfg(test)]
mod tests;
