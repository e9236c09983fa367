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
use super::fit::{Batch, Labelled, Regime, labels};
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

    fn finish(self, model: SentimentModel<MobileTop, MiniLmTop>) -> Result<SentimentModel> {
        let text = model
            .text_encoder()
            .map(|top| TextEncoder::Pretrained(self.lower.join(top.clone())));
        let image = match (self.image, model.image_encoder()) {
            (Some(Picture::Frozen(encoder)), _) => Some(encoder),
            (Some(Picture::Tuned { lower, .. }), Some(top)) => {
                Some(ImageEncoder::Pretrained(lower.join(top.clone())))
            }
            _ => None,
        };
        let shipped = self.config.init_with(image, text, &self.device)?;
        Ok(shipped.with_heads_of(model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::GradientsParams;
    use burn::tensor::{Distribution, Tolerance};
    use mvsa_model::config::{
        ImageBranchConfig, MiniLmConfig, TextBranchConfig, TextEncoderConfig,
    };
    use mvsa_model::model::Encoder;
    use rand::SeedableRng;

    use crate::progress::Quiet;
    use crate::training::TrainingOptions;
    use crate::training::heads::Features;

    #[test]
    fn gradients_reach_the_picture_encoders_top_and_mirrors_are_drawn() {
        let config = ModelConfig::new(Some(ImageBranchConfig::mobilenet_v2()), Some(minilm()));
        let device = Device::flex();
        let shape = match &config.text.as_ref().unwrap().encoder {
            TextEncoderConfig::MinilmL6(shape) => shape.clone(),
            _ => unreachable!(),
        };
        let image = ImageEncoder::Pretrained(MobileCnn::mobilenet_v2(false, &device));
        let regime = FineTune::new(
            &config,
            Some(image),
            (2, 1e-4),
            MiniLm::new(&shape, &device),
            (0, 1e-4),
            &device,
        )
        .unwrap();
        assert_eq!(regime.image_lower().unwrap().blocks(), 16);
        let examples: Vec<Labelled<States>> = (0..8)
            .map(|i| Labelled {
                input: States {
                    image: Some(Activations {
                        shape: [160, 2, 2],
                        centre: vec![0.0; 160 * 4],
                        mirrored: Some(vec![1.0; 160 * 4]),
                    }),
                    states: vec![0.1 * i as f32; 3 * 8],
                    id: i,
                },
                label: i % 3,
            })
            .collect();
        let refs: Vec<&Labelled<States>> = examples.iter().collect();
        let autodiff = device.clone().autodiff();
        let model = regime.init(&autodiff).unwrap();
        let batch = regime.batch(&refs, None, &autodiff);
        let output = model.forward(batch.image, batch.text).unwrap();
        let mut grads = output.fused.sum().backward();
        let top = GradientsParams::from_module(&mut grads, model.image_encoder().unwrap());
        assert!(!top.is_empty(), "the picture's top layers get no gradient");
        assert_eq!(regime.lr_groups(&model).len(), 1, "MiniLM is frozen here");
        // Batch norm keeps ImageNet's statistics while training: the same features as the
        // model in inference mode.
        let maps = || Tensor::<4>::random([4, 160, 2, 2], Distribution::Default, &device);
        let x = maps();
        let training = model
            .image_encoder()
            .unwrap()
            .encode(x.clone().to_device(&autodiff));
        let inference = model.valid().image_encoder().unwrap().encode(x);
        let training = training.to_device(&device).into_data();
        training.assert_approx_eq::<f32>(&inference.into_data(), Tolerance::default());
        // Evaluation sees the centre crop; training draws the mirror image about half the time.
        let sum = |rng| {
            let batch = regime.batch(&refs, rng, &device);
            batch.image.unwrap().sum().into_scalar::<f32>() / (160.0 * 4.0)
        };
        assert_eq!(sum(None), 0.0);
        let mirrored = sum(Some(&mut StdRng::seed_from_u64(1)));
        assert!((1.0..8.0).contains(&mirrored), "{mirrored} of 8 mirrored");
        // Mirror test-time augmentation: a second view, every picture mirrored.
        assert_eq!(regime.views(), 1);
        let regime = regime.with_mirror_tta(true);
        assert_eq!(regime.views(), 2);
        let view = |v| regime.view(&refs, v, &device).image.unwrap().sum();
        assert_eq!(view(0).into_scalar::<f32>(), 0.0);
        assert_eq!(view(1).into_scalar::<f32>(), 8.0 * 160.0 * 4.0);
    }

    /// A regime with a frozen picture encoder and one of three tiny MiniLM layers tuned, and
    /// `n` pairs for it (pooled picture features; two tokens' states; ids `0..n`).
    fn frozen_picture(n: usize) -> (ModelConfig, FineTune, Vec<Labelled<States>>) {
        let config = ModelConfig::new(Some(ImageBranchConfig::mobilenet_v2()), Some(minilm()));
        let device = Device::flex();
        let image = ImageEncoder::Pretrained(MobileCnn::mobilenet_v2(false, &device));
        let minilm = MiniLm::new(&shape(), &device);
        let regime = FineTune::new(&config, Some(image), (0, 0.0), minilm, (1, 1e-4), &device);
        let examples = (0..n)
            .map(|i| Labelled {
                input: States {
                    image: Some(Activations {
                        shape: [1280, 1, 1],
                        centre: vec![i as f32 / 4.0; 1280],
                        mirrored: None,
                    }),
                    states: vec![0.1 * i as f32; 2 * 8],
                    id: i,
                },
                label: i % 3,
            })
            .collect();
        (config, regime.unwrap(), examples)
    }

    #[test]
    fn frozen_pictures_draw_no_random_numbers() {
        let (_, regime, examples) = frozen_picture(4);
        let device = Device::flex();
        assert!(regime.image_lower().is_none() && regime.image_frozen().is_some());
        let refs: Vec<&Labelled<States>> = examples.iter().collect();
        let mut rng = StdRng::seed_from_u64(7);
        let batch = regime.batch(&refs, Some(&mut rng), &device);
        assert_eq!(batch.image.unwrap().dims(), [4, 1280, 1, 1]);
        let untouched: u64 = StdRng::seed_from_u64(7).random();
        assert_eq!(rng.random::<u64>(), untouched);
    }

    #[test]
    fn a_teacher_sets_the_training_targets_and_brings_its_unlabelled_pairs() {
        let device = Device::flex();
        // Three labelled pairs and one unlabelled; the teacher reads its own features of them.
        let (config, regime, mut examples) = frozen_picture(4);
        let unlabelled = examples.pop().unwrap().input;
        let features = |i: usize| Features {
            image: Some(vec![i as f32 / 4.0; 1280]),
            text: Some(vec![i as f32; 8]),
        };
        let labelled = (0..3).map(features).collect();
        let options = TrainingOptions::heads_only();
        let teacher = Teacher::new(&config, labelled, vec![features(3)], 0.5, options);
        let regime = regime.with_teacher(teacher.unwrap(), 3, vec![unlabelled]);
        let regime = regime.unwrap();
        let train: Vec<&Labelled<States>> = examples.iter().collect();
        let mut rng = StdRng::seed_from_u64(1);
        // No teacher fitted yet: no unlabelled pairs, no targets but the labels.
        assert!(regime.unlabelled().is_empty());
        let targets = |batch: &[&Labelled<States>], rng: Option<&mut StdRng>| {
            regime.batch(batch, rng, &device).targets
        };
        assert!(targets(&train, Some(&mut rng)).is_none());
        regime.prepare(&train, &device, &Quiet).unwrap();
        let unlabelled = regime.unlabelled();
        assert_eq!(unlabelled.len(), 1);
        // Training: pair 1's target is half its class, half the teacher's; the unlabelled
        // pair's the teacher's alone (by ids: the regime tells which pairs are labelled).
        let batch = [train[1], &unlabelled[0]];
        let rows = targets(&batch, Some(&mut rng)).unwrap().into_data();
        let rows: Vec<f32> = rows.try_to_vec::<f32>().unwrap();
        let taught = regime.taught.as_ref().unwrap();
        taught.assert_targets(&rows, (1, 1), 3, &device);
        // Pair 1's row is its class mixed with the teacher's: at least half on class 1.
        assert!(
            rows[1] >= 0.5 && rows[0] <= 0.5 && rows[2] <= 0.5,
            "{rows:?}"
        );
        assert!(targets(&batch, None).is_none());
    }

    fn minilm() -> TextBranchConfig {
        TextBranchConfig::minilm(shape())
    }

    fn shape() -> MiniLmConfig {
        crate::training::tiny_minilm(3)
    }

    #[test]
    fn gradients_reach_the_top_layers() {
        let shape = shape();
        let config = ModelConfig::new(None, Some(minilm()));
        let device = Device::flex();
        let regime = FineTune::new(
            &config,
            None,
            (0, 1e-4),
            MiniLm::new(&shape, &device),
            (1, 1e-4),
            &device,
        )
        .unwrap();
        let autodiff = device.clone().autodiff();
        let model = regime.init(&autodiff).unwrap();
        let examples: Vec<Labelled<States>> = (0..2)
            .map(|i| Labelled {
                input: States {
                    image: None,
                    states: vec![0.1 * i as f32 + 0.3; 3 * 8],
                    id: i,
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
