//! Preprocessing shared by the trainer, the predictor and the page: caption bytes → text,
//! text → token ids, image bytes → a normalised CHW tensor. Nothing here touches the file system.

use std::io::Cursor;

use image::{DynamicImage, ImageReader, RgbImage, imageops::FilterType};
use tokenizers::Tokenizer;

use crate::config::{ImageConfig, TextConfig};
use crate::error::{Error, Result};

// ---------------------------------------------------------------------------------------------
// Captions

/// Decode a caption from raw bytes without losing any of them: valid UTF-8 runs are kept as they
/// are (emoji included) and every invalid byte is read as Windows-1252, the usual culprit in
/// tweets (a superset of Latin-1 for printable characters). Surrounding whitespace is trimmed.
pub fn decode_caption(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            let (latin, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(chunk.invalid());
            text.push_str(&latin);
        }
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    text.trim().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Images

/// Most memory one decoded picture may take.
pub const MAX_DECODED_BYTES: u64 = 192 << 20;

/// Decodes, resizes and normalises pictures the way the model folder's config says.
#[derive(Clone, Debug)]
pub struct ImagePreprocessor {
    config: ImageConfig,
}

impl ImagePreprocessor {
    pub fn new(config: ImageConfig) -> Self {
        Self { config }
    }

    pub fn config(&self) -> &ImageConfig {
        &self.config
    }

    /// Decode JPEG or PNG bytes to RGB, refusing pictures over `max_side` before allocating them.
    pub fn decode(&self, bytes: &[u8]) -> Result<RgbImage> {
        let reader = || {
            ImageReader::new(Cursor::new(bytes))
                .with_guessed_format()
                .map_err(|e| Error::Image(e.to_string()))
        };
        let probe = reader()?;
        if probe.format().is_none() {
            return Err(Error::Image("unknown format; expected JPEG or PNG".into()));
        }
        let (width, height) = probe
            .into_dimensions()
            .map_err(|e| Error::Image(e.to_string()))?;
        let limit = self.config.max_side;
        if width > limit || height > limit {
            return Err(Error::ImageTooLarge {
                width,
                height,
                limit,
            });
        }
        if width == 0 || height == 0 {
            return Err(Error::Image("image has no pixels".into()));
        }
        // Refuse before allocating what a wasm page (4 GiB at most) cannot afford: a 10,000 x
        // 10,000 photo needs 300 MB as RGB.
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(MAX_DECODED_BYTES);
        let mut decoder = reader()?;
        decoder.limits(limits);
        let image = decoder.decode().map_err(|e| match e {
            image::ImageError::Limits(_) => Error::Image(format!(
                "{width}x{height} px needs more than {} MB to decode",
                MAX_DECODED_BYTES >> 20
            )),
            e => Error::Image(e.to_string()),
        })?;
        Ok(image.to_rgb8())
    }

    /// Resize to fill a `resize`² square and centre-crop: the stored form training crops from.
    pub fn resize(&self, image: RgbImage) -> RgbImage {
        let side = self.config.resize as u32;
        let mut image = DynamicImage::ImageRgb8(image);
        // A cheap first pass keeps huge photos from dominating the time; the final filter pass
        // still sees at least 4x the target resolution.
        if image.width().min(image.height()) > side * 8 {
            image = image.thumbnail(image.width() / 4, image.height() / 4);
        }
        image
            .resize_to_fill(side, side, FilterType::Triangle)
            .to_rgb8()
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

    /// The centre crop: what inference (and validation) sees.
    pub fn center(&self, stored: &RgbImage) -> Vec<f32> {
        let margin = (self.config.resize - self.config.size) / 2;
        self.crop(stored, margin, margin, false)
    }

    /// `load` then `center`: image bytes → model input.
    pub fn preprocess(&self, bytes: &[u8]) -> Result<Vec<f32>> {
        Ok(self.center(&self.load(bytes)?))
    }
}

// ---------------------------------------------------------------------------------------------
// Text

/// Token ids of one caption, padded to `max_len`, and how many of them are real.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    pub len: usize,
}

/// The caption tokenizer: a `tokenizer.json` (normaliser, pre-tokeniser, WordPiece vocabulary)
/// plus the config's length and padding settings.
#[derive(Clone)]
pub struct TextPreprocessor {
    tokenizer: Tokenizer,
    config: TextConfig,
}

impl TextPreprocessor {
    pub fn from_json(tokenizer_json: &[u8], config: TextConfig) -> Result<Self> {
        let tokenizer =
            Tokenizer::from_bytes(tokenizer_json).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Self::new(tokenizer, config)
    }

    pub fn new(mut tokenizer: Tokenizer, config: TextConfig) -> Result<Self> {
        if config.special_tokens() {
            // A pretrained tokenizer.json may carry its own truncation and padding (MiniLM's pads
            // every caption to 128): the config decides both, and truncation goes through the
            // tokenizer so `[SEP]` survives it.
            tokenizer
                .with_truncation(Some(tokenizers::TruncationParams {
                    max_length: config.max_len,
                    ..Default::default()
                }))
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
            tokenizer.with_padding(None);
        }
        let vocab = tokenizer.get_vocab_size(true);
        if vocab != config.vocab_size {
            return Err(Error::Tokenizer(format!(
                "tokenizer has {vocab} tokens, the config expects {}",
                config.vocab_size
            )));
        }
        Ok(Self { tokenizer, config })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Check a caption the way the page and the CLI must: non-empty, not absurdly long.
    pub fn validate(&self, caption: &str) -> Result<()> {
        if caption.trim().is_empty() {
            return Err(Error::EmptyCaption);
        }
        if caption.len() > self.config.max_bytes {
            return Err(Error::CaptionTooLong {
                len: caption.len(),
                limit: self.config.max_bytes,
            });
        }
        Ok(())
    }

    /// Token ids truncated and padded to `max_len`. An empty caption (a tweet that was only
    /// whitespace) gives all padding and `len` 0; the model's pooling copes with that.
    pub fn encode(&self, caption: &str) -> Result<Tokens> {
        let encoding = self
            .tokenizer
            .encode(caption, self.config.special_tokens())
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut ids: Vec<u32> = encoding.get_ids().to_vec();
        ids.truncate(self.config.max_len);
        let len = ids.len();
        ids.resize(self.config.max_len, self.config.pad_id);
        Ok(Tokens { ids, len })
    }

    /// Ids back to text, for inspection and the round-trip test.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }
}

/// Special tokens, in id order: padding, unknown, and the placeholders URLs and @mentions
/// become.
pub const PAD: &str = "[PAD]";
pub const UNK: &str = "[UNK]";
pub const URL: &str = "xxurl";
pub const USER: &str = "xxuser";

/// An untrained tweet tokenizer: NFKC → URLs and @mentions to placeholders → lower-case; split on
/// whitespace, punctuation (so `#hashtag` → `#`, `hashtag`) and around each emoji; WordPiece.
#[cfg(not(target_arch = "wasm32"))]
pub fn tweet_tokenizer() -> Tokenizer {
    use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
    use tokenizers::models::wordpiece::WordPiece;
    use tokenizers::normalizers::{Lowercase, NFKC, Replace, Sequence as Normalizers};
    use tokenizers::pre_tokenizers::{
        punctuation::Punctuation, sequence::Sequence as PreTokenizers, split::Split,
        split::SplitPattern, whitespace::WhitespaceSplit,
    };
    use tokenizers::{NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

    let replace = |pattern: &str, with: &str| -> NormalizerWrapper {
        Replace::new(
            tokenizers::normalizers::replace::ReplacePattern::Regex(pattern.into()),
            format!(" {with} "),
        )
        .expect("valid regex")
        .into()
    };
    let normalizer = Normalizers::new(vec![
        NFKC.into(),
        replace(r"(?i)\b(?:https?://|www\.)\S*", URL),
        replace(r"@\w+", USER),
        Lowercase.into(),
    ]);
    let pre_tokenizer = PreTokenizers::new(vec![
        PreTokenizerWrapper::WhitespaceSplit(WhitespaceSplit),
        Punctuation::new(SplitDelimiterBehavior::Isolated).into(),
        Split::new(
            SplitPattern::Regex(r"\p{Extended_Pictographic}".into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .expect("valid regex")
        .into(),
    ]);
    let model = WordPiece::builder()
        .unk_token(UNK.into())
        .build()
        .expect("valid wordpiece");
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(normalizer))
        .with_pre_tokenizer(Some(pre_tokenizer))
        .with_decoder(Some(WordPieceDecoder::default()));
    tokenizer
}

/// Learn a WordPiece vocabulary of at most `vocab_size` tokens from training captions.
///
/// The `tokenizers` trainer numbers the word-continuation pieces (`##e`, ...) in hash-map order,
/// which differs from run to run and changes how ties between equally frequent merges are broken.
/// Registering every continuation piece up front, in character order, makes the vocabulary a
/// function of the captions alone; the finished tokenizer keeps only the real special tokens.
#[cfg(not(target_arch = "wasm32"))]
pub fn train_tokenizer<'a>(
    captions: impl Iterator<Item = &'a str> + Send + Clone,
    vocab_size: usize,
) -> Result<Tokenizer> {
    use std::collections::BTreeSet;
    use tokenizers::models::TrainerWrapper;
    use tokenizers::models::wordpiece::WordPieceTrainer;
    use tokenizers::{AddedToken, NormalizedString, Normalizer};

    let specials = || -> Vec<AddedToken> {
        [PAD, UNK, URL, USER]
            .iter()
            .map(|t| AddedToken::from(t.to_string(), true))
            .collect()
    };
    let mut tokenizer = tweet_tokenizer();
    let normalizer = tokenizer
        .get_normalizer()
        .expect("tweet tokenizer normalises")
        .clone();
    let mut alphabet = BTreeSet::new();
    for caption in captions.clone() {
        let mut normalized = NormalizedString::from(caption);
        normalizer
            .normalize(&mut normalized)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        alphabet.extend(normalized.get().chars().filter(|c| !c.is_whitespace()));
    }
    let mut pieces = specials();
    pieces.extend(
        alphabet
            .iter()
            .map(|c| AddedToken::from(format!("##{c}"), true)),
    );
    let mut trainer: TrainerWrapper = WordPieceTrainer::builder()
        .vocab_size(vocab_size.max(pieces.len() + alphabet.len()))
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(pieces)
        .build()
        .into();
    tokenizer
        .train(&mut trainer, captions)
        .map_err(|e| Error::Tokenizer(e.to_string()))?;

    // Drop the continuation pieces from the added (special) tokens; they stay in the vocabulary.
    let mut json: serde_json::Value = serde_json::from_str(
        &tokenizer
            .to_string(false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?,
    )
    .map_err(|e| Error::Tokenizer(e.to_string()))?;
    if let Some(added) = json.get_mut("added_tokens").and_then(|a| a.as_array_mut()) {
        added.retain(|t| {
            t.get("content")
                .and_then(|c| c.as_str())
                .is_some_and(|c| [PAD, UNK, URL, USER].contains(&c))
        });
    }
    Tokenizer::from_bytes(json.to_string()).map_err(|e| Error::Tokenizer(e.to_string()))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn caption_decoding_keeps_every_byte() {
        // Valid UTF-8 with an emoji stays as it is.
        assert_eq!(decode_caption("Café 😀\r\n".as_bytes()), "Café 😀");
        // Latin-1 / Windows-1252 bytes: é (0xE9), the euro sign (0x80), curly quotes.
        let raw = b"caf\xe9 \x80 \x93quoted\x94";
        assert!(std::str::from_utf8(std::hint::black_box(raw)).is_err());
        assert_eq!(decode_caption(raw), "café € “quoted”");
        // A mix: valid UTF-8 emoji next to a stray Latin-1 byte keeps both.
        let mut mixed = "hi 😀 ".as_bytes().to_vec();
        mixed.push(0xfc); // ü
        assert_eq!(decode_caption(&mixed), "hi 😀 ü");
        assert_eq!(decode_caption(b"\xef\xbb\xbfbom"), "bom");
    }

    #[test]
    fn tokenizer_round_trip_maps_tweet_features() {
        let captions = [
            "I love #NYC http://t.co/abc @bob 😀",
            "love love love the city",
            "RT @alice: so sad today http://t.co/x",
            "happy happy day #love 😀😀",
            "nyc is #nyc",
        ];
        let tokenizer = train_tokenizer(captions.iter().copied(), 200).unwrap();
        let vocab = tokenizer.get_vocab_size(true);
        let config = TextConfig {
            vocab_size: vocab,
            max_len: 12,
            ..TextConfig::default()
        };
        let text = TextPreprocessor::new(tokenizer, config).unwrap();
        assert_eq!(text.tokenizer().token_to_id(PAD), Some(0));

        let tokens = text
            .encode("I LOVE #nyc https://t.co/Z9 @Someone 😀")
            .unwrap();
        assert_eq!(tokens.ids.len(), 12);
        let pieces: Vec<String> = tokens.ids[..tokens.len]
            .iter()
            .map(|&id| text.tokenizer().id_to_token(id).unwrap())
            .collect();
        assert_eq!(tokens.len, 7, "{pieces:?}");
        assert!(tokens.ids[tokens.len..].iter().all(|&id| id == 0));
        let decoded = text.decode(&tokens.ids[..tokens.len]).unwrap();
        assert_eq!(decoded, "i love # nyc xxurl xxuser 😀");

        // Truncation at max_len, and an empty caption is all padding.
        let long = "love ".repeat(40);
        assert_eq!(text.encode(&long).unwrap().len, 12);
        assert_eq!(text.encode("").unwrap().len, 0);
        assert!(matches!(text.validate("  "), Err(Error::EmptyCaption)));
        assert!(matches!(
            text.validate(&"x".repeat(100_000)),
            Err(Error::CaptionTooLong { .. })
        ));

        // The saved tokenizer.json loads back to the same encoder.
        let json = text.tokenizer().to_string(false).unwrap();
        let config = TextConfig {
            vocab_size: vocab,
            max_len: 12,
            ..TextConfig::default()
        };
        let again = TextPreprocessor::from_json(json.as_bytes(), config).unwrap();
        assert_eq!(
            again.encode("I love #NYC").unwrap(),
            text.encode("I love #NYC").unwrap()
        );
    }

    #[test]
    fn tokenizer_with_wrong_vocab_size_is_rejected() {
        let tokenizer = train_tokenizer(["a b c"].into_iter(), 50).unwrap();
        let config = TextConfig {
            vocab_size: 9999,
            ..TextConfig::default()
        };
        assert!(matches!(
            TextPreprocessor::new(tokenizer, config),
            Err(Error::Tokenizer(_))
        ));
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([
                (x * 255 / width.max(1)) as u8,
                (y * 255 / height.max(1)) as u8,
                128,
            ])
        });
        let mut bytes = Vec::new();
        DynamicImage::ImageRgb8(image)
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
            .unwrap();
        bytes
    }

    #[test]
    fn image_preprocessing_shapes_and_values() {
        let config = ImageConfig::default();
        let pre = ImagePreprocessor::new(config.clone());
        // A wide picture: fill the square, centre-crop.
        let stored = pre.load(&png(200, 100)).unwrap();
        assert_eq!(
            stored.dimensions(),
            (config.resize as u32, config.resize as u32)
        );
        let input = pre.center(&stored);
        assert_eq!(input.len(), 3 * config.size * config.size);
        // Blue channel is constant 128 → (128/255 - mean) / std everywhere.
        let blue = (128.0 / 255.0 - config.mean[2]) / config.std[2];
        let plane = config.size * config.size;
        assert!(input[2 * plane..].iter().all(|v| (v - blue).abs() < 0.02));
        // Red grows left to right, green top to bottom.
        assert!(input[0] < input[config.size - 1]);
        assert!(input[plane] < input[plane + (config.size - 1) * config.size]);
        // A mirrored crop reverses each row.
        let flipped = pre.crop(&stored, 4, 4, true);
        let straight = pre.crop(&stored, 4, 4, false);
        assert_eq!(flipped[0], straight[config.size - 1]);
        // Tiny pictures are scaled up.
        assert_eq!(
            pre.load(&png(48, 48)).unwrap().width(),
            config.resize as u32
        );
    }

    #[test]
    fn bad_images_are_errors_not_panics() {
        let pre = ImagePreprocessor::new(ImageConfig {
            max_side: 1000,
            ..ImageConfig::default()
        });
        assert!(matches!(pre.decode(b"not an image"), Err(Error::Image(_))));
        let mut truncated = png(64, 64);
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(pre.decode(&truncated), Err(Error::Image(_))));
        assert!(matches!(
            pre.decode(&png(1001, 10)),
            Err(Error::ImageTooLarge { width: 1001, .. })
        ));
        // A 10,000 x 10,000 picture is within the side limit but refused before it is decoded.
        let huge = include_bytes!("../tests/fixtures/huge-10000x10000.png");
        let pre = ImagePreprocessor::new(ImageConfig::default());
        match pre.decode(huge) {
            Err(Error::Image(message)) => assert!(message.contains("10000x10000"), "{message}"),
            other => panic!("expected a clear error, got {other:?}"),
        }
    }
}
