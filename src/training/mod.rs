//! Training: the run's config and regime ([`config`]), the stratified split and folds
//! ([`split`]), cross-validation over the folds ([`cv`]), the frozen encoders' cached outputs
//! ([`inputs`]), what a regime is ([`regime`]: the trait every way of training implements),
//! one generic epoch loop ([`fit`]) and its loss ([`loss`]), evaluation ([`evaluate`]) and one
//! type per regime: [`scratch::Scratch`] (end to end, augmented),
//! [`heads::Heads`] (heads on cached features), [`mixed::Mixed`] (cached picture features
//! beside a scratch caption encoder, optionally distilled from a [`distil::Teacher`]),
//! [`finetune::FineTune`] (heads plus MiniLM's top layers on cached lower states, and
//! optionally the picture encoder's top layers on cached activations).
//! Nothing here writes files; [`crate::pipeline`] runs the stages and [`crate::report`] records
//! them.

pub mod config;
pub mod cv;
pub mod distil;
pub mod evaluate;
pub mod finetune;
pub mod fit;
pub mod heads;
pub mod inputs;
pub mod loss;
pub mod mixed;
pub mod regime;
pub mod scratch;
pub mod split;

use serde::{Deserialize, Serialize};

pub use config::{RegimeKind, Selection, TrainingConfig, TrainingOptions};

/// One epoch of training, as `metrics.json` and the training curves record it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub val_macro_f1: f64,
    pub seconds: f64,
}

/// How long the frozen encoders took over the pairs the feature cache lacked (`text`: MiniLM's
/// caption features, or, fine-tuning, its states below the fine-tuned layers).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FeatureTiming {
    pub pairs: usize,
    pub image_computed: usize,
    pub image_seconds: f64,
    pub text_computed: usize,
    pub text_seconds: f64,
}

/// A BERT of `layers` layers, otherwise as small as it gets: the tests' MiniLM shape.
#[cfg(test)]
pub(crate) fn tiny_minilm(layers: usize) -> mvsa_model::config::MiniLmConfig {
    mvsa_model::config::MiniLmConfig {
        vocab_size: 100,
        hidden_size: 8,
        num_hidden_layers: layers,
        num_attention_heads: 2,
        intermediate_size: 16,
        max_position_embeddings: 128,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
    }
}
