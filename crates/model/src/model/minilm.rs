//! all-MiniLM-L6-v2: a 6-layer BERT (hidden 384, 12 heads, GELU, post-norm) whose sentence
//! embedding is the mean of the last layer over real tokens, L2-normalised. Module names follow
//! Hugging Face's `BertModel` keys, so the trainer's converter only renames `self`, `LayerNorm`
//! and the dense sub-layers.
//!
//! The layers are written out rather than taken from `burn::nn::transformer`. Burn's
//! `TransformerEncoder` has the same post-norm GELU layer, but its parameters live under other
//! names (`mha.query`, `pwff.linear_inner`, `norm_1` where the shipped weights have
//! `attention.query`, `intermediate`, `attention.output.norm`): switching would mean rewriting
//! the shipped 50 MB `model.bpk` (another copy in git history) or remapping keys on every load.
//! Worth doing when the default model is next retrained.

use std::sync::Arc;

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use super::bert::{self, DenseNorm, SelfAttention, attend};
use super::cpu::minilm::{self as cpu, CpuMiniLm};
use super::cpu::{each, take, values};
use super::{Encoder, TokenBatch};
use crate::config::MiniLmConfig;

#[derive(Module, Debug)]
pub struct Embeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    norm: LayerNorm,
}

/// Multi-head self-attention with the padding mask, then its output sub-layer.
#[derive(Module, Debug)]
pub struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: DenseNorm,
    heads: usize,
}

impl SelfAttention for Attention {
    /// `bias` `[batch, 1, 1, len]`: 0 for tokens, very negative for padding.
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        self.forward_profiled(x, bias, &mut |_| {})
    }

    fn forward_profiled(
        &self,
        x: Tensor<3>,
        bias: Tensor<4>,
        step: &mut (dyn FnMut(&'static str) + Send),
    ) -> Tensor<3> {
        let q = self.query.forward(x.clone());
        let k = self.key.forward(x.clone());
        let v = self.value.forward(x.clone());
        step("query, key, value projections");
        let context = attend(q, k, v, bias, self.heads);
        step("attention (scores, softmax, context)");
        let x = self.output.forward(context, x);
        step("attention output + norm");
        x
    }
}

/// MiniLM's layer: BERT's, over MiniLM's attention.
pub type Layer = bert::Layer<Attention>;

/// The stack of layers (Hugging Face's `encoder`).
#[derive(Module, Debug)]
pub struct Layers {
    layer: Vec<Layer>,
}

#[derive(Module, Debug)]
pub struct MiniLm {
    embeddings: Embeddings,
    encoder: Layers,
    /// The same encoder for [`cpu`]'s kernels, used on the flex CPU backend once
    /// [`MiniLm::for_inference`] has built it.
    #[module(skip)]
    cpu: Option<Arc<CpuMiniLm>>,
}

/// MiniLM's top layers on their own: what fine-tuning trains, on cached hidden states of the
/// layers below ([`MiniLm::split_top`]).
#[derive(Module, Debug)]
pub struct MiniLmTop {
    layer: Vec<Layer>,
}

/// Hidden states `[batch, len, hidden]` of the layers below the fine-tuned ones, and the 1/0
/// padding mask `[batch, len]`.
#[derive(Clone, Debug)]
pub struct HiddenStates {
    pub states: Tensor<3>,
    pub mask: Tensor<2>,
}

impl MiniLm {
    pub fn new(shape: &MiniLmConfig, device: &Device) -> Self {
        let hidden = shape.hidden_size;
        let eps = shape.layer_norm_eps;
        let layer = || {
            let attention = Attention {
                query: LinearConfig::new(hidden, hidden).init(device),
                key: LinearConfig::new(hidden, hidden).init(device),
                value: LinearConfig::new(hidden, hidden).init(device),
                output: DenseNorm::new(hidden, hidden, eps, device),
                heads: shape.num_attention_heads,
            };
            Layer::new(attention, hidden, shape.intermediate_size, eps, device)
        };
        let embedding = |rows| EmbeddingConfig::new(rows, hidden).init(device);
        Self {
            embeddings: Embeddings {
                word_embeddings: embedding(shape.vocab_size),
                position_embeddings: embedding(shape.max_position_embeddings),
                token_type_embeddings: embedding(shape.type_vocab_size),
                norm: LayerNormConfig::new(hidden)
                    .with_epsilon(shape.layer_norm_eps)
                    .init(device),
            },
            encoder: Layers {
                layer: (0..shape.num_hidden_layers).map(|_| layer()).collect(),
            },
            cpu: None,
        }
    }

    /// For the classifier on the flex CPU backend, after loading: the weights moved into
    /// [`cpu`]'s kernels, which `encode` then uses (`epsilon`: the config's layer-norm
    /// epsilon, which Burn's `LayerNorm` keeps to itself). The Burn layers are left empty:
    /// not for training, nor for another device.
    pub fn for_inference(mut self, epsilon: f64) -> Self {
        let epsilon = epsilon as f32;
        let dense = |l: &mut Linear| {
            let [_, outputs] = l.weight.dims();
            let bias = l.bias.as_mut().map_or(vec![0.0; outputs], take);
            cpu::Dense::new(&take(&mut l.weight), bias)
        };
        let norm = |n: &mut LayerNorm| {
            let [width] = n.gamma.dims();
            cpu::Norm {
                beta: n.beta.as_mut().map_or(vec![0.0; width], take),
                gamma: take(&mut n.gamma),
                epsilon,
            }
        };
        let heads = self
            .encoder
            .layer
            .first()
            .map_or(1, |l| l.attention().heads);
        let layers = self.encoder.layer.iter_mut().map(|l| {
            let (attention, intermediate, output) = l.parts_mut();
            cpu::Layer {
                query: dense(&mut attention.query),
                key: dense(&mut attention.key),
                value: dense(&mut attention.value),
                attention_output: dense(attention.output.dense_mut()),
                attention_norm: norm(attention.output.norm_mut()),
                intermediate: dense(intermediate),
                output: dense(output.dense_mut()),
                output_norm: norm(output.norm_mut()),
            }
        });
        let layers = layers.collect();
        let e = &mut self.embeddings;
        let hidden = e.norm.gamma.dims()[0];
        let cpu = CpuMiniLm {
            words: take(&mut e.word_embeddings.weight),
            positions: take(&mut e.position_embeddings.weight),
            token_type: take(&mut e.token_type_embeddings.weight)[..hidden].to_vec(),
            norm: norm(&mut e.norm),
            layers,
            heads,
        };
        self.cpu = Some(Arc::new(cpu));
        self
    }

    pub fn layers(&self) -> usize {
        self.encoder.layer.len()
    }

    /// Hidden states after every layer of this model (all type-0 tokens, as for a single
    /// sentence).
    pub fn hidden_states(&self, tokens: TokenBatch) -> HiddenStates {
        self.hidden_states_profiled(tokens, &mut |_| {})
    }

    /// [`Encoder::encode`], naming each part to `step` once it is done (the bench's profile).
    pub fn encode_profiled(
        &self,
        tokens: TokenBatch,
        step: &mut (dyn FnMut(&'static str) + Send),
    ) -> Tensor<2> {
        if let Some(cpu) = &self.cpu {
            let device = tokens.ids.device();
            let captions = unpadded(&tokens);
            let batch = captions.len();
            let rows = each(&captions, step, |caption, step| cpu.embed(caption, step));
            let width = rows.len() / batch.max(1);
            return Tensor::from_data(TensorData::new(rows, [batch, width]), &device);
        }
        let states = self.hidden_states_profiled(tokens, step);
        let pooled = pool(states);
        step("mean pool + normalise");
        pooled
    }

    fn hidden_states_profiled(
        &self,
        tokens: TokenBatch,
        step: &mut (dyn FnMut(&'static str) + Send),
    ) -> HiddenStates {
        let TokenBatch { ids, mask } = tokens;
        let [batch, len] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device)
            .reshape([1, len])
            .expand([batch, len]);
        let types = Tensor::<2, Int>::zeros([batch, len], &device);
        let e = &self.embeddings;
        let x = e.word_embeddings.forward(ids)
            + e.position_embeddings.forward(positions)
            + e.token_type_embeddings.forward(types);
        let x = e.norm.forward(x);
        step("embeddings + norm");
        let bias = padding_bias(mask.clone());
        let states = self
            .encoder
            .layer
            .iter()
            .fold(x, |x, layer| layer.forward_profiled(x, bias.clone(), step));
        HiddenStates { states, mask }
    }

    /// Split off the top `n` layers: this model keeps the ones below.
    pub fn split_top(mut self, n: usize) -> (MiniLm, MiniLmTop) {
        self.cpu = None;
        let keep = self.layers().saturating_sub(n);
        let top = self.encoder.layer.split_off(keep);
        (self, MiniLmTop { layer: top })
    }

    /// Put top layers (split off and trained) back on this model.
    pub fn join(mut self, top: MiniLmTop) -> MiniLm {
        self.cpu = None;
        self.encoder.layer.extend(top.layer);
        self
    }
}

impl Encoder for MiniLm {
    type Input = TokenBatch;

    /// Sentence embeddings `[batch, hidden]`.
    fn encode(&self, tokens: TokenBatch) -> Tensor<2> {
        self.encode_profiled(tokens, &mut |_| {})
    }
}

/// Each caption's real tokens as (position, id): the padding (mask 0) left out, as attention
/// and pooling leave it out.
fn unpadded(tokens: &TokenBatch) -> Vec<Vec<(usize, usize)>> {
    let [_, len] = tokens.ids.dims();
    let ids = tokens.ids.clone().into_data().convert::<i64>();
    let ids = ids.try_into_vec::<i64>().expect("integer ids");
    let mask = values(tokens.mask.clone());
    let rows = ids
        .chunks_exact(len.max(1))
        .zip(mask.chunks_exact(len.max(1)));
    rows.map(|(ids, mask)| {
        let real = ids
            .iter()
            .zip(mask)
            .enumerate()
            .filter(|(_, (_, m))| **m > 0.5);
        real.map(|(p, (id, _))| (p, *id as usize)).collect()
    })
    .collect()
}

impl Encoder for MiniLmTop {
    type Input = HiddenStates;

    /// Sentence embeddings from the states of the layers below these.
    fn encode(&self, input: HiddenStates) -> Tensor<2> {
        let states = run_layers(&self.layer, input.states, input.mask.clone());
        pool(HiddenStates {
            states,
            mask: input.mask,
        })
    }
}

fn run_layers(layers: &[Layer], x: Tensor<3>, mask: Tensor<2>) -> Tensor<3> {
    let bias = padding_bias(mask);
    layers
        .iter()
        .fold(x, |x, layer| layer.forward(x, bias.clone()))
}

/// The attention scores' bias `[batch, 1, 1, len]` for a 1/0 padding mask.
fn padding_bias(mask: Tensor<2>) -> Tensor<4> {
    let [batch, len] = mask.dims();
    // Padding gets a large negative score before the softmax (Hugging Face uses the dtype's
    // minimum; -1e4 already underflows exp() to 0 in f32).
    ((mask - 1.0) * 1e4).reshape([batch, 1, 1, len])
}

/// The sentence embedding of final hidden states: mean over real tokens, L2-normalised.
fn pool(input: HiddenStates) -> Tensor<2> {
    let HiddenStates { states, mask } = input;
    let [batch, len] = mask.dims();
    let mask = mask.reshape([batch, len, 1]);
    let count = mask.clone().sum_dim(1).clamp_min(1e-9);
    let mean = ((states * mask).sum_dim(1) / count).flatten(1, 2);
    let norm = mean
        .clone()
        .powi_scalar(2)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    mean / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    fn small() -> MiniLmConfig {
        MiniLmConfig {
            vocab_size: 50,
            hidden_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 128,
            max_position_embeddings: 32,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
        }
    }

    /// Layer norms with scales and shifts of their own (a new one's are 1 and 0).
    fn perturbed(mut model: MiniLm, device: &Device) -> MiniLm {
        let random = |n| Tensor::<1>::random([n], Distribution::Uniform(0.5, 1.5), device);
        let shake = |norm: &mut LayerNorm| {
            let n = norm.gamma.dims()[0];
            norm.gamma = burn::module::Param::from_tensor(random(n));
            norm.beta = Some(burn::module::Param::from_tensor(random(n) - 1.0));
        };
        shake(&mut model.embeddings.norm);
        model
    }

    #[test]
    fn the_cpu_kernels_compute_what_the_burn_encoder_does() {
        let device = Device::flex();
        let model = perturbed(MiniLm::new(&small(), &device), &device);
        // Three captions of 9, 5 and 1 tokens, padded at the end as the preprocessor pads.
        let lengths = [9, 5, 1];
        let ids: Vec<i64> = (0..27).map(|i| (i * 7 % 50) as i64).collect();
        let mask: Vec<f32> = lengths
            .iter()
            .flat_map(|&n| (0..9).map(move |i| f32::from(u8::from(i < n))))
            .collect();
        let tokens = TokenBatch::new(ids, mask, [3, 9], &device);
        let burn = model.encode(tokens.clone()).into_data();
        let fast = model.clone().for_inference(1e-12);
        assert!(fast.cpu.is_some());
        let words = fast.embeddings.word_embeddings.weight.dims();
        assert_eq!(words, [0, 0], "moved into the kernels, not kept twice");
        let features = fast.encode(tokens).into_data();
        burn.assert_approx_eq::<f32>(&features, Tolerance::absolute(1e-5));
        // Padding anywhere, and a caption of padding only (a zero vector, as Burn's pooling
        // gives).
        let mask = vec![0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let tokens = TokenBatch::new((0..10).collect(), mask, [2, 5], &device);
        let burn = model.encode(tokens.clone()).into_data();
        let features = fast.encode(tokens).into_data();
        burn.assert_approx_eq::<f32>(&features, Tolerance::absolute(1e-5));
    }
}
