//! The sentiment model: a small CNN image branch and an Embedding + BiLSTM text branch (the
//! seed's Keras design), each with its own 3-class head, and a fusion head over both branches'
//! features. One definition, built from [`ModelConfig`], runs natively and in wasm.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, BiLstm, BiLstmConfig, Dropout, DropoutConfig, Embedding,
    EmbeddingConfig, Initializer, Linear, LinearConfig, PaddingConfig2d, Relu,
};
use burn::prelude::*;

use crate::config::{ImageConfig, ModelConfig, TextConfig};
use crate::preprocess::Tokens;

/// Logits of the fused model and of each branch's own head, `[batch, classes]` each.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    pub fused: Tensor<2>,
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

    /// Stack padded token ids into `[batch, max_len]` ids and the matching 1/0 mask.
    pub fn tokens<'a>(
        tokens: impl ExactSizeIterator<Item = &'a Tokens>,
        max_len: usize,
        device: &Device,
    ) -> (Tensor<2, Int>, Tensor<2>) {
        let batch = tokens.len();
        let mut ids = Vec::with_capacity(batch * max_len);
        let mut mask = Vec::with_capacity(batch * max_len);
        for t in tokens {
            ids.extend(t.ids.iter().map(|&id| id as i64));
            mask.extend((0..max_len).map(|i| if i < t.len { 1.0f32 } else { 0.0 }));
        }
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

/// Conv blocks → global average pool → features; a linear head on top.
#[derive(Module, Debug)]
pub struct ImageBranch {
    blocks: Vec<ConvBlock>,
    pool: AdaptiveAvgPool2d,
    dropout: Dropout,
    head: Linear,
}

impl ImageBranch {
    fn new(config: &ImageConfig, classes: usize, dropout: f64, device: &Device) -> Self {
        let widths: Vec<usize> = std::iter::once(3)
            .chain(config.channels.iter().copied())
            .collect();
        Self {
            blocks: widths
                .windows(2)
                .map(|w| ConvBlock::new([w[0], w[1]], device))
                .collect(),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dropout: DropoutConfig::new(dropout).init(),
            head: LinearConfig::new(Self::features(config), classes).init(device),
        }
    }

    fn features(config: &ImageConfig) -> usize {
        *config
            .channels
            .last()
            .expect("validated config has conv blocks")
    }

    /// `[batch, 3, h, w]` → (features `[batch, f]`, logits `[batch, classes]`).
    pub fn forward(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let x = self.blocks.iter().fold(images, |x, block| block.forward(x));
        let features = self.dropout.forward(self.pool.forward(x).flatten(1, 3));
        let logits = self.head.forward(features.clone());
        (features, logits)
    }
}

/// Embedding → bidirectional LSTM → masked mean and max over time, next to the mean of the
/// embeddings themselves (a bag-of-words path, which small data sets favour) → features; a
/// linear head.
#[derive(Module, Debug)]
pub struct TextBranch {
    embedding: Embedding,
    lstm: BiLstm,
    dropout: Dropout,
    head: Linear,
}

impl TextBranch {
    fn new(config: &TextConfig, classes: usize, dropout: f64, device: &Device) -> Self {
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
            head: LinearConfig::new(Self::features(config), classes).init(device),
        }
    }

    fn features(config: &TextConfig) -> usize {
        config.embed_dim + 4 * config.hidden
    }

    /// Token ids `[batch, len]` and mask `[batch, len]` → (features, logits).
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
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
        let features = Tensor::cat(vec![bag, mean, max], 2).flatten(1, 2);
        let features = self.dropout.forward(features);
        let logits = self.head.forward(features.clone());
        (features, logits)
    }
}

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
        let image = self
            .modality
            .has_image()
            .then(|| ImageBranch::new(&self.image, classes, self.dropout, device));
        let text = self
            .modality
            .has_text()
            .then(|| TextBranch::new(&self.text, classes, self.dropout, device));
        let fusion = (image.is_some() && text.is_some()).then(|| {
            let inputs = ImageBranch::features(&self.image) + TextBranch::features(&self.text);
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

    /// Run whichever branches both the model and the input have. With both, `fused` is the
    /// fusion head; with one, it is that branch's own head. Panics only if nothing is left to
    /// run, which [`crate::inference::Classifier`] rules out before calling.
    pub fn forward(&self, input: ModelInput) -> ModelOutput {
        let image = match (&self.image, input.images) {
            (Some(branch), Some(images)) => Some(branch.forward(images)),
            _ => None,
        };
        let text = match (&self.text, input.tokens) {
            (Some(branch), Some((ids, mask))) => Some(branch.forward(ids, mask)),
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
