//! Heads plus the encoders' top layers: MiniLM's top layers on its lower layers' states, ran
//! once over every caption ([`super::inputs::lower_states`]), and the picture encoder's top
//! layers on its lower blocks' activations ([`super::inputs::image_activations`]; with none to
//! fine-tune, its pooled features). What is fine-tuned learns at a much smaller rate than the
//! fresh heads.

use anyhow::{Result, bail};
use burn::module::{Module, ParamGroup};
use burn::prelude::*;
use mvsa_model::ModelConfig;
use mvsa_model::model::{
    HiddenStates, ImageEncoder, MiniLm, MiniLmTop, MobileCnn, MobileTop, SentimentModel,
    TextEncoder,
};
use rand::Rng;
use rand::rngs::StdRng;

use super::distil::{Identified, Taught, Teacher};
use super::regime::{Batch, Labelled, Regime, labels};
use crate::progress::Progress;

pub struct FineTune {
    config: ModelConfig,
    image: Option<Picture>,
    /// MiniLM below the fine-tuned layers (frozen), and the layers to fine-tune.
    lower: MiniLm,
    top: MiniLmTop,
    hidden: usize,
    lr: f64,
    mirror_tta: bool,
    device: Device,
    taught: Option<Taught<States>>,
}

/// The picture encoder as this regime trains it.
// One per run: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Picture {
    /// Frozen: the examples hold its pooled features.
    Frozen(ImageEncoder),
    /// The blocks below the fine-tuned layers (frozen) and those layers.
    Tuned {
        lower: MobileCnn,
        top: MobileTop,
        lr: f64,
    },
}

/// Half the pictures of a training batch are mirrored; none without augmentation.
fn augment_mirror(augment: &mut Option<&mut StdRng>) -> bool {
    augment.as_mut().is_some_and(|rng| rng.random_bool(0.5))
}

/// A pair as this regime keeps it: the picture's activations below the fine-tuned layers
/// (`[c, h, w]`; pooled features as `[1280, 1, 1]` when none are) and the caption's hidden
/// states below the fine-tuned layers (`[tokens, hidden]`), row-major; and its id among a
/// teacher's pairs (labelled ones first, in order, then the unlabelled ones).
pub struct States {
    pub image: Option<Activations>,
    pub states: Vec<f32>,
    pub id: usize,
}

impl Identified for States {
    fn id(&self) -> usize {
        self.id
    }
}

/// A picture's activations as the centre crop gives them and, for augmentation, as its mirror
/// image does.
pub struct Activations {
    pub shape: [usize; 3],
    pub centre: Vec<f32>,
    pub mirrored: Option<Vec<f32>>,
}

impl FineTune {
    /// Fine-tune the top `layers` of `minilm` (at learning rate `lr`) next to the `image`
    /// encoder, whose top `image_layers` are fine-tuned at `image_lr` (0: frozen); all live on
    /// `device`.
    pub fn new(
        config: &ModelConfig,
        image: Option<ImageEncoder>,
        (image_layers, image_lr): (usize, f64),
        minilm: MiniLm,
        (layers, lr): (usize, f64),
        device: &Device,
    ) -> Result<Self> {
        let hidden = config
            .text
            .as_ref()
            .map_or(0, |b| TextEncoder::features(&b.encoder));
        let (lower, top) = minilm.split_top(layers);
        let image = match (image, image_layers) {
            (None, _) => None,
            (Some(encoder), 0) => Some(Picture::Frozen(encoder)),
            (Some(ImageEncoder::Pretrained(cnn)), n) => {
                let (lower, top) = cnn.split_top(n - 1);
                Some(Picture::Tuned {
                    lower,
                    top,
                    lr: image_lr,
                })
            }
            (Some(ImageEncoder::Scratch(_)), _) => {
                bail!("only a pretrained picture encoder is fine-tuned")
            }
        };
        Ok(Self {
            config: config.clone(),
            image,
            lower,
            top,
            hidden,
            lr,
            mirror_tta: false,
            device: device.clone(),
            taught: None,
        })
    }

    /// Learn from `teacher` too (its ids: the `labelled` pairs, then `unlabelled`), and train
    /// on the `unlabelled` pairs with its targets alone.
    pub fn with_teacher(
        mut self,
        teacher: Teacher,
        labelled: usize,
        unlabelled: Vec<States>,
    ) -> Result<Self> {
        self.taught = Some(Taught::new(teacher, labelled, unlabelled)?);
        Ok(self)
    }

    /// The frozen layers, whose states the examples hold.
    pub fn lower(&self) -> &MiniLm {
        &self.lower
    }

    /// The picture encoder when none of it is fine-tuned: the examples hold its pooled
    /// features.
    pub fn image_frozen(&self) -> Option<&ImageEncoder> {
        match &self.image {
            Some(Picture::Frozen(encoder)) => Some(encoder),
            _ => None,
        }
    }

    /// The picture encoder's blocks below the fine-tuned layers, whose activations the
    /// examples hold (`None`: frozen, the examples hold its pooled features).
    pub fn image_lower(&self) -> Option<&MobileCnn> {
        match &self.image {
            Some(Picture::Tuned { lower, .. }) => Some(lower),
            _ => None,
        }
    }

    /// Measure mirror test-time augmentation: evaluation averages each picture's centre crop
    /// and its mirror image (the classifier does not).
    pub fn with_mirror_tta(mut self, on: bool) -> Self {
        self.mirror_tta = on;
        self
    }

    /// Each example's picture activations, the mirrored one where `mirror` says so and there
    /// is one, stacked into `[batch, c, h, w]`.
    fn pictures(
        examples: &[&Labelled<States>],
        mut mirror: impl FnMut() -> bool,
        device: &Device,
    ) -> Option<Tensor<4>> {
        let mut flat = Vec::new();
        let mut shape = [0; 3];
        for e in examples {
            let a = e.input.image.as_ref()?;
            // Asked only where there is a mirror image: frozen pictures draw no random numbers,
            // so the default regime shuffles as it always did.
            let values = match &a.mirrored {
                Some(m) if mirror() => m,
                _ => &a.centre,
            };
            flat.extend_from_slice(values);
            shape = a.shape;
        }
        let [c, h, w] = shape;
        Some(Tensor::from_data(
            TensorData::new(flat, [examples.len(), c, h, w]),
            device,
        ))
    }
}

impl Regime for FineTune {
    type Image = MobileTop;
    type Text = MiniLmTop;
    type Example = States;

    fn init(&self, device: &Device) -> Result<SentimentModel<MobileTop, MiniLmTop>> {
        // The weights were loaded on the plain device: `train` puts them on its autodiff
        // counterpart with gradients (`fork` would keep them plain).
        let image = self.image.as_ref().map(|p| match p {
            Picture::Frozen(_) => MobileTop::pooled(),
            Picture::Tuned { top, .. } => top.clone().train(),
        });
        let top = self.top.clone().train();
        Ok(self.config.init_with(image, Some(top), device)?)
    }

    fn batch(
        &self,
        examples: &[&Labelled<States>],
        mut augment: Option<&mut StdRng>,
        device: &Device,
    ) -> Batch<MobileTop, MiniLmTop> {
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
        // Training batches learn from the teacher; evaluation scores against the labels.
        let targets = match (augment.is_some(), &self.taught) {
            (true, Some(taught)) => taught.targets(examples, device),
            _ => None,
        };
        let text = HiddenStates {
            states: Tensor::from_data(TensorData::new(states, [batch, width, hidden]), device),
            mask: Tensor::from_data(TensorData::new(mask, [batch, width]), device),
        };
        Batch {
            image: Self::pictures(examples, || augment_mirror(&mut augment), device),
            text: Some(text),
            labels: labels(examples, device),
            targets,
        }
    }

    /// A new teacher for these pairs (each cross-validation fold, then the final fit).
    fn prepare(
        &self,
        train: &[&Labelled<States>],
        device: &Device,
        progress: &dyn Progress,
    ) -> Result<()> {
        match &self.taught {
            Some(taught) => taught.prepare(train, device, progress),
            None => Ok(()),
        }
    }

    fn unlabelled(&self) -> &[Labelled<States>] {
        self.taught.as_ref().map_or(&[], Taught::unlabelled)
    }

    fn views(&self) -> usize {
        match (&self.image, self.mirror_tta) {
            (Some(Picture::Tuned { .. }), true) => 2,
            _ => 1,
        }
    }

    /// View 1: every picture mirrored.
    fn view(
        &self,
        examples: &[&Labelled<States>],
        v: usize,
        device: &Device,
    ) -> Batch<MobileTop, MiniLmTop> {
        let mut batch = self.batch(examples, None, device);
        if v == 1 {
            batch.image = Self::pictures(examples, || true, device);
        }
        batch
    }

    /// Captions run at their own length: batch those of similar length together.
    fn length(&self, example: &States) -> Option<usize> {
        Some(example.states.len() / self.hidden.max(1))
    }

    /// The top layers learn at their fine-tuning rates; the heads at the options' `lr`.
    fn lr_groups(&self, model: &SentimentModel<MobileTop, MiniLmTop>) -> Vec<(ParamGroup, f64)> {
        let text = (model.text_encoder())
            .filter(|top| top.num_params() > 0)
            .map(|top| (ParamGroup::ids_from_module(top.clone()), self.lr));
        let image = match (&self.image, model.image_encoder()) {
            (Some(Picture::Tuned { lr, .. }), Some(top)) => {
                Some((ParamGroup::ids_from_module(top.clone()), *lr))
            }
            _ => None,
        };
        text.into_iter().chain(image).collect()
    }

    fn finish(&self, model: SentimentModel<MobileTop, MiniLmTop>) -> Result<SentimentModel> {
        let text = model
            .text_encoder()
            .map(|top| TextEncoder::Pretrained(self.lower.clone().join(top.clone())));
        let image = match (&self.image, model.image_encoder()) {
            (Some(Picture::Frozen(encoder)), _) => Some(encoder.clone()),
            (Some(Picture::Tuned { lower, .. }), Some(top)) => {
                Some(ImageEncoder::Pretrained(lower.clone().join(top.clone())))
            }
            _ => None,
        };
        let shipped = self.config.init_with(image, text, &self.device)?;
        Ok(shipped.with_heads_of(model))
    }
}

#[cfg(test)]
mod tests;
