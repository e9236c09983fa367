//! The encoders trained from scratch with the rest of the small model: a CNN for the picture and
//! Embedding + BiLSTM for the caption (the seed's Keras design).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, BiLstm, BiLstmConfig, Dropout, DropoutConfig, Embedding,
    EmbeddingConfig, Initializer, PaddingConfig2d, Relu,
};
use burn::prelude::*;

use super::TokenBatch;

/// Conv 3x3 → batch norm → ReLU → max-pool 2x2.
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
        let x = self.norm.forward(self.conv.forward(x));
        self.pool.forward(self.activation.forward(x))
    }
}

/// Conv blocks → global average pool.
#[derive(Module, Debug)]
pub struct SmallCnn {
    blocks: Vec<ConvBlock>,
    pool: AdaptiveAvgPool2d,
}

impl SmallCnn {
    /// One block per entry of `channels` (its output width).
    pub fn new(channels: &[usize], device: &Device) -> Self {
        let widths: Vec<usize> = std::iter::once(3).chain(channels.iter().copied()).collect();
        Self {
            blocks: widths
                .windows(2)
                .map(|w| ConvBlock::new([w[0], w[1]], device))
                .collect(),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        }
    }

    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.blocks.iter().fold(images, |x, block| block.forward(x));
        self.pool.forward(x).flatten(1, 3)
    }
}

/// Embedding → bidirectional LSTM → masked mean and max over time, next to the mean of the
/// embeddings themselves (a bag-of-words path, which small data sets favour).
#[derive(Module, Debug)]
pub struct BiLstmEncoder {
    embedding: Embedding,
    lstm: BiLstm,
    dropout: Dropout,
}

impl BiLstmEncoder {
    pub fn new(vocab: usize, embed: usize, hidden: usize, dropout: f64, device: &Device) -> Self {
        Self {
            // Small initial embeddings (as Keras does): rare words, which stay near their
            // initial values, then add little noise to the bag-of-words mean.
            embedding: EmbeddingConfig::new(vocab, embed)
                .with_initializer(Initializer::Uniform {
                    min: -0.05,
                    max: 0.05,
                })
                .init(device),
            lstm: BiLstmConfig::new(embed, hidden, true).init(device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// Width of the features: bag of words, mean and max of both directions.
    pub fn features(embed: usize, hidden: usize) -> usize {
        embed + 4 * hidden
    }

    pub fn forward(&self, tokens: TokenBatch) -> Tensor<2> {
        let TokenBatch { ids, mask } = tokens;
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
