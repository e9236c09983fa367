//! The sentiment model: an image branch and a text branch, each an encoder plus its own 3-class
//! head, and a fusion head over both branches' features. The encoders are either small networks
//! trained from scratch (a CNN; Embedding + BiLSTM, the seed's Keras design) or frozen
//! pretrained ones (MobileNetV2 / EfficientNet-Lite0; all-MiniLM-L6-v2). One definition, built
//! from [`ModelConfig`], runs natively and in wasm.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, BiLstm, BiLstmConfig, Dropout, DropoutConfig, Embedding,
    EmbeddingConfig, Initializer, Linear, LinearConfig, PaddingConfig2d, Relu,
};
use burn::prelude::*;

use crate::config::{ImageConfig, ModelConfig, TextConfig};
use crate::encoders::{ImageEncoderKind, MiniLm, MiniLmShape, MobileCnn, TextEncoderKind, mobile};
use crate::preprocess::Tokens;

/// Logits of the fused model and of each branch's own head, `[batch, classes]` each.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    pub fused: Tensor<2>,
    pub image: Option<Tensor<2>>,
    pub text: Option<Tensor<2>>,
}

/// Encoder outputs, `[batch, features]` per branch.
#[derive(Debug, Clone)]
pub struct Features {
    pub image: Option<Tensor<2>>,
    pub text: Option<Tensor<2>>,
}

/// What the model reads. Either part may be absent when the model (or the call) lacks it.
#[derive(Debug, Clone)]
pub struct ModelInput {
    /// `[batch, 3, size, size]`, normalised.
    pub images: Option<Tensor<4>>,
    /// `[batch, max_len]` token ids and the matching `[batch, max_len]` 1/0 mask.
    pub tokens: Option<(Tensor<2, Int>, Tensor<2>)>,
}

impl ModelInput {
    /// Stack preprocessed pictures (each `3 * size * size` normalised floats, CHW) into a batch.
    pub fn images(pixels: Vec<f32>, batch: usize, size: usize, device: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(pixels, [batch, 3, size, size]), device)
    }

    /// Stack padded token ids into `[batch, width]` ids and the matching 1/0 mask. The scratch
    /// encoder always sees `max_len` steps; a transformer only needs the batch's longest
    /// caption (padding is masked out of attention and pooling, so the result is the same).
    pub fn tokens<'a>(
        tokens: impl ExactSizeIterator<Item = &'a Tokens> + Clone,
        config: &TextConfig,
        device: &Device,
    ) -> (Tensor<2, Int>, Tensor<2>) {
        let batch = tokens.len();
        let width = if config.encoder.is_pretrained() {
            tokens.clone().map(|t| t.len).max().unwrap_or(0).max(1)
        } else {
            config.max_len
        };
        let mut ids = Vec::with_capacity(batch * width);
        let mut mask = Vec::with_capacity(batch * width);
        for t in tokens {
            ids.extend(t.ids[..width].iter().map(|&id| id as i64));
            mask.extend((0..width).map(|i| if i < t.len { 1.0f32 } else { 0.0 }));
        }
        let max_len = width;
        (
            Tensor::from_data(TensorData::new(ids, [batch, max_len]), device),
            Tensor::from_data(TensorData::new(mask, [batch, max_len]), device),
        )
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    norm: BatchNorm,
    activation: Relu,
    pool: MaxPool2d,
}

impl ConvBlock {
    fn new(channels: [usize; 2], device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new(channels, [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(channels[1]).init(device),
            activation: Relu::new(),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.pool.forward(
            self.activation
                .forward(self.norm.forward(self.conv.forward(x))),
        )
    }
}

/// The from-scratch picture encoder: conv blocks → global average pool.
#[derive(Module, Debug)]
pub struct SmallCnn {
    blocks: Vec<ConvBlock>,
    pool: AdaptiveAvgPool2d,
}

impl SmallCnn {
    fn new(config: &ImageConfig, device: &Device) -> Self {
        let widths: Vec<usize> = std::iter::once(3)
            .chain(config.channels.iter().copied())
            .collect();
        Self {
            blocks: widths
                .windows(2)
                .map(|w| ConvBlock::new([w[0], w[1]], device))
                .collect(),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        }
    }

    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.blocks.iter().fold(images, |x, block| block.forward(x));
        self.pool.forward(x).flatten(1, 3)
    }
}

/// The from-scratch caption encoder: Embedding → bidirectional LSTM → masked mean and max over
/// time, next to the mean of the embeddings themselves (a bag-of-words path, which small data
/// sets favour).
#[derive(Module, Debug)]
pub struct BiLstmEncoder {
    embedding: Embedding,
    lstm: BiLstm,
    dropout: Dropout,
}

impl BiLstmEncoder {
    fn new(config: &TextConfig, dropout: f64, device: &Device) -> Self {
        Self {
            // Small initial embeddings (as Keras does): rare words, which stay near their
            // initial values, then add little noise to the bag-of-words mean.
            embedding: EmbeddingConfig::new(config.vocab_size, config.embed_dim)
                .with_initializer(Initializer::Uniform {
                    min: -0.05,
                    max: 0.05,
                })
                .init(device),
            lstm: BiLstmConfig::new(config.embed_dim, config.hidden, true).init(device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        let embedded = self.dropout.forward(self.embedding.forward(ids));
        let (x, _) = self.lstm.forward(embedded.clone(), None); // [batch, len, 2 * hidden]
        let [batch, len, _] = x.dims();
        let mask = mask.reshape([batch, len, 1]);
        // Means over real tokens (at least one, so an all-padding caption stays finite) ...
        let count = mask.clone().sum_dim(1).clamp_min(1.0); // [batch, 1, 1]
        let bag = (embedded * mask.clone()).sum_dim(1) / count.clone();
        let mean = (x.clone() * mask.clone()).sum_dim(1) / count;
        // ... and the max over real tokens (padding pushed far below any activation).
        let max = (x + (mask - 1.0) * 1e4).max_dim(1);
        Tensor::cat(vec![bag, mean, max], 2).flatten(1, 2)
    }
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
    fn new(config: &ImageConfig, device: &Device) -> Self {
        match config.encoder {
            ImageEncoderKind::Scratch => Self::Scratch(SmallCnn::new(config, device)),
            ImageEncoderKind::MobilenetV2 => {
                Self::Pretrained(MobileCnn::mobilenet_v2(false, device))
            }
            ImageEncoderKind::EfficientnetLite0 => {
                Self::Pretrained(MobileCnn::efficientnet_lite0(false, device))
            }
        }
    }

    fn features(config: &ImageConfig) -> usize {
        match config.encoder {
            ImageEncoderKind::Scratch => *config
                .channels
                .last()
                .expect("validated config has conv blocks"),
            _ => mobile::FEATURES,
        }
    }

    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
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
    fn new(config: &TextConfig, dropout: f64, device: &Device) -> Self {
        match config.encoder {
            TextEncoderKind::Scratch => Self::Scratch(BiLstmEncoder::new(config, dropout, device)),
            TextEncoderKind::MinilmL6 => {
                Self::Pretrained(MiniLm::new(&MiniLmShape::default(), device))
            }
        }
    }

    fn features(config: &TextConfig) -> usize {
        match config.encoder {
            TextEncoderKind::Scratch => config.embed_dim + 4 * config.hidden,
            TextEncoderKind::MinilmL6 => MiniLmShape::default().hidden,
        }
    }

    pub fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Scratch(lstm) => lstm.forward(ids, mask),
            Self::Pretrained(minilm) => minilm.forward(ids, mask),
        }
    }
}

/// A branch: encoder → features → dropout → its own linear 3-class head.
#[derive(Module, Debug)]
pub struct Branch<E> {
    encoder: E,
    dropout: Dropout,
    head: Linear,
}

impl<E> Branch<E> {
    fn with(encoder: E, features: usize, classes: usize, dropout: f64, device: &Device) -> Self {
        Self {
            encoder,
            dropout: DropoutConfig::new(dropout).init(),
            head: LinearConfig::new(features, classes).init(device),
        }
    }

    pub fn encoder(&self) -> &E {
        &self.encoder
    }

    pub fn encoder_mut(&mut self) -> &mut E {
        &mut self.encoder
    }

    /// Encoder features → (features after dropout, logits).
    fn head(&self, features: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let features = self.dropout.forward(features);
        let logits = self.head.forward(features.clone());
        (features, logits)
    }
}

pub type ImageBranch = Branch<ImageEncoder>;
pub type TextBranch = Branch<TextEncoder>;

/// Concatenated branch features → hidden layer → classes.
#[derive(Module, Debug)]
pub struct FusionHead {
    hidden: Linear,
    activation: Relu,
    dropout: Dropout,
    output: Linear,
}

impl FusionHead {
    fn new(inputs: usize, hidden: usize, classes: usize, dropout: f64, device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(inputs, hidden).init(device),
            activation: Relu::new(),
            dropout: DropoutConfig::new(dropout).init(),
            output: LinearConfig::new(hidden, classes).init(device),
        }
    }

    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        let x = self.activation.forward(self.hidden.forward(features));
        self.output.forward(self.dropout.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct SentimentModel {
    image: Option<ImageBranch>,
    text: Option<TextBranch>,
    fusion: Option<FusionHead>,
}

impl ModelConfig {
    /// Build a freshly initialised model on `device`.
    pub fn init(&self, device: &Device) -> SentimentModel {
        let classes = self.num_classes();
        let image_features = ImageEncoder::features(&self.image);
        let text_features = TextEncoder::features(&self.text);
        let image = self.modality.has_image().then(|| {
            let encoder = ImageEncoder::new(&self.image, device);
            Branch::with(encoder, image_features, classes, self.dropout, device)
        });
        let text = self.modality.has_text().then(|| {
            let encoder = TextEncoder::new(&self.text, self.dropout, device);
            Branch::with(encoder, text_features, classes, self.dropout, device)
        });
        let fusion = (image.is_some() && text.is_some()).then(|| {
            let inputs = image_features + text_features;
            FusionHead::new(inputs, self.fusion_hidden, classes, self.dropout, device)
        });
        SentimentModel {
            image,
            text,
            fusion,
        }
    }
}

impl SentimentModel {
    pub fn has_image(&self) -> bool {
        self.image.is_some()
    }

    pub fn has_text(&self) -> bool {
        self.text.is_some()
    }

    pub fn image_branch(&self) -> Option<&ImageBranch> {
        self.image.as_ref()
    }

    pub fn text_branch(&self) -> Option<&TextBranch> {
        self.text.as_ref()
    }

    pub fn image_branch_mut(&mut self) -> Option<&mut ImageBranch> {
        self.image.as_mut()
    }

    pub fn text_branch_mut(&mut self) -> Option<&mut TextBranch> {
        self.text.as_mut()
    }

    /// This model with `other`'s encoders (the pretrained ones, under heads trained on their
    /// cached features).
    pub fn with_encoders_of(mut self, other: SentimentModel) -> Self {
        if let (Some(mine), Some(theirs)) = (self.image.as_mut(), other.image) {
            mine.encoder = theirs.encoder;
        }
        if let (Some(mine), Some(theirs)) = (self.text.as_mut(), other.text) {
            mine.encoder = theirs.encoder;
        }
        self
    }

    /// Caption features from MiniLM's hidden states after layer `from`: the top layers run on
    /// cached states of the lower ones, which is how fine-tuning trains them. Panics if the
    /// text encoder is not pretrained (the trainer checks).
    pub fn text_features_from_states(
        &self,
        states: Tensor<3>,
        mask: Tensor<2>,
        from: usize,
    ) -> Tensor<2> {
        match self.text.as_ref().map(|branch| &branch.encoder) {
            Some(TextEncoder::Pretrained(minilm)) => MiniLm::pool(
                minilm.run_layers(states, mask.clone(), from..minilm.layers()),
                mask,
            ),
            _ => panic!("text_features_from_states needs a pretrained text encoder"),
        }
    }

    /// The encoders' features for whichever parts both the model and the input have: what
    /// training caches when the encoders are frozen.
    pub fn encode(&self, input: ModelInput) -> Features {
        Features {
            image: match (&self.image, input.images) {
                (Some(branch), Some(images)) => Some(branch.encoder.forward(images)),
                _ => None,
            },
            text: match (&self.text, input.tokens) {
                (Some(branch), Some((ids, mask))) => Some(branch.encoder.forward(ids, mask)),
                _ => None,
            },
        }
    }

    /// Run whichever branches both the model and the input have. With both, `fused` is the
    /// fusion head; with one, it is that branch's own head. Panics only if nothing is left to
    /// run, which [`crate::inference::Classifier`] rules out before calling.
    pub fn forward(&self, input: ModelInput) -> ModelOutput {
        self.forward_features(self.encode(input))
    }

    /// The heads on top of encoder features.
    pub fn forward_features(&self, features: Features) -> ModelOutput {
        let image = match (&self.image, features.image) {
            (Some(branch), Some(f)) => Some(branch.head(f)),
            _ => None,
        };
        let text = match (&self.text, features.text) {
            (Some(branch), Some(f)) => Some(branch.head(f)),
            _ => None,
        };
        let fused = match (&self.fusion, &image, &text) {
            (Some(fusion), Some((image_features, _)), Some((text_features, _))) => fusion.forward(
                Tensor::cat(vec![image_features.clone(), text_features.clone()], 1),
            ),
            (_, Some((_, logits)), None) | (_, None, Some((_, logits))) => logits.clone(),
            (_, Some((_, logits)), Some(_)) => logits.clone(),
            (_, None, None) => panic!("SentimentModel::forward called with no usable input"),
        };
        ModelOutput {
            fused,
            image: image.map(|(_, logits)| logits),
            text: text.map(|(_, logits)| logits),
        }
    }
}

/// Casts every float parameter to half precision: the model folder's weights then take half the
/// download. Loading casts them back to f32 ([`ModuleRecord::cast_to_module_dtype`]).
///
/// [`ModuleRecord::cast_to_module_dtype`]: burn::store::ModuleRecord::cast_to_module_dtype
struct HalfPrecision;

impl burn::module::ModuleMapper for HalfPrecision {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        param.map(|t| t.cast(burn::tensor::FloatDType::F16))
    }
}

impl SentimentModel {
    /// The same model with f16 parameters, for a smaller model folder.
    pub fn to_half(self) -> Self {
        self.map(&mut HalfPrecision)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::config::Modality;

    fn input(config: &ModelConfig, batch: usize, device: &Device) -> ModelInput {
        let size = config.image.size;
        let len = config.text.max_len;
        let ids: Vec<i64> = (0..batch * len).map(|i| (i % 7) as i64).collect();
        ModelInput {
            images: Some(Tensor::zeros([batch, 3, size, size], device)),
            tokens: Some((
                Tensor::from_data(TensorData::new(ids, [batch, len]), device),
                Tensor::ones([batch, len], device),
            )),
        }
    }

    #[test]
    fn every_modality_gives_class_logits() {
        let device = Device::flex();
        for modality in [Modality::Both, Modality::Image, Modality::Text] {
            let config = ModelConfig::new(modality, 20);
            let model = config.init(&device);
            let out = model.forward(input(&config, 2, &device));
            assert_eq!(out.fused.dims(), [2, 3]);
            assert_eq!(out.image.is_some(), modality.has_image());
            assert_eq!(out.text.is_some(), modality.has_text());
        }
    }
}
