//! What a regime is: one way of training the model (what it keeps of each pair, how pairs
//! become a batch, which module learns, what ships), the trait the epoch loop ([`super::fit`]),
//! the loss and evaluation are written against; and the labelled pair every regime keeps.

use anyhow::Result;
use burn::module::ParamGroup;
use burn::prelude::*;
use mvsa_model::model::{Encoder, SentimentModel};
use rand::rngs::StdRng;

use crate::progress::Progress;

/// A training pair as a regime keeps it, with its class.
pub struct Labelled<X> {
    pub input: X,
    pub label: usize,
}

/// What each branch's encoder reads for a batch, and the batch's classes.
pub struct Batch<I: Encoder, T: Encoder> {
    pub image: Option<I::Input>,
    pub text: Option<T::Input>,
    pub labels: Tensor<1, Int>,
    /// Each pair's target probabilities `[batch, classes]`, where the regime learns from soft
    /// targets (a teacher's, distilling) instead of the labels alone.
    pub targets: Option<Tensor<2>>,
}

/// One way of training the model: what it keeps of each pair, how pairs become a batch, which
/// module learns, and how the result becomes the model that ships.
pub trait Regime {
    type Image: Encoder;
    type Text: Encoder;
    type Example: Sync;

    /// The module to train, freshly initialised on `device` (an autodiff device).
    fn init(&self, device: &Device) -> Result<SentimentModel<Self::Image, Self::Text>>;

    /// Tensors for `examples`; with `augment`, the regime's augmentation draws from it.
    fn batch(
        &self,
        examples: &[&Labelled<Self::Example>],
        augment: Option<&mut StdRng>,
        device: &Device,
    ) -> Batch<Self::Image, Self::Text>;

    /// How long an example is where a batch pads to its longest (captions at their own
    /// length): each epoch then batches pairs of similar length together, which saves the
    /// padding's compute. `None` (the default): batches are taken as shuffled.
    fn length(&self, _example: &Self::Example) -> Option<usize> {
        None
    }

    /// How many views of each example evaluation averages the probabilities of (test-time
    /// augmentation); 1, the default: the example as it is.
    fn views(&self) -> usize {
        1
    }

    /// View `v` (of [`Regime::views`]) of `examples` for evaluation; view 0 is the batch
    /// without augmentation.
    fn view(
        &self,
        examples: &[&Labelled<Self::Example>],
        _v: usize,
        device: &Device,
    ) -> Batch<Self::Image, Self::Text> {
        self.batch(examples, None, device)
    }

    /// Called by [`fit`] before it trains on `train` (a fold's pairs, or every pair): a regime
    /// that learns from a teacher fits the teacher on these pairs, and on these alone.
    fn prepare(
        &self,
        _train: &[&Labelled<Self::Example>],
        _device: &Device,
        _progress: &dyn Progress,
    ) -> Result<()> {
        Ok(())
    }

    /// Pairs without a label trained on beside the labelled ones (their batches carry
    /// `targets`; their `label` is not read). None by default.
    fn unlabelled(&self) -> &[Labelled<Self::Example>] {
        &[]
    }

    /// Parameters that learn at their own initial rate (everything else: the options' `lr`).
    fn lr_groups(
        &self,
        _model: &SentimentModel<Self::Image, Self::Text>,
    ) -> Vec<(ParamGroup, f64)> {
        Vec::new()
    }

    /// The trained module as the model that ships: frozen encoders back under the heads (a
    /// copy of them: each cross-validation fold's model is finished too).
    fn finish(&self, model: SentimentModel<Self::Image, Self::Text>) -> Result<SentimentModel>;
}

/// The classes of a batch as a tensor.
pub fn labels<X>(examples: &[&Labelled<X>], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = examples.iter().map(|e| e.label as i64).collect();
    Tensor::from_data(TensorData::new(labels, [examples.len()]), device)
}
