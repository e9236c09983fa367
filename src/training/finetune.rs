//! Heads plus MiniLM's top layers: the layers below are frozen and ran once over every caption
//! ([`super::inputs::lower_states`]), the picture encoder is frozen (cached features); the top
//! layers train with the heads at a much smaller learning rate than the fresh heads.

use anyhow::Result;
use burn::module::{Module, ParamGroup};
use burn::prelude::*;
use mvsa_model::ModelConfig;
use mvsa_model::model::{
    HiddenStates, ImageEncoder, MiniLm, MiniLmTop, Precomputed, SentimentModel, TextEncoder,
};
use rand::rngs::StdRng;

use super::fit::{Batch, Labelled, Regime, labels};
use super::heads::stack;

pub struct FineTune {
    config: ModelConfig,
    image: Option<ImageEncoder>,
    /// MiniLM below the fine-tuned layers (frozen), and the layers to fine-tune.
    lower: MiniLm,
    top: MiniLmTop,
    hidden: usize,
    lr: f64,
    device: Device,
}

/// A pair as this regime keeps it: the picture's features and the caption's hidden states
/// below the fine-tuned layers, `[tokens, hidden]` row-major.
pub struct States {
    pub image: Option<Vec<f32>>,
    pub states: Vec<f32>,
}

impl FineTune {
    /// Fine-tune the top `layers` of `minilm` (at learning rate `lr`) next to the frozen
    /// `image` encoder; both live on `device`.
    pub fn new(
        config: &ModelConfig,
        image: Option<ImageEncoder>,
        minilm: MiniLm,
        layers: usize,
        lr: f64,
        device: &Device,
    ) -> Self {
        let hidden = config
            .text
            .as_ref()
            .map_or(0, |b| TextEncoder::features(&b.encoder));
        let (lower, top) = minilm.split_top(layers);
        Self {
            config: config.clone(),
            image,
            lower,
            top,
            hidden,
            lr,
            device: device.clone(),
        }
    }

    /// The frozen layers, whose states the examples hold.
    pub fn lower(&self) -> &MiniLm {
        &self.lower
    }
}

impl Regime for FineTune {
    type Image = Precomputed;
    type Text = MiniLmTop;
    type Example = States;

    fn init(&self, device: &Device) -> Result<SentimentModel<Precomputed, MiniLmTop>> {
        let image = self.config.image.as_ref().map(|_| Precomputed);
        // The weights were loaded on the plain device: `train` puts them on its autodiff
        // counterpart with gradients (`fork` would keep them plain).
        let top = self.top.clone().train();
        Ok(self.config.init_with(image, Some(top), device)?)
    }

    fn batch(
        &self,
        examples: &[&Labelled<States>],
        _augment: Option<&mut StdRng>,
        device: &Device,
    ) -> Batch<Precomputed, MiniLmTop> {
        let hidden = self.hidden.max(1);
        let lens: Vec<usize> = examples
            .iter()
            .map(|e| e.input.states.len() / hidden)
            .collect();
        let width = lens.iter().copied().max().unwrap_or(1).max(1);
        let mut states = vec![0.0f32; examples.len() * width * hidden];
        let mut mask = vec![0.0f32; examples.len() * width];
        for (i, e) in examples.iter().enumerate() {
            states[i * width * hidden..][..e.input.states.len()].copy_from_slice(&e.input.states);
            mask[i * width..][..lens[i]].fill(1.0);
        }
        let batch = examples.len();
        let text = HiddenStates {
            states: Tensor::from_data(TensorData::new(states, [batch, width, hidden]), device),
            mask: Tensor::from_data(TensorData::new(mask, [batch, width]), device),
        };
        Batch {
            image: stack(examples, |s| s.image.as_ref(), device),
            text: Some(text),
            labels: labels(examples, device),
        }
    }

    /// Captions run at their own length: batch those of similar length together.
    fn length(&self, example: &States) -> Option<usize> {
        Some(example.states.len() / self.hidden.max(1))
    }

    /// The top layers learn at the fine-tuning rate; the heads at the options' `lr`.
    fn lr_groups(&self, model: &SentimentModel<Precomputed, MiniLmTop>) -> Vec<(ParamGroup, f64)> {
        model
            .text_encoder()
            .map(|top| (ParamGroup::ids_from_module(top.clone()), self.lr))
            .into_iter()
            .collect()
    }

    fn finish(self, model: SentimentModel<Precomputed, MiniLmTop>) -> Result<SentimentModel> {
        let text = model
            .text_encoder()
            .map(|top| TextEncoder::Pretrained(self.lower.join(top.clone())));
        let shipped = self.config.init_with(self.image, text, &self.device)?;
        Ok(shipped.with_heads_of(model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::GradientsParams;
    use mvsa_model::config::{MiniLmConfig, TextBranchConfig};

    #[test]
    fn gradients_reach_the_top_layers() {
        let shape = MiniLmConfig {
            vocab_size: 20,
            hidden_size: 8,
            num_hidden_layers: 3,
            num_attention_heads: 2,
            intermediate_size: 16,
            max_position_embeddings: 16,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
        };
        let config = ModelConfig::new(None, Some(TextBranchConfig::minilm(shape.clone())));
        let device = Device::flex();
        let regime = FineTune::new(
            &config,
            None,
            MiniLm::new(&shape, &device),
            1,
            1e-4,
            &device,
        );
        let autodiff = device.clone().autodiff();
        let model = regime.init(&autodiff).unwrap();
        let examples: Vec<Labelled<States>> = (0..2)
            .map(|i| Labelled {
                input: States {
                    image: None,
                    states: vec![0.1 * i as f32 + 0.3; 3 * 8],
                },
                label: i,
            })
            .collect();
        let refs: Vec<&Labelled<States>> = examples.iter().collect();
        let batch = regime.batch(&refs, None, &autodiff);
        let output = model.forward(batch.image, batch.text).unwrap();
        let mut grads = output.fused.sum().backward();
        let top = GradientsParams::from_module(&mut grads, model.text_encoder().unwrap());
        assert!(!top.is_empty(), "the top layers get no gradient");
        assert_eq!(regime.lr_groups(&model).len(), 1);
    }
}
