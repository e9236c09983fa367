//! The model's config: which branches it has, which encoder each uses (with that encoder's own
//! shape), how its input is preprocessed, and the fusion head. It is the model folder's
//! `config.json` ([`crate::folder`] reads and writes the file); native and wasm build the same
//! model and the same preprocessing from it. Labels, image geometry and tokenizer settings live
//! here only.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The label order every model of this project uses.
pub const LABELS: [&str; 3] = ["negative", "neutral", "positive"];

/// Everything needed to rebuild a model and preprocess its input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Class names in output order.
    pub labels: Vec<String>,
    /// The picture branch; `None` for a caption-only model.
    pub image: Option<ImageBranchConfig>,
    /// The caption branch; `None` for a picture-only model.
    pub text: Option<TextBranchConfig>,
    /// Hidden width of the fusion head (used when both branches are present).
    pub fusion_hidden: usize,
    /// How the branches are combined (folders written before this setting: features).
    #[serde(default)]
    pub fusion: Fusion,
    /// Sets of heads (each branch's head and the fusion) trained side by side over the same
    /// encoder features, their probabilities averaged: an ensemble that costs kilobytes.
    #[serde(default = "one")]
    pub heads: usize,
    /// Dropout on each branch's features (and inside the fusion head and the scratch encoders).
    pub dropout: f64,
}

fn one() -> usize {
    1
}

/// How a model with both branches combines them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fusion {
    /// An MLP (`fusion_hidden` wide) over both branches' features.
    #[default]
    Features,
    /// A linear layer over the two branch heads' class scores (late fusion).
    Scores,
}

/// Which branches a model has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modality {
    Both,
    Image,
    Text,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageBranchConfig {
    pub encoder: ImageEncoderConfig,
    pub preprocess: ImagePreprocessing,
}

/// The network that reads the picture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ImageEncoderConfig {
    /// A small CNN trained with the rest of the model: conv 3x3 → batch norm → ReLU → max-pool
    /// 2x2 per entry of `channels` (its output width), then global average pooling.
    Scratch { channels: Vec<usize> },
    /// torchvision's MobileNetV2 (ImageNet-1k).
    MobilenetV2,
    /// EfficientNet-Lite0 (ImageNet-1k).
    EfficientnetLite0,
}

/// How a picture becomes the network's input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImagePreprocessing {
    /// Side of the square the network sees.
    pub size: usize,
    /// Side of the square the picture is first resized (fill + centre crop) to; training takes
    /// random `size` crops from it, inference the centre one.
    pub resize: usize,
    /// Per-channel RGB mean and standard deviation, on pixel values scaled to [0, 1].
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Largest accepted width or height of an input picture, in pixels.
    pub max_side: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextBranchConfig {
    pub encoder: TextEncoderConfig,
    pub preprocess: TextPreprocessing,
}

/// The network that reads the caption.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TextEncoderConfig {
    /// Embedding + bidirectional LSTM trained with the rest of the model, on a WordPiece
    /// vocabulary learned from the training captions.
    Scratch {
        vocab_size: usize,
        embed_dim: usize,
        /// Hidden size of each LSTM direction.
        hidden: usize,
    },
    /// sentence-transformers' all-MiniLM-L6-v2, with the shape of its own `config.json`.
    MinilmL6(MiniLmConfig),
}

/// A BERT encoder's shape, under the names of Hugging Face's `config.json` (which it is read
/// from; other keys of that file are ignored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MiniLmConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

/// How a caption becomes token ids. The tokenizer itself (normaliser, pre-tokeniser,
/// vocabulary) is the model folder's `tokenizer.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextPreprocessing {
    /// Tokens kept per caption (longer ones are truncated).
    pub max_len: usize,
    /// Id of the padding token.
    pub pad_id: u32,
    /// Longest accepted caption, in bytes.
    pub max_bytes: usize,
    /// Spell emoji out as their names before tokenising (folders written before this setting
    /// existed read as `false`, and keep tokenising as they were trained).
    #[serde(default)]
    pub emoji_names: bool,
}

impl ModelConfig {
    /// A model with the given branches and the project's labels.
    pub fn new(image: Option<ImageBranchConfig>, text: Option<TextBranchConfig>) -> Self {
        Self {
            labels: LABELS.iter().map(|s| s.to_string()).collect(),
            image,
            text,
            fusion_hidden: 128,
            fusion: Fusion::Features,
            heads: 1,
            dropout: 0.3,
        }
    }

    pub fn modality(&self) -> Modality {
        match (&self.image, &self.text) {
            (Some(_), None) => Modality::Image,
            (None, Some(_)) => Modality::Text,
            _ => Modality::Both,
        }
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

    /// What a person would call this model ("MobileNetV2 + all-MiniLM-L6-v2").
    pub fn title(&self) -> String {
        let image = self.image.as_ref().map(|b| &b.encoder);
        let text = self.text.as_ref().map(|b| &b.encoder);
        let parts = [image.map(|e| e.title()), text.map(|e| e.title())];
        let title = parts.into_iter().flatten().collect::<Vec<_>>().join(" + ");
        let pretrained =
            image.is_some_and(|e| e.is_pretrained()) || text.is_some_and(|e| e.is_pretrained());
        if pretrained {
            title
        } else {
            format!("{title}, trained from scratch")
        }
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
        if self.image.is_none() && self.text.is_none() {
            return bad("has neither an image nor a text branch".into());
        }
        if let Some(image) = &self.image {
            image.validate()?;
        }
        if let Some(text) = &self.text {
            text.validate()?;
        }
        if self.heads == 0 {
            return bad("needs at least one set of heads".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} is not in [0, 1)", self.dropout));
        }
        Ok(())
    }
}

impl ImageBranchConfig {
    /// The from-scratch CNN on `size`² pictures (resized to 9/8 of that, for random crops).
    pub fn scratch(size: usize) -> Self {
        Self {
            encoder: ImageEncoderConfig::Scratch {
                channels: vec![16, 32, 64, 128],
            },
            preprocess: ImagePreprocessing::imagenet(size, size + size / 8),
        }
    }

    /// ImageNet's 256 → centre 224 with torchvision's statistics.
    pub fn mobilenet_v2() -> Self {
        Self {
            encoder: ImageEncoderConfig::MobilenetV2,
            preprocess: ImagePreprocessing::imagenet(224, 256),
        }
    }

    /// 256 → 224 with `(x - 127) / 128` on 0..255 pixels, as EfficientNet-Lite0 was trained.
    pub fn efficientnet_lite0() -> Self {
        Self {
            encoder: ImageEncoderConfig::EfficientnetLite0,
            preprocess: ImagePreprocessing {
                mean: [127.0 / 255.0; 3],
                std: [128.0 / 255.0; 3],
                ..ImagePreprocessing::imagenet(224, 256)
            },
        }
    }

    fn validate(&self) -> Result<()> {
        let p = &self.preprocess;
        if p.size == 0 || p.resize < p.size {
            return Err(Error::Config(format!(
                "image resize ({}) must be at least the crop size ({}) and non-zero",
                p.resize, p.size
            )));
        }
        if p.std.iter().any(|s| *s <= 0.0) {
            return Err(Error::Config("image std must be positive".into()));
        }
        if let ImageEncoderConfig::Scratch { channels } = &self.encoder
            && (channels.is_empty() || p.size < 1usize << channels.len())
        {
            return Err(Error::Config(format!(
                "image size {} is too small for {} conv blocks",
                p.size,
                channels.len()
            )));
        }
        Ok(())
    }
}

impl ImagePreprocessing {
    /// Torchvision's ImageNet statistics, pictures up to 12,000 px a side.
    fn imagenet(size: usize, resize: usize) -> Self {
        Self {
            size,
            resize,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            max_side: 12_000,
        }
    }
}

impl ImageEncoderConfig {
    pub fn is_pretrained(&self) -> bool {
        !matches!(self, Self::Scratch { .. })
    }

    /// The name used on the command line, in feature-cache files and in `config.json`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Scratch { .. } => "scratch",
            Self::MobilenetV2 => "mobilenet-v2",
            Self::EfficientnetLite0 => "efficientnet-lite0",
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            Self::Scratch { .. } => "Small CNN",
            Self::MobilenetV2 => "MobileNetV2",
            Self::EfficientnetLite0 => "EfficientNet-Lite0",
        }
    }
}

impl TextBranchConfig {
    /// The from-scratch BiLSTM on a vocabulary of at most `vocab_size` tokens (the trainer sets
    /// the size its tokenizer reached), `max_len` tokens per caption.
    pub fn scratch(vocab_size: usize, max_len: usize) -> Self {
        Self {
            encoder: TextEncoderConfig::Scratch {
                vocab_size,
                embed_dim: 96,
                hidden: 96,
            },
            preprocess: TextPreprocessing {
                max_len,
                pad_id: 0,
                max_bytes: 4096,
                emoji_names: true,
            },
        }
    }

    /// all-MiniLM-L6-v2 with its own tokenizer: 128 tokens, the length it ships with and far
    /// more than a tweet needs.
    pub fn minilm(shape: MiniLmConfig) -> Self {
        Self {
            encoder: TextEncoderConfig::MinilmL6(shape),
            preprocess: TextPreprocessing {
                max_len: 128,
                pad_id: 0,
                max_bytes: 4096,
                emoji_names: true,
            },
        }
    }

    pub fn vocab_size(&self) -> usize {
        match &self.encoder {
            TextEncoderConfig::Scratch { vocab_size, .. } => *vocab_size,
            TextEncoderConfig::MinilmL6(shape) => shape.vocab_size,
        }
    }

    /// A pretrained tokenizer adds its own `[CLS]` … `[SEP]`; a pretrained transformer reads
    /// only the batch's longest caption (padding is masked out of attention and pooling), while
    /// the LSTM always runs `max_len` steps.
    pub fn pretrained(&self) -> bool {
        self.encoder.is_pretrained()
    }

    fn validate(&self) -> Result<()> {
        let vocab = self.vocab_size();
        if self.preprocess.max_len == 0 || vocab == 0 {
            return Err(Error::Config(
                "text max_len and vocab_size must be non-zero".into(),
            ));
        }
        if self.preprocess.pad_id as usize >= vocab {
            return Err(Error::Config(format!(
                "pad_id {} is outside the vocabulary of {vocab}",
                self.preprocess.pad_id
            )));
        }
        if let TextEncoderConfig::MinilmL6(shape) = &self.encoder {
            if shape.num_attention_heads == 0 || shape.hidden_size % shape.num_attention_heads != 0
            {
                return Err(Error::Config(format!(
                    "MiniLM hidden size {} is not a multiple of its {} heads",
                    shape.hidden_size, shape.num_attention_heads
                )));
            }
            if self.preprocess.max_len > shape.max_position_embeddings {
                return Err(Error::Config(format!(
                    "max_len {} exceeds MiniLM's {} positions",
                    self.preprocess.max_len, shape.max_position_embeddings
                )));
            }
        }
        Ok(())
    }
}

impl TextEncoderConfig {
    pub fn is_pretrained(&self) -> bool {
        !matches!(self, Self::Scratch { .. })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Scratch { .. } => "scratch",
            Self::MinilmL6(_) => "minilm-l6",
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            Self::Scratch { .. } => "BiLSTM",
            Self::MinilmL6(_) => "all-MiniLM-L6-v2",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minilm() -> MiniLmConfig {
        MiniLmConfig {
            vocab_size: 100,
            hidden_size: 8,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 16,
            max_position_embeddings: 128,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
        }
    }

    #[test]
    fn branches_decide_the_modality_and_title() {
        let both = ModelConfig::new(
            Some(ImageBranchConfig::mobilenet_v2()),
            Some(TextBranchConfig::minilm(minilm())),
        );
        assert_eq!(both.modality(), Modality::Both);
        assert_eq!(both.title(), "MobileNetV2 + all-MiniLM-L6-v2");
        assert_eq!(both.label_index("Neutral"), Some(1));
        assert_eq!(both.label_index("null"), None);
        let text = ModelConfig::new(None, Some(TextBranchConfig::scratch(500, 40)));
        assert_eq!(text.modality(), Modality::Text);
        assert!(text.validate().is_ok());
    }

    #[test]
    fn rejects_inconsistent_configs() {
        let mut config = ModelConfig::new(
            Some(ImageBranchConfig::scratch(32)),
            Some(TextBranchConfig::scratch(500, 40)),
        );
        assert!(config.validate().is_ok());
        config.image.as_mut().unwrap().preprocess.resize = 10;
        assert!(matches!(config.validate(), Err(Error::Config(_))));
        let mut config = ModelConfig::new(None, Some(TextBranchConfig::scratch(500, 40)));
        config.text.as_mut().unwrap().preprocess.pad_id = 500;
        assert!(config.validate().is_err());
        let tiny = ModelConfig::new(Some(ImageBranchConfig::scratch(8)), None);
        assert!(tiny.validate().is_err(), "8 px cannot be pooled 4 times");
        assert!(ModelConfig::new(None, None).validate().is_err());
        let mut odd = minilm();
        odd.num_attention_heads = 3;
        let config = ModelConfig::new(None, Some(TextBranchConfig::minilm(odd)));
        assert!(config.validate().is_err());
    }
}
