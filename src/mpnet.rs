//! sentence-transformers' all-mpnet-base-v2, natively only: a stronger caption encoder than
//! MiniLM (12 layers of 768 against 6 of 384, 110 M parameters) that the page could not afford,
//! so it only ever teaches ([`crate::training::distil`]). MPNet is BERT's post-norm layer with
//! two differences: positions count from `pad + 1` over real tokens (RoBERTa's convention), and
//! every layer adds one learned bias per head and bucket of relative distance (T5's buckets),
//! shared by all layers. Module names follow Hugging Face's `MPNetModel` keys.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use mvsa_model::config::{MiniLmConfig, TextBranchConfig};
use mvsa_model::model::bert::{self, SelfAttention, attend};
use mvsa_model::preprocess::{TextPreprocessor, TokenRows};

/// Relative-distance buckets (`relative_attention_num_buckets`) and the distance from which
/// they grow logarithmically to the last one (Hugging Face's fixed 128).
const BUCKETS: usize = 32;
const MAX_DISTANCE: f64 = 128.0;

/// Its `config.json`'s shape is BERT's (`MiniLmConfig` reads it), with no token types.
pub type MpnetConfig = MiniLmConfig;

/// The shape in `config.json` (Hugging Face's `MPNetConfig`).
pub fn read_config(path: &Path) -> Result<MpnetConfig> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut shape: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    // MPNet has no token types: one, never looked up.
    let fields = (shape.as_object_mut())
        .with_context(|| format!("{} is not an MPNet config", path.display()))?;
    fields.insert("type_vocab_size".into(), 1.into());
    serde_json::from_value(shape)
        .with_context(|| format!("{} is not an MPNet config", path.display()))
}

/// The model with what prepares its captions: its own tokenizer under the shared
/// preprocessing (emoji names, GBK decoding), in a BERT-shaped branch config whose width
/// (768) shapes the heads it feeds.
pub struct MpnetEncoder {
    pub model: Mpnet,
    pub branch: TextBranchConfig,
    pub text: TextPreprocessor,
}

#[derive(Module, Debug)]
pub struct Projections {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
}

#[derive(Module, Debug)]
pub struct Attention {
    attn: Projections,
    norm: LayerNorm,
}

impl SelfAttention for Attention {
    /// `bias` `[batch, heads, len, len]`: relative positions plus padding.
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let a = &self.attn;
        let (q, k, v) = (
            a.q.forward(x.clone()),
            a.k.forward(x.clone()),
            a.v.forward(x.clone()),
        );
        self.norm
            .forward(a.o.forward(attend(q, k, v, bias, a.heads)) + x)
    }
}

/// MPNet's layer: BERT's, over MPNet's attention.
pub type Layer = bert::Layer<Attention>;

#[derive(Module, Debug)]
pub struct Embeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    norm: LayerNorm,
}

#[derive(Module, Debug)]
pub struct Layers {
    layer: Vec<Layer>,
    relative_attention_bias: Embedding,
}

#[derive(Module, Debug)]
pub struct Mpnet {
    embeddings: Embeddings,
    encoder: Layers,
    /// The padding token's id: positions count from the one after it.
    pad_id: usize,
}

impl Mpnet {
    pub fn new(shape: &MpnetConfig, pad_id: usize, device: &Device) -> Self {
        let hidden = shape.hidden_size;
        let linear = |from, to| LinearConfig::new(from, to).init(device);
        let norm = || {
            LayerNormConfig::new(hidden)
                .with_epsilon(shape.layer_norm_eps)
                .init(device)
        };
        let layer = || {
            let attention = Attention {
                attn: Projections {
                    q: linear(hidden, hidden),
                    k: linear(hidden, hidden),
                    v: linear(hidden, hidden),
                    o: linear(hidden, hidden),
                    heads: shape.num_attention_heads,
                },
                norm: norm(),
            };
            let eps = shape.layer_norm_eps;
            Layer::new(attention, hidden, shape.intermediate_size, eps, device)
        };
        let embedding = |rows, width| EmbeddingConfig::new(rows, width).init(device);
        Self {
            embeddings: Embeddings {
                word_embeddings: embedding(shape.vocab_size, hidden),
                position_embeddings: embedding(shape.max_position_embeddings, hidden),
                norm: norm(),
            },
            encoder: Layers {
                layer: (0..shape.num_hidden_layers).map(|_| layer()).collect(),
                relative_attention_bias: embedding(BUCKETS, shape.num_attention_heads),
            },
            pad_id,
        }
    }

    /// The original weights (`model.safetensors`; `pooler` and `position_ids` are not used).
    pub fn load(mut self, path: &Path) -> Result<Self> {
        let mut store = SafetensorsStore::from_file(path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .with_key_remapping(r"\.LayerNorm\.", ".norm.")
            .with_key_remapping(r"\.intermediate\.dense\.", ".intermediate.");
        self.load_from(&mut store)
            .map_err(|e| anyhow!("cannot load {}: {e}", path.display()))?;
        Ok(self)
    }

    /// Sentence embeddings `[batch, hidden]` of tokenised captions: the mean of the last
    /// layer over real tokens, L2-normalised (the model's own pooling).
    pub fn encode(&self, rows: &TokenRows, device: &Device) -> Tensor<2> {
        let [batch, len] = rows.shape;
        let ids =
            Tensor::<2, Int>::from_data(TensorData::new(rows.ids.clone(), rows.shape), device);
        let mask = Tensor::<2>::from_data(TensorData::new(rows.mask.clone(), rows.shape), device);
        let positions = Tensor::<2, Int>::from_data(
            TensorData::new(positions(&rows.mask, len, self.pad_id), rows.shape),
            device,
        );
        let e = &self.embeddings;
        let x = e.word_embeddings.forward(ids) + e.position_embeddings.forward(positions);
        let bias = self.relative_bias(len, device)
            + ((mask.clone() - 1.0) * 1e4).reshape([batch, 1, 1, len]);
        let states = (self.encoder.layer.iter())
            .fold(e.norm.forward(x), |x, layer| layer.forward(x, bias.clone()));
        let mask = mask.reshape([batch, len, 1]);
        let count = mask.clone().sum_dim(1).clamp_min(1e-9);
        let mean = ((states * mask).sum_dim(1) / count).flatten(1, 2);
        let norm = (mean.clone().powi_scalar(2).sum_dim(1).sqrt()).clamp_min(1e-12);
        mean / norm
    }

    /// `[1, heads, len, len]`: each head's learned bias for the distance from query to key.
    fn relative_bias(&self, len: usize, device: &Device) -> Tensor<4> {
        let buckets: Vec<i64> = (0..len)
            .flat_map(|q| (0..len).map(move |k| bucket(k as i64 - q as i64) as i64))
            .collect();
        let buckets = Tensor::<2, Int>::from_data(TensorData::new(buckets, [1, len * len]), device);
        let values = self.encoder.relative_attention_bias.forward(buckets);
        let heads = values.dims()[2];
        values
            .reshape([len, len, heads])
            .permute([2, 0, 1])
            .unsqueeze::<4>()
    }
}

/// Position ids: real tokens count `pad + 1, pad + 2, …`, padding stays at `pad`.
fn positions(mask: &[f32], len: usize, pad: usize) -> Vec<i64> {
    let mut ids = Vec::with_capacity(mask.len());
    for row in mask.chunks(len.max(1)) {
        let mut seen = 0;
        for &m in row {
            let real = m > 0.5;
            seen += usize::from(real);
            ids.push((pad + if real { seen } else { 0 }) as i64);
        }
    }
    ids
}

/// T5's bidirectional bucket of a key `distance` (key − query) after the query: half the
/// buckets for keys before it; within each half, exact distances up to a quarter of the
/// buckets, then logarithmic up to `MAX_DISTANCE`.
fn bucket(distance: i64) -> usize {
    let half = BUCKETS / 2;
    let n = -distance;
    let side = if n < 0 { half } else { 0 };
    let n = n.unsigned_abs() as usize;
    let exact = half / 2;
    if n < exact {
        return side + n;
    }
    let scale = (n as f64 / exact as f64).ln() / (MAX_DISTANCE / exact as f64).ln();
    let large = exact + (scale * (half - exact) as f64) as usize;
    side + large.min(half - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `scripts/reference/tiny_mpnet.py`: random weights under the real key names, and the
    /// embeddings an independent numpy forward pass gives for padded token rows.
    #[test]
    fn embeddings_match_the_numpy_reference() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-mpnet");
        let shape = read_config(&dir.join("config.json")).unwrap();
        let device = Device::flex();
        let model = Mpnet::new(&shape, 1, &device).load(&dir.join("model.safetensors"));
        let model = model.unwrap();
        let bytes = std::fs::read(dir.join("expected.json")).unwrap();
        let expected: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let rows =
            |key: &str| -> Vec<Vec<f64>> { serde_json::from_value(expected[key].clone()).unwrap() };
        let (ids, mask, want) = (rows("ids"), rows("mask"), rows("embeddings"));
        let shape = [ids.len(), ids[0].len()];
        let tokens = TokenRows {
            ids: ids.iter().flatten().map(|&v| v as i64).collect(),
            mask: mask.iter().flatten().map(|&v| v as f32).collect(),
            shape,
        };
        let got = model.encode(&tokens, &device).into_data();
        let got: Vec<f32> = got.try_to_vec().unwrap();
        let want: Vec<f64> = want.into_iter().flatten().collect();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!((f64::from(*g) - w).abs() < 1e-4, "{got:?}\n{want:?}");
        }
    }

    #[test]
    fn buckets_follow_t5() {
        // Values of Hugging Face's `relative_position_bucket` (32 buckets, 128 apart at most).
        let expected = [
            (0, 0),
            (1, 17),
            (-1, 1),
            (7, 23),
            (-7, 7),
            (8, 24),
            (-8, 8),
            (12, 25),
            (-20, 10),
            (100, 31),
            (-300, 15),
        ];
        for (distance, want) in expected {
            assert_eq!(bucket(distance), want, "distance {distance}");
        }
    }

    #[test]
    fn positions_count_real_tokens_after_the_pad_id() {
        let mask = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        assert_eq!(positions(&mask, 3, 1), vec![2, 3, 4, 2, 3, 1]);
    }
}
