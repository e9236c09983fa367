//! The sentiment model: an image branch and a text branch, each an encoder plus its own 3-class
//! head, and a fusion head over both branches' features. The encoders are small networks
//! trained from scratch ([`scratch`]) or pretrained ones ([`mobile`], [`minilm`]). One
//! definition, built from [`ModelConfig`], runs natively and in wasm.
//!
//! [`SentimentModel`] is generic over its two encoders so that the trainer can train the same
//! heads on features computed beforehand ([`Precomputed`]) or on MiniLM's top layers alone
//! ([`MiniLmTop`]); what ships and what the classifier runs is the default,
//! `SentimentModel<ImageEncoder, TextEncoder>`.

pub mod bert;
mod cpu;
mod heads;
pub mod minilm;
pub mod mobile;
mod output;
mod precision;
pub mod scratch;

use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;

use crate::config::{Fusion, ImageEncoderConfig, ModelConfig, TextEncoderConfig};
use crate::error::{Error, Result};
pub use cpu::{join as cpu_join, threads as cpu_threads};
use heads::{FusionHead, HeadSet, Heads};
pub use minilm::{HiddenStates, MiniLm, MiniLmTop};
pub use mobile::{MobileCnn, MobileTop};
pub use output::{ModelOutput, PendingScores, Scores};
pub use precision::{Choice, Part, Storage, WeightFormat, WeightPlan, pack_q4, quant_block};
use scratch::{BiLstmEncoder, SmallCnn};

/// What turns one part of a pair into a feature vector `[batch, features]`.
pub trait Encoder: Module + burn::module::ModuleDisplay {
    type Input;
    fn encode(&self, input: Self::Input) -> Tensor<2>;
}

/// Caption token ids `[batch, len]` and their 1/0 padding mask.
#[derive(Clone, Debug)]
pub struct TokenBatch {
    pub ids: Tensor<2, Int>,
    pub mask: Tensor<2>,
}

impl TokenBatch {
    /// From row-major ids and mask of `shape` (what the text preprocessor stacks).
    pub fn new(ids: Vec<i64>, mask: Vec<f32>, shape: [usize; 2], device: &Device) -> Self {
        Self {
            ids: Tensor::from_data(TensorData::new(ids, shape), device),
            mask: Tensor::from_data(TensorData::new(mask, shape), device),
        }
    }
}

/// Normalised pictures (each `3 * size * size` floats, CHW, one after the other) as
/// `[batch, 3, size, size]`.
pub fn image_batch(pixels: Vec<f32>, batch: usize, size: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(pixels, [batch, 3, size, size]), device)
}

/// Rows of features (`[batch, width]`, row-major) as a tensor.
pub fn feature_batch(rows: Vec<f32>, batch: usize, device: &Device) -> Tensor<2> {
    let width = rows.len() / batch.max(1);
    Tensor::from_data(TensorData::new(rows, [batch, width]), device)
}

/// What turns a picture into a feature vector.
// One per model, built once: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ImageEncoder {
    Scratch(SmallCnn),
    /// MobileNetV2 or EfficientNet-Lite0 (which one is the config's `image.encoder`).
    Pretrained(MobileCnn),
}

impl ImageEncoder {
    pub fn new(config: &ImageEncoderConfig, device: &Device) -> Self {
        match config {
            ImageEncoderConfig::Scratch { channels } => {
                Self::Scratch(SmallCnn::new(channels, device))
            }
            ImageEncoderConfig::MobilenetV2 => {
                Self::Pretrained(MobileCnn::mobilenet_v2(false, device))
            }
            ImageEncoderConfig::EfficientnetLite0 => {
                Self::Pretrained(MobileCnn::efficientnet_lite0(false, device))
            }
        }
    }

    /// Width of the feature vector.
    pub fn features(config: &ImageEncoderConfig) -> usize {
        match config {
            ImageEncoderConfig::Scratch { channels } => channels.last().copied().unwrap_or(0),
            _ => mobile::FEATURES,
        }
    }
}

impl Encoder for ImageEncoder {
    type Input = Tensor<4>;

    fn encode(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Self::Scratch(cnn) => cnn.forward(images),
            Self::Pretrained(cnn) => cnn.forward(images),
        }
    }
}

/// What turns a caption into a feature vector.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum TextEncoder {
    Scratch(BiLstmEncoder),
    Pretrained(MiniLm),
}

impl TextEncoder {
    pub fn new(config: &TextEncoderConfig, dropout: f64, device: &Device) -> Self {
        match config {
            TextEncoderConfig::Scratch {
                vocab_size,
                embed_dim,
                hidden,
            } => Self::Scratch(BiLstmEncoder::new(
                *vocab_size,
                *embed_dim,
                *hidden,
                dropout,
                device,
            )),
            TextEncoderConfig::MinilmL6(shape) => Self::Pretrained(MiniLm::new(shape, device)),
        }
    }

    /// Width of the feature vector.
    pub fn features(config: &TextEncoderConfig) -> usize {
        match config {
            TextEncoderConfig::Scratch {
                embed_dim, hidden, ..
            } => BiLstmEncoder::features(*embed_dim, *hidden),
            TextEncoderConfig::MinilmL6(shape) => shape.hidden_size,
        }
    }
}

impl Encoder for TextEncoder {
    type Input = TokenBatch;

    fn encode(&self, tokens: TokenBatch) -> Tensor<2> {
        match self {
            Self::Scratch(lstm) => lstm.forward(tokens),
            Self::Pretrained(minilm) => minilm.encode(tokens),
        }
    }
}

/// Stands in for a frozen encoder whose features were computed beforehand: the heads then
/// train on cached features.
#[derive(Module, Debug)]
pub struct Precomputed;

impl Encoder for Precomputed {
    type Input = Tensor<2>;

    fn encode(&self, features: Tensor<2>) -> Tensor<2> {
        features
    }
}

/// A branch: encoder → features → dropout → its own linear 3-class head.
#[derive(Module, Debug)]
pub struct Branch<E> {
    encoder: E,
    dropout: Dropout,
    head: Linear,
}

/// Both branches (or one), and what combines them: the fusion head over their features, or
/// (late fusion) a linear layer over their heads' class scores; with an ensemble, more sets of
/// heads over the same features, whose probabilities are averaged.
#[derive(Module, Debug)]
pub struct SentimentModel<I = ImageEncoder, T = TextEncoder> {
    image: Option<Branch<I>>,
    text: Option<Branch<T>>,
    fusion: Option<FusionHead>,
    late: Option<Linear>,
    /// The ensemble's other members (the config's `heads` less one).
    extra: Vec<HeadSet>,
}

impl ModelConfig {
    /// A freshly initialised model on `device`: each branch (encoder, then head) in turn,
    /// then the fusion head, the order parameters draw their random initial values in.
    pub fn init(&self, device: &Device) -> SentimentModel {
        let image = self.image.as_ref().map(|b| {
            let encoder = ImageEncoder::new(&b.encoder, device);
            self.branch(encoder, ImageEncoder::features(&b.encoder), device)
        });
        let text = self.text.as_ref().map(|b| {
            let encoder = TextEncoder::new(&b.encoder, self.dropout, device);
            self.branch(encoder, TextEncoder::features(&b.encoder), device)
        });
        SentimentModel {
            image,
            text,
            fusion: self.fusion(device),
            late: self.late(device),
            extra: self.extra_heads(device),
        }
    }

    /// Fresh heads around the given encoders, one for each branch of this config. An encoder
    /// for a branch the config lacks, or a branch without its encoder, is an error.
    pub fn init_with<I: Module, T: Module>(
        &self,
        image: Option<I>,
        text: Option<T>,
        device: &Device,
    ) -> Result<SentimentModel<I, T>> {
        let image = match (image, &self.image) {
            (Some(encoder), Some(b)) => {
                Some(self.branch(encoder, ImageEncoder::features(&b.encoder), device))
            }
            (None, None) => None,
            _ => return Err(mismatch("image")),
        };
        let text = match (text, &self.text) {
            (Some(encoder), Some(b)) => {
                Some(self.branch(encoder, TextEncoder::features(&b.encoder), device))
            }
            (None, None) => None,
            _ => return Err(mismatch("text")),
        };
        Ok(SentimentModel {
            image,
            text,
            fusion: self.fusion(device),
            late: self.late(device),
            extra: self.extra_heads(device),
        })
    }

    /// `encoder` with fresh dropout and a fresh head over its `features`.
    fn branch<E>(&self, encoder: E, features: usize, device: &Device) -> Branch<E> {
        Branch {
            encoder,
            dropout: DropoutConfig::new(self.dropout).init(),
            head: LinearConfig::new(features, self.num_classes()).init(device),
        }
    }

    /// The fusion head over both branches' features, when there are two branches fused so.
    fn fusion(&self, device: &Device) -> Option<FusionHead> {
        if self.fusion != Fusion::Features {
            return None;
        }
        let image = ImageEncoder::features(&self.image.as_ref()?.encoder);
        let text = TextEncoder::features(&self.text.as_ref()?.encoder);
        let (hidden, classes) = (self.fusion_hidden, self.num_classes());
        Some(FusionHead::new(
            image + text,
            hidden,
            classes,
            self.dropout,
            device,
        ))
    }

    /// Late fusion's linear layer over both heads' class scores, when the config asks for it.
    fn late(&self, device: &Device) -> Option<Linear> {
        let both = self.image.is_some() && self.text.is_some();
        let k = self.num_classes();
        (both && self.fusion == Fusion::Scores).then(|| LinearConfig::new(2 * k, k).init(device))
    }

    /// The ensemble's members after the first, each with fresh heads of its own (drawn after
    /// the first member's, so a single set of heads initialises as it always did).
    fn extra_heads(&self, device: &Device) -> Vec<HeadSet> {
        let k = self.num_classes();
        let head = |features: usize| LinearConfig::new(features, k).init(device);
        (1..self.heads.max(1))
            .map(|_| HeadSet {
                image: (self.image.as_ref()).map(|b| head(ImageEncoder::features(&b.encoder))),
                text: (self.text.as_ref()).map(|b| head(TextEncoder::features(&b.encoder))),
                fusion: self.fusion(device),
                late: self.late(device),
            })
            .collect()
    }
}

fn mismatch(branch: &str) -> Error {
    Error::Config(format!(
        "the {branch} encoder given does not match the config's {branch} branch"
    ))
}

impl SentimentModel {
    /// The model rearranged to answer faster on the flex CPU backend, computing the same (to
    /// float rounding): the encoders moved into the CPU's own kernels
    /// ([`MobileCnn::for_inference`], [`MiniLm::for_inference`],
    /// [`BiLstmEncoder::for_inference`]). For the classifier after
    /// loading (`config`: the folder's), never for training, writing a folder or another
    /// device; on another device only the image encoder's batch norms are folded.
    pub fn for_inference(mut self, config: &ModelConfig, device: &Device) -> Self {
        let cpu = *device == Device::flex();
        if let Some(branch) = self.image.take() {
            let encoder = match branch.encoder {
                ImageEncoder::Pretrained(cnn) if cpu => {
                    ImageEncoder::Pretrained(cnn.for_inference())
                }
                ImageEncoder::Pretrained(cnn) => ImageEncoder::Pretrained(cnn.fold_norms()),
                other => other,
            };
            self.image = Some(Branch { encoder, ..branch });
        }
        let epsilon = match config.text.as_ref().map(|t| &t.encoder) {
            Some(TextEncoderConfig::MinilmL6(shape)) => shape.layer_norm_eps,
            _ => 0.0,
        };
        if let Some(branch) = self.text.take() {
            let encoder = match branch.encoder {
                TextEncoder::Pretrained(m) if cpu => {
                    TextEncoder::Pretrained(m.for_inference(epsilon))
                }
                TextEncoder::Scratch(lstm) if cpu => TextEncoder::Scratch(lstm.for_inference()),
                other => other,
            };
            self.text = Some(Branch { encoder, ..branch });
        }
        self
    }
}

impl<I: Encoder, T: Encoder> SentimentModel<I, T> {
    pub fn has_image(&self) -> bool {
        self.image.is_some()
    }

    pub fn has_text(&self) -> bool {
        self.text.is_some()
    }

    pub fn image_encoder(&self) -> Option<&I> {
        self.image.as_ref().map(|b| &b.encoder)
    }

    pub fn text_encoder(&self) -> Option<&T> {
        self.text.as_ref().map(|b| &b.encoder)
    }

    /// Run whichever branches both the model and the input have: both encoders, then the heads
    /// (the order in which lazily initialised parameters and dropout draw random numbers).
    pub fn forward(&self, image: Option<I::Input>, text: Option<T::Input>) -> Result<ModelOutput> {
        let (image, text) = self.encode(image, text);
        self.heads(image, text)
    }

    /// The encoders' features `[batch, features]` for whichever parts both the model and the
    /// input have.
    pub fn encode(
        &self,
        image: Option<I::Input>,
        text: Option<T::Input>,
    ) -> (Option<Tensor<2>>, Option<Tensor<2>>) {
        (
            self.image
                .as_ref()
                .zip(image)
                .map(|(b, x)| b.encoder.encode(x)),
            self.text
                .as_ref()
                .zip(text)
                .map(|(b, x)| b.encoder.encode(x)),
        )
    }

    /// The heads on encoder features: with both branches, `fused` is the fusion head (or
    /// late fusion of the two heads' scores); with one, it is that branch's own head. An
    /// ensemble's members all read the same features (after the branches' dropout).
    pub fn heads(&self, image: Option<Tensor<2>>, text: Option<Tensor<2>>) -> Result<ModelOutput> {
        let image = self
            .image
            .as_ref()
            .zip(image)
            .map(|(b, f)| b.dropout.forward(f));
        let text = self
            .text
            .as_ref()
            .zip(text)
            .map(|(b, f)| b.dropout.forward(f));
        let first = Heads {
            image: self.image.as_ref().map(|b| &b.head),
            text: self.text.as_ref().map(|b| &b.head),
            fusion: self.fusion.as_ref(),
            late: self.late.as_ref(),
        };
        let first = first.forward(image.as_ref(), text.as_ref())?;
        if self.extra.is_empty() {
            return Ok(first);
        }
        let rest = (self.extra.iter())
            .map(|set| set.heads().forward(image.as_ref(), text.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(ModelOutput::ensemble(first, rest))
    }

    /// This model's encoders under `other`'s heads and fusion: heads trained on cached features
    /// go back on top of the encoders that computed them.
    pub fn with_heads_of<I2, T2>(self, other: SentimentModel<I2, T2>) -> Self {
        Self {
            image: with_head_of(self.image, other.image),
            text: with_head_of(self.text, other.text),
            fusion: other.fusion.or(self.fusion),
            late: other.late.or(self.late),
            extra: match other.extra.is_empty() {
                true => self.extra,
                false => other.extra,
            },
        }
    }
}

fn with_head_of<E, E2>(mine: Option<Branch<E>>, theirs: Option<Branch<E2>>) -> Option<Branch<E>> {
    match (mine, theirs) {
        (Some(mine), Some(theirs)) => Some(Branch {
            encoder: mine.encoder,
            dropout: theirs.dropout,
            head: theirs.head,
        }),
        (mine, _) => mine,
    }
}

#[cfg(test)]
mod tests;
