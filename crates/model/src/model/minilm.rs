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

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use super::bert::{self, DenseNorm, SelfAttention, attend};
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
        let q = self.query.forward(x.clone());
        let k = self.key.forward(x.clone());
        let v = self.value.forward(x.clone());
        self.output.forward(attend(q, k, v, bias, self.heads), x)
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
        }
    }

    pub fn layers(&self) -> usize {
        self.encoder.layer.len()
    }

    /// Hidden states after every layer of this model (all type-0 tokens, as for a single
    /// sentence).
    pub fn hidden_states(&self, tokens: TokenBatch) -> HiddenStates {
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
        let states = run_layers(&self.encoder.layer, e.norm.forward(x), mask.clone());
        HiddenStates { states, mask }
    }

    /// Split off the top `n` layers: this model keeps the ones below.
    pub fn split_top(mut self, n: usize) -> (MiniLm, MiniLmTop) {
        let keep = self.layers().saturating_sub(n);
        let top = self.encoder.layer.split_off(keep);
        (self, MiniLmTop { layer: top })
    }

    /// Put top layers (split off and trained) back on this model.
    pub fn join(mut self, top: MiniLmTop) -> MiniLm {
        self.encoder.layer.extend(top.layer);
        self
    }
}

impl Encoder for MiniLm {
    type Input = TokenBatch;

    /// Sentence embeddings `[batch, hidden]`.
    fn encode(&self, tokens: TokenBatch) -> Tensor<2> {
        pool(self.hidden_states(tokens))
    }
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
    let [batch, len] = mask.dims();
    // Padding gets a large negative score before the softmax (Hugging Face uses the dtype's
    // minimum; -1e4 already underflows exp() to 0 in f32).
    let bias = ((mask - 1.0) * 1e4).reshape([batch, 1, 1, len]);
    layers
        .iter()
        .fold(x, |x, layer| layer.forward(x, bias.clone()))
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
