//! The encoders trained from scratch with the rest of the small model: a CNN for the picture and
//! Embedding + BiLSTM for the caption (the seed's Keras design).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, BiLstm, BiLstmConfig, Dropout, DropoutConfig, Embedding,
    EmbeddingConfig, Initializer, PaddingConfig2d, Relu,
};
use std::sync::Arc;

use burn::nn::activation::Activation;
use burn::nn::{GateController, Linear, Lstm};
use burn::prelude::*;

use super::TokenBatch;
use super::cpu::lstm::{CpuBiLstm, Direction, Gate};
use super::cpu::{each, take, values};

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
    /// The same encoder for [`super::cpu::lstm`]'s kernel, used on the flex CPU backend once
    /// [`BiLstmEncoder::for_inference`] has built it.
    #[module(skip)]
    cpu: Option<Arc<CpuBiLstm>>,
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
            cpu: None,
        }
    }

    /// For the classifier on the flex CPU backend, after loading: the weights moved into
    /// [`super::cpu::lstm`]'s kernel, which `forward` then uses; the Burn layers are left
    /// empty. An LSTM configured otherwise than the kernel computes is left as it is.
    pub fn for_inference(mut self) -> Self {
        // Checked before anything is moved out, so an LSTM left as it is stays whole.
        let plain = |l: &Lstm| {
            let biased = |g: Option<&GateController>| {
                g.is_some_and(|g| {
                    g.input_transform.bias.is_some() && g.hidden_transform.bias.is_some()
                })
            };
            let gates = [&l.input_gate, &l.output_gate, &l.cell_gate].map(Some);
            gates.into_iter().all(biased)
                && biased(l.forget_gate.as_ref())
                && l.clip.is_none()
                && !l.input_forget
                && matches!(l.gate_activation, Activation::Sigmoid(_))
                && matches!(l.cell_activation, Activation::Tanh(_))
                && matches!(l.hidden_activation, Activation::Tanh(_))
        };
        let lstm = &mut self.lstm;
        if !plain(&lstm.forward) || !plain(&lstm.reverse) {
            return self;
        }
        let (Some(forward), Some(reverse)) =
            (direction(&mut lstm.forward), direction(&mut lstm.reverse))
        else {
            unreachable!("plain() checked every gate's biases");
        };
        let [_, embed] = self.embedding.weight.dims();
        let cpu = CpuBiLstm {
            embedding: take(&mut self.embedding.weight),
            embed,
            forward,
            reverse,
        };
        self.cpu = Some(Arc::new(cpu));
        self
    }

    /// Width of the features: bag of words, mean and max of both directions.
    pub fn features(embed: usize, hidden: usize) -> usize {
        embed + 4 * hidden
    }

    pub fn forward(&self, tokens: TokenBatch) -> Tensor<2> {
        if let Some(cpu) = &self.cpu {
            let device = tokens.mask.device();
            let [batch, len] = tokens.ids.dims();
            let ids = tokens.ids.into_data().convert::<i64>();
            let ids = ids.try_into_vec::<i64>().expect("integer ids");
            let mask = values(tokens.mask);
            let captions: Vec<(&[i64], &[f32])> = (ids.chunks_exact(len.max(1)))
                .zip(mask.chunks_exact(len.max(1)))
                .collect();
            let rows = each(&captions, &mut |_| {}, |(ids, mask), _| {
                cpu.features(ids, mask)
            });
            let width = rows.len() / batch.max(1);
            return Tensor::from_data(TensorData::new(rows, [batch, width]), &device);
        }
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

/// One direction's gates moved out of Burn's LSTM; `None` where a transform has no bias
/// (`for_inference` checks that first: by then some weights may have been moved).
fn direction(lstm: &mut Lstm) -> Option<Direction> {
    let gate = |input: &mut Linear, hidden: &mut Linear| {
        Some(Gate {
            input_bias: take(input.bias.as_mut()?),
            hidden_bias: take(hidden.bias.as_mut()?),
            input: take(&mut input.weight),
            hidden: take(&mut hidden.weight),
        })
    };
    let pair = |g: &mut GateController| {
        let (i, h) = (&mut g.input_transform, &mut g.hidden_transform);
        gate(i, h)
    };
    let forget = lstm.forget_gate.as_mut()?;
    Some(Direction::new([
        pair(&mut lstm.input_gate)?,
        pair(forget)?,
        pair(&mut lstm.output_gate)?,
        pair(&mut lstm.cell_gate)?,
    ]))
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tolerance;

    use super::*;

    #[test]
    fn the_cpu_kernel_computes_what_the_burn_encoder_does() {
        let device = Device::flex();
        let model = BiLstmEncoder::new(50, 8, 6, 0.3, &device);
        // Captions of 9, 5 and 0 tokens padded to 12 (pad id 0), as the preprocessor pads; the
        // last is padding only, whose max pools the padding's states.
        let lengths = [9, 5, 0];
        let ids: Vec<i64> = (0..36)
            .map(|i| match i % 12 < lengths[i / 12] {
                true => (i * 7 % 49 + 1) as i64,
                false => 0,
            })
            .collect();
        let mask = (0..36)
            .map(|i| f32::from(u8::from(i % 12 < lengths[i / 12])))
            .collect();
        let tokens = TokenBatch::new(ids, mask, [3, 12], &device);
        let burn = model.forward(tokens.clone()).into_data();
        let fast = model.for_inference();
        assert!(fast.cpu.is_some());
        let words = fast.embedding.weight.dims();
        assert_eq!(words, [0, 0], "moved into the kernel, not kept twice");
        let features = fast.forward(tokens).into_data();
        assert_eq!(features.shape(), burn.shape());
        burn.assert_approx_eq::<f32>(&features, Tolerance::absolute(1e-5));
    }
}
