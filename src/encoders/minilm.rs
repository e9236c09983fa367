//! all-MiniLM-L6-v2: a 6-layer BERT (hidden 384, 12 heads, GELU, post-norm) whose sentence
//! embedding is the mean of the last layer over real tokens, L2-normalised. Module names follow
//! Hugging Face's `BertModel` keys so `load` only renames `self`, `LayerNorm` and the dense
//! sub-layers.

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, softmax};

/// The published model's shape (its `config.json`).
#[derive(Clone, Debug)]
pub struct MiniLmShape {
    pub vocab: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub eps: f64,
}

impl Default for MiniLmShape {
    fn default() -> Self {
        Self {
            vocab: 30_522,
            hidden: 384,
            layers: 6,
            heads: 12,
            intermediate: 1536,
            max_positions: 512,
            type_vocab: 2,
            eps: 1e-12,
        }
    }
}

/// Dense → residual add → layer norm (BERT's post-norm sub-layer output).
#[derive(Module, Debug)]
pub struct DenseNorm {
    dense: Linear,
    norm: LayerNorm,
}

impl DenseNorm {
    fn new(inputs: usize, shape: &MiniLmShape, device: &Device) -> Self {
        Self {
            dense: LinearConfig::new(inputs, shape.hidden).init(device),
            norm: LayerNormConfig::new(shape.hidden)
                .with_epsilon(shape.eps)
                .init(device),
        }
    }

    fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.norm.forward(self.dense.forward(x) + residual)
    }
}

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

impl Attention {
    /// `x` `[batch, len, hidden]`, `bias` `[batch, 1, 1, len]` (0 for tokens, very negative for
    /// padding).
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let [batch, len, hidden] = x.dims();
        let head_dim = hidden / self.heads;
        let split = |t: Tensor<3>| {
            t.reshape([batch, len, self.heads, head_dim])
                .swap_dims(1, 2)
        };
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x.clone()));
        let scores = q.matmul(k.swap_dims(2, 3)) / (head_dim as f64).sqrt() + bias;
        let context = softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, len, hidden]);
        self.output.forward(context, x)
    }
}

#[derive(Module, Debug)]
pub struct Layer {
    attention: Attention,
    intermediate: Linear,
    output: DenseNorm,
}

impl Layer {
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let x = self.attention.forward(x, bias);
        let h = gelu(self.intermediate.forward(x.clone()));
        self.output.forward(h, x)
    }
}

#[derive(Module, Debug)]
pub struct Encoder {
    layer: Vec<Layer>,
}

#[derive(Module, Debug)]
pub struct MiniLm {
    embeddings: Embeddings,
    encoder: Encoder,
}

impl MiniLm {
    pub fn new(shape: &MiniLmShape, device: &Device) -> Self {
        let norm = || {
            LayerNormConfig::new(shape.hidden)
                .with_epsilon(shape.eps)
                .init(device)
        };
        let layer = || Layer {
            attention: Attention {
                query: LinearConfig::new(shape.hidden, shape.hidden).init(device),
                key: LinearConfig::new(shape.hidden, shape.hidden).init(device),
                value: LinearConfig::new(shape.hidden, shape.hidden).init(device),
                output: DenseNorm::new(shape.hidden, shape, device),
                heads: shape.heads,
            },
            intermediate: LinearConfig::new(shape.hidden, shape.intermediate).init(device),
            output: DenseNorm::new(shape.intermediate, shape, device),
        };
        Self {
            embeddings: Embeddings {
                word_embeddings: EmbeddingConfig::new(shape.vocab, shape.hidden).init(device),
                position_embeddings: EmbeddingConfig::new(shape.max_positions, shape.hidden)
                    .init(device),
                token_type_embeddings: EmbeddingConfig::new(shape.type_vocab, shape.hidden)
                    .init(device),
                norm: norm(),
            },
            encoder: Encoder {
                layer: (0..shape.layers).map(|_| layer()).collect(),
            },
        }
    }

    pub fn layers(&self) -> usize {
        self.encoder.layer.len()
    }

    /// Hidden states `[batch, len, hidden]` after the first `layers` encoder layers (all type-0
    /// tokens, as for a single sentence), for token ids and their 1/0 mask `[batch, len]`.
    pub fn hidden_states(&self, ids: Tensor<2, Int>, mask: Tensor<2>, layers: usize) -> Tensor<3> {
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
        self.run_layers(e.norm.forward(x), mask, 0..layers)
    }

    /// Run encoder layers `range` on hidden states (fine-tuning runs the top layers alone on
    /// cached states of the lower ones).
    pub fn run_layers(
        &self,
        x: Tensor<3>,
        mask: Tensor<2>,
        range: std::ops::Range<usize>,
    ) -> Tensor<3> {
        let [batch, len] = mask.dims();
        // Padding gets a large negative score before the softmax (Hugging Face uses the dtype's
        // minimum; -1e4 already underflows exp() to 0 in f32).
        let bias = ((mask - 1.0) * 1e4).reshape([batch, 1, 1, len]);
        self.encoder.layer[range]
            .iter()
            .fold(x, |x, layer| layer.forward(x, bias.clone()))
    }

    /// The sentence embedding of final hidden states: mean over real tokens, L2-normalised.
    pub fn pool(states: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
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

    /// Sentence embeddings `[batch, hidden]`.
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        let states = self.hidden_states(ids, mask.clone(), self.layers());
        Self::pool(states, mask)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl MiniLm {
    /// Load `model.safetensors` of sentence-transformers' all-MiniLM-L6-v2 (Hugging Face
    /// `BertModel` keys; the pooler and `position_ids` are not used).
    pub fn load(mut self, path: &std::path::Path) -> anyhow::Result<Self> {
        use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
        let mut store = SafetensorsStore::from_file(path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .with_key_remapping(r"\.LayerNorm\.", ".norm.")
            .with_key_remapping(r"\.attention\.self\.", ".attention.")
            .with_key_remapping(r"\.intermediate\.dense\.", ".intermediate.");
        self.load_from(&mut store)
            .map_err(|e| anyhow::anyhow!("cannot load {}: {e}", path.display()))?;
        Ok(self)
    }
}
