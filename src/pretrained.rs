//! The pretrained encoders' original files, as `scripts/fetch-encoders.sh` leaves them in a
//! folder (`~/.cache/mvsa-sentiment/encoders` unless told otherwise), and their conversion into
//! the model crate's Burn modules: torchvision / EfficientNet-PyTorch checkpoints (`.pth`) and
//! MiniLM's `model.safetensors`, with its own `config.json` and `tokenizer.json`. The converted
//! weights then ship inside the model folder; the browser never sees these files.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use burn::prelude::Device;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore};
use mvsa_model::config::{
    ImageEncoderConfig, MiniLmConfig, ModelConfig, TextBranchConfig, TextEncoderConfig,
};
use mvsa_model::model::{ImageEncoder, MiniLm, MobileCnn, TextEncoder};
use mvsa_model::preprocess::TextPreprocessor;

use crate::mpnet::{self, Mpnet, MpnetEncoder};

const MOBILENET_V2: &str = "mobilenet_v2.pth";
const EFFICIENTNET_LITE0: &str = "efficientnet_lite0.pth";
const MINILM_WEIGHTS: &str = "minilm/model.safetensors";
const MINILM_CONFIG: &str = "minilm/config.json";
const MINILM_TOKENIZER: &str = "minilm/tokenizer.json";
const MPNET_WEIGHTS: &str = "mpnet/model.safetensors";
const MPNET_CONFIG: &str = "mpnet/config.json";
const MPNET_TOKENIZER: &str = "mpnet/tokenizer.json";
/// all-mpnet-base-v2's padding token (`<pad>`; `<s>` is 0).
const MPNET_PAD: u32 = 1;

/// The folder holding the fetched originals.
#[derive(Clone, Debug)]
pub struct EncoderFiles {
    dir: PathBuf,
}

impl EncoderFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        anyhow::ensure!(
            path.is_file(),
            "{} is missing: run `bash scripts/fetch-encoders.sh` first (it downloads the \
             pretrained encoders once; --encoders or MVSA_ENCODERS points at another folder)",
            path.display()
        );
        Ok(path)
    }

    /// Every file the config's pretrained encoders need is there (checked before anything
    /// slow, so a missing fetch fails at once).
    pub fn check(&self, config: &ModelConfig) -> Result<()> {
        if let Some(branch) = &config.image {
            self.image_file(&branch.encoder)?;
        }
        if let Some(TextEncoderConfig::MinilmL6(_)) = config.text.as_ref().map(|b| &b.encoder) {
            self.check_minilm()?;
        }
        Ok(())
    }

    /// MiniLM's files are there (a teacher over MiniLM needs them beside any model).
    pub fn check_minilm(&self) -> Result<()> {
        for name in [MINILM_WEIGHTS, MINILM_CONFIG, MINILM_TOKENIZER] {
            self.file(name)?;
        }
        Ok(())
    }

    /// all-mpnet-base-v2's files are there (`--teacher mpnet`): fetched apart, as they are
    /// large and only a teacher reads them.
    pub fn check_mpnet(&self) -> Result<()> {
        for name in [MPNET_WEIGHTS, MPNET_CONFIG, MPNET_TOKENIZER] {
            self.teacher_file(name)?;
        }
        Ok(())
    }

    /// One of all-mpnet-base-v2's files, which the default fetch leaves out.
    fn teacher_file(&self, name: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        anyhow::ensure!(
            path.is_file(),
            "{} is missing: the mpnet teacher is fetched apart, by `bash \
             scripts/fetch-encoders.sh --teacher` (470 MB, once)",
            path.display()
        );
        Ok(path)
    }

    fn image_file(&self, encoder: &ImageEncoderConfig) -> Result<Option<PathBuf>> {
        match encoder {
            ImageEncoderConfig::MobilenetV2 => self.file(MOBILENET_V2).map(Some),
            ImageEncoderConfig::EfficientnetLite0 => self.file(EFFICIENTNET_LITE0).map(Some),
            ImageEncoderConfig::Scratch { .. } => Ok(None),
        }
    }

    /// MiniLM's shape, from its own `config.json`.
    pub fn minilm_config(&self) -> Result<MiniLmConfig> {
        let path = self.file(MINILM_CONFIG)?;
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a BERT config", path.display()))
    }

    /// all-mpnet-base-v2 with its original weights, and the preprocessing of its captions
    /// (its own tokenizer; BERT's shape, so the heads it feeds are 768 wide). Only a
    /// teacher reads it: `scripts/fetch-encoders.sh --teacher` fetches it.
    pub fn mpnet(&self, device: &Device) -> Result<MpnetEncoder> {
        let file = |name| self.teacher_file(name);
        let (config, tokenizer) = (file(MPNET_CONFIG)?, file(MPNET_TOKENIZER)?);
        let shape = mpnet::read_config(&config)?;
        let mut branch = TextBranchConfig::minilm(shape.clone());
        branch.preprocess.pad_id = MPNET_PAD;
        let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer)
            .map_err(|e| anyhow!("cannot read {}: {e}", tokenizer.display()))?;
        let text = TextPreprocessor::new(tokenizer, branch.clone())?;
        let model = Mpnet::new(&shape, MPNET_PAD as usize, device).load(&file(MPNET_WEIGHTS)?)?;
        Ok(MpnetEncoder {
            model,
            branch,
            text,
        })
    }

    /// MiniLM's own `tokenizer.json`.
    pub fn minilm_tokenizer(&self) -> Result<tokenizers::Tokenizer> {
        let path = self.file(MINILM_TOKENIZER)?;
        tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))
    }

    /// The pretrained picture encoder with its original weights; `None` for the scratch CNN.
    pub fn image_encoder(
        &self,
        encoder: &ImageEncoderConfig,
        device: &Device,
    ) -> Result<Option<ImageEncoder>> {
        let Some(path) = self.image_file(encoder)? else {
            return Ok(None);
        };
        let cnn = match encoder {
            ImageEncoderConfig::EfficientnetLite0 => {
                load_efficientnet_lite0(MobileCnn::efficientnet_lite0(false, device), &path)?
            }
            _ => load_mobilenet_v2(MobileCnn::mobilenet_v2(false, device), &path)?,
        };
        Ok(Some(ImageEncoder::Pretrained(cnn)))
    }

    /// MiniLM with its original weights, shaped by `shape`.
    pub fn minilm(&self, shape: &MiniLmConfig, device: &Device) -> Result<MiniLm> {
        load_minilm(MiniLm::new(shape, device), &self.file(MINILM_WEIGHTS)?)
    }

    /// The pretrained caption encoder; `None` for the scratch BiLSTM.
    pub fn text_encoder(
        &self,
        encoder: &TextEncoderConfig,
        device: &Device,
    ) -> Result<Option<TextEncoder>> {
        match encoder {
            TextEncoderConfig::MinilmL6(shape) => {
                Ok(Some(TextEncoder::Pretrained(self.minilm(shape, device)?)))
            }
            TextEncoderConfig::Scratch { .. } => Ok(None),
        }
    }

    /// A MobileNetV2 or EfficientNet-Lite0 with its ImageNet classifier (for checking the
    /// port against ImageNet classes).
    pub fn imagenet_classifier(
        &self,
        encoder: &ImageEncoderConfig,
        device: &Device,
    ) -> Result<MobileCnn> {
        let path = self
            .image_file(encoder)?
            .context("the scratch CNN has no ImageNet classifier")?;
        match encoder {
            ImageEncoderConfig::EfficientnetLite0 => {
                load_efficientnet_lite0(MobileCnn::efficientnet_lite0(true, device), &path)
            }
            _ => load_mobilenet_v2(MobileCnn::mobilenet_v2(true, device), &path),
        }
    }
}

fn load<M: ModuleSnapshot>(
    module: &mut M,
    store: &mut impl burn::store::ModuleStore,
    path: &Path,
) -> Result<()> {
    module
        .load_from(store)
        .map_err(|e| anyhow!("cannot load {}: {e}", path.display()))?;
    Ok(())
}

/// torchvision's `mobilenet_v2-b0353104.pth`: `features.0` is the stem, `features.1..17` the
/// blocks (`conv.0.0`/`conv.0.1` expand or, in block 1, depthwise), `features.18` the head,
/// `classifier.1` the ImageNet classifier. Block indices start after the stem; contiguous index
/// mapping (on by default) renumbers `blocks.N` from 0.
fn load_mobilenet_v2(mut cnn: MobileCnn, path: &Path) -> Result<MobileCnn> {
    let mut store = PytorchStore::from_file(path);
    for (from, to) in [
        (r"^features\.0\.0\.", "stem.conv."),
        (r"^features\.0\.1\.", "stem.bn."),
        (r"^features\.18\.0\.", "head.conv."),
        (r"^features\.18\.1\.", "head.bn."),
        (r"^features\.1\.conv\.0\.0\.", "blocks.1.depthwise.conv."),
        (r"^features\.1\.conv\.0\.1\.", "blocks.1.depthwise.bn."),
        (r"^features\.1\.conv\.1\.", "blocks.1.project.conv."),
        (r"^features\.1\.conv\.2\.", "blocks.1.project.bn."),
        (
            r"^features\.(\d+)\.conv\.0\.0\.",
            "blocks.${1}.expand.conv.",
        ),
        (r"^features\.(\d+)\.conv\.0\.1\.", "blocks.${1}.expand.bn."),
        (
            r"^features\.(\d+)\.conv\.1\.0\.",
            "blocks.${1}.depthwise.conv.",
        ),
        (
            r"^features\.(\d+)\.conv\.1\.1\.",
            "blocks.${1}.depthwise.bn.",
        ),
        (r"^features\.(\d+)\.conv\.2\.", "blocks.${1}.project.conv."),
        (r"^features\.(\d+)\.conv\.3\.", "blocks.${1}.project.bn."),
        (r"^classifier\.1\.", "classifier."),
    ] {
        store = store.with_key_remapping(from, to);
    }
    load(&mut cnn, &mut store, path)?;
    Ok(cnn)
}

/// `efficientnet-lite0-57934424.pth` (EfficientNet-PyTorch naming): `_conv_stem`/`_bn0`,
/// `_blocks.N._expand_conv`/`_bn0`, `_depthwise_conv`/`_bn1`, `_project_conv`/`_bn2`,
/// `_conv_head`/`_bn1`, `_fc`.
fn load_efficientnet_lite0(mut cnn: MobileCnn, path: &Path) -> Result<MobileCnn> {
    let block = |from: &str, to: &str| {
        (
            format!(r"^_blocks\.(\d+)\.{from}\."),
            format!("blocks.${{1}}.{to}."),
        )
    };
    let mut store = PytorchStore::from_file(path);
    for (from, to) in [
        block("_expand_conv", "expand.conv"),
        block("_bn0", "expand.bn"),
        block("_depthwise_conv", "depthwise.conv"),
        block("_bn1", "depthwise.bn"),
        block("_project_conv", "project.conv"),
        block("_bn2", "project.bn"),
        (r"^_conv_stem\.".into(), "stem.conv.".into()),
        (r"^_bn0\.".into(), "stem.bn.".into()),
        (r"^_conv_head\.".into(), "head.conv.".into()),
        (r"^_bn1\.".into(), "head.bn.".into()),
        (r"^_fc\.".into(), "classifier.".into()),
    ] {
        store = store.with_key_remapping(&from, &to);
    }
    load(&mut cnn, &mut store, path)?;
    Ok(cnn)
}

/// sentence-transformers' all-MiniLM-L6-v2 `model.safetensors` (Hugging Face `BertModel`
/// keys; the pooler and `position_ids` are not used).
fn load_minilm(mut minilm: MiniLm, path: &Path) -> Result<MiniLm> {
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter)
        .with_key_remapping(r"\.LayerNorm\.", ".norm.")
        .with_key_remapping(r"\.attention\.self\.", ".attention.")
        .with_key_remapping(r"\.intermediate\.dense\.", ".intermediate.");
    load(&mut minilm, &mut store, path)?;
    Ok(minilm)
}
