//! The model folder's `config.json`: what the trainer wrote and what native and wasm inference
//! read back. Labels, image geometry and normalisation, and sequence length live here only.

use serde::{Deserialize, Serialize};

use crate::encoders::{ImageEncoderKind, TextEncoderKind};
use crate::error::{Error, Result};

/// Which branches a model has. `Image` and `Text` are the single-modality ablations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
pub enum Modality {
    Both,
    Image,
    Text,
}

impl Modality {
    pub fn has_image(self) -> bool {
        matches!(self, Modality::Both | Modality::Image)
    }
    pub fn has_text(self) -> bool {
        matches!(self, Modality::Both | Modality::Text)
    }
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Modality::Both => "both",
            Modality::Image => "image",
            Modality::Text => "text",
        })
    }
}

/// Image preprocessing and the image branch's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// The network that reads the picture (absent in configs older than the pretrained ones).
    #[serde(default)]
    pub encoder: ImageEncoderKind,
    /// Side of the square the network sees.
    pub size: usize,
    /// Side of the square the picture is first resized (fill + centre crop) to; training takes
    /// random `size` crops from it, inference the centre one.
    pub resize: usize,
    /// Per-channel RGB mean and standard deviation, on pixel values scaled to [0, 1].
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Output channels of each conv block (conv 3x3 → batch norm → ReLU → max-pool 2x2) of the
    /// scratch encoder; unused by the pretrained ones.
    pub channels: Vec<usize>,
    /// Largest accepted width or height of an input picture, in pixels.
    pub max_side: u32,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            encoder: ImageEncoderKind::Scratch,
            size: 32,
            resize: 36,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            channels: vec![16, 32, 64, 128],
            max_side: 12_000,
        }
    }
}

impl ImageConfig {
    /// The geometry and normalisation an encoder was trained with: ImageNet's 256 → centre 224
    /// for the pretrained CNNs, with torchvision's statistics for MobileNetV2 and
    /// `(x - 127) / 128` on 0..255 pixels for EfficientNet-Lite0.
    pub fn for_encoder(encoder: ImageEncoderKind) -> Self {
        let scratch = Self::default();
        match encoder {
            ImageEncoderKind::Scratch => scratch,
            ImageEncoderKind::MobilenetV2 => Self {
                encoder,
                size: 224,
                resize: 256,
                channels: vec![],
                ..scratch
            },
            ImageEncoderKind::EfficientnetLite0 => Self {
                encoder,
                size: 224,
                resize: 256,
                mean: [127.0 / 255.0; 3],
                std: [128.0 / 255.0; 3],
                channels: vec![],
                ..scratch
            },
        }
    }
}

/// Tokenisation settings and the text branch's shape. The tokenizer itself (normaliser,
/// pre-tokeniser, vocabulary) is the model folder's `tokenizer.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    /// The network that reads the caption (absent in configs older than the pretrained ones).
    #[serde(default)]
    pub encoder: TextEncoderKind,
    /// Tokens kept per caption (longer ones are truncated, shorter ones padded).
    pub max_len: usize,
    pub vocab_size: usize,
    pub pad_id: u32,
    pub embed_dim: usize,
    /// Hidden size of each direction of the bidirectional LSTM.
    pub hidden: usize,
    /// Longest accepted caption, in bytes.
    pub max_bytes: usize,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            encoder: TextEncoderKind::Scratch,
            max_len: 40,
            vocab_size: 0,
            pad_id: 0,
            embed_dim: 96,
            hidden: 96,
            max_bytes: 4096,
        }
    }
}

impl TextConfig {
    /// A pretrained encoder brings its own vocabulary and adds `[CLS]` … `[SEP]`; 128 tokens is
    /// the length its tokenizer ships with and far more than a tweet needs.
    pub fn for_encoder(encoder: TextEncoderKind, vocab_size: usize) -> Self {
        match encoder {
            TextEncoderKind::Scratch => Self {
                vocab_size,
                ..Self::default()
            },
            TextEncoderKind::MinilmL6 => Self {
                encoder,
                max_len: 128,
                vocab_size: crate::encoders::MiniLmShape::default().vocab,
                pad_id: 0,
                embed_dim: crate::encoders::MiniLmShape::default().hidden,
                hidden: 0,
                max_bytes: 4096,
            },
        }
    }

    /// Whether the tokenizer's own special tokens (`[CLS]`, `[SEP]`) are part of the input.
    pub fn special_tokens(&self) -> bool {
        self.encoder.is_pretrained()
    }
}

/// Everything needed to rebuild the model and preprocess its input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Class names in output order.
    pub labels: Vec<String>,
    pub modality: Modality,
    pub image: ImageConfig,
    pub text: TextConfig,
    /// Hidden width of the fusion head.
    pub fusion_hidden: usize,
    pub dropout: f64,
}

/// The label order every model of this project uses.
pub const LABELS: [&str; 3] = ["negative", "neutral", "positive"];

impl ModelConfig {
    pub fn new(modality: Modality, vocab_size: usize) -> Self {
        Self {
            labels: LABELS.iter().map(|s| s.to_string()).collect(),
            modality,
            image: ImageConfig::default(),
            text: TextConfig {
                vocab_size,
                ..TextConfig::default()
            },
            fusion_hidden: 128,
            dropout: 0.3,
        }
    }

    /// A model whose branches use the given encoders (a scratch text encoder learns a
    /// vocabulary of `vocab_size`; a pretrained one brings its own).
    pub fn with_encoders(
        modality: Modality,
        image: ImageEncoderKind,
        text: TextEncoderKind,
        vocab_size: usize,
    ) -> Self {
        Self {
            image: ImageConfig::for_encoder(image),
            text: TextConfig::for_encoder(text, vocab_size),
            ..Self::new(modality, vocab_size)
        }
    }

    /// Whether every branch of this model is a frozen pretrained encoder plus a trained head,
    /// so that training can run on cached features.
    pub fn frozen_encoders(&self) -> bool {
        (!self.modality.has_image() || self.image.encoder.is_pretrained())
            && (!self.modality.has_text() || self.text.encoder.is_pretrained())
    }

    pub fn num_classes(&self) -> usize {
        self.labels.len()
    }

    /// Index of a label name (case-insensitive), as used in `train.txt`.
    pub fn label_index(&self, tag: &str) -> Option<usize> {
        self.labels
            .iter()
            .position(|l| l.eq_ignore_ascii_case(tag.trim()))
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let config: Self =
            serde_json::from_slice(bytes).map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }

    /// Reject configs that would build a broken model rather than fail later inside a kernel.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.labels.len() < 2 {
            return bad(format!(
                "needs at least 2 labels, has {}",
                self.labels.len()
            ));
        }
        if self.image.size == 0 || self.image.resize < self.image.size {
            return bad(format!(
                "image resize ({}) must be at least the crop size ({}) and non-zero",
                self.image.resize, self.image.size
            ));
        }
        let pools = 1usize << self.image.channels.len();
        let scratch = self.image.encoder == ImageEncoderKind::Scratch;
        if scratch && (self.image.channels.is_empty() || self.image.size < pools) {
            return bad(format!(
                "image size {} is too small for {} conv blocks",
                self.image.size,
                self.image.channels.len()
            ));
        }
        if self.image.std.iter().any(|s| *s <= 0.0) {
            return bad("image std must be positive".into());
        }
        if self.text.max_len == 0 || self.text.vocab_size == 0 {
            return bad("text max_len and vocab_size must be non-zero".into());
        }
        if self.text.pad_id as usize >= self.text.vocab_size {
            return bad(format!(
                "pad_id {} is outside the vocabulary of {}",
                self.text.pad_id, self.text.vocab_size
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} is not in [0, 1)", self.dropout));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_everything() {
        let config = ModelConfig::new(Modality::Text, 500);
        let back = ModelConfig::from_json(config.to_json().as_bytes()).unwrap();
        assert_eq!(back, config);
        assert_eq!(back.label_index("Neutral"), Some(1));
        assert_eq!(back.label_index("null"), None);
    }

    #[test]
    fn rejects_inconsistent_geometry() {
        let mut config = ModelConfig::new(Modality::Both, 500);
        config.image.resize = 10;
        assert!(matches!(config.validate(), Err(Error::Config(_))));
        let mut config = ModelConfig::new(Modality::Both, 500);
        config.text.pad_id = 500;
        assert!(config.validate().is_err());
        assert!(ModelConfig::from_json(b"{\"labels\": 3}").is_err());
    }
}
