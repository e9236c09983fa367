//! What a training run depends on: the model's config (written as the folder's `config.json`)
//! and the run's own options (recorded in `metrics.json`), nested as Burn's examples nest them.
//! The presets are the one place defaults live; the CLI only overrides them.

use anyhow::{Result, ensure};
use mvsa_model::ModelConfig;
use mvsa_model::config::{ImageBranchConfig, MiniLmConfig, TextBranchConfig, TextEncoderConfig};
pub use mvsa_model::model::{Choice, WeightFormat, WeightPlan};
use serde::{Deserialize, Serialize};

/// The small model's caption encoder: a BiLSTM on 40 tokens of a vocabulary of at most 6,000
/// learned from the training captions. Its picture encoder is the default model's frozen
/// MobileNetV2; a CNN trained from scratch instead (`--image-encoder scratch`) sees 32 px.
pub const SMALL_MAX_LEN: usize = 40;
pub const SMALL_VOCAB: usize = 6000;
pub const SCRATCH_IMAGE_SIZE: usize = 32;

/// The shipped default model: MobileNetV2 and all-MiniLM-L6-v2 (of the given shape).
pub fn default_model(minilm: MiniLmConfig) -> ModelConfig {
    ModelConfig::new(
        Some(ImageBranchConfig::mobilenet_v2()),
        Some(TextBranchConfig::minilm(minilm)),
    )
}

/// The small model: MobileNetV2's features beside a BiLSTM trained from scratch.
pub fn small_model() -> ModelConfig {
    ModelConfig::new(
        Some(ImageBranchConfig::mobilenet_v2()),
        Some(TextBranchConfig::scratch(SMALL_VOCAB, SMALL_MAX_LEN)),
    )
}

#[derive(Clone, Debug)]
pub struct TrainingConfig {
    pub model: ModelConfig,
    pub options: TrainingOptions,
}

/// Which validation number picks the epoch to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    Accuracy,
    MacroF1,
}

/// The run's settings apart from the model's architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingOptions {
    /// Most epochs to run; early stopping may end sooner.
    pub epochs: usize,
    pub batch_size: usize,
    /// Adam learning rate of the heads and of encoders trained from scratch.
    pub lr: f64,
    /// Fine-tune this many of MiniLM's top layers with the heads (0 = every encoder frozen).
    #[serde(default)]
    pub finetune_layers: usize,
    /// Adam learning rate of the fine-tuned layers.
    #[serde(default = "default_finetune_lr")]
    pub finetune_lr: f64,
    /// Fine-tune this many of the picture encoder's top layers (MobileNetV2, EfficientNet-Lite0)
    /// on cached activations of the blocks below: 1 is the 1x1 head conv, each more an inverted
    /// residual block below it; 0 keeps it frozen.
    #[serde(default)]
    pub finetune_image_layers: usize,
    /// Adam learning rate of the picture encoder's fine-tuned blocks.
    #[serde(default = "default_finetune_image_lr")]
    pub finetune_image_lr: f64,
    /// Measure mirror test-time augmentation (with `finetune_image_layers`): evaluation
    /// averages each picture's centre crop and its mirror image. The classifier does not, so
    /// the folder written is the model without it.
    #[serde(default)]
    pub mirror_tta: bool,
    /// Seed of the split, initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Share of each class held out for validation.
    pub val_fraction: f64,
    /// Use only this many labelled pairs (a stratified subset), for quick runs.
    pub limit: Option<usize>,
    /// Cross-validate over this many stratified folds first, then train on every pair for the
    /// epoch count where the folds' mean score peaked (instead of holding out a split).
    #[serde(default)]
    pub cv: Option<usize>,
    /// Stop after this many epochs without a better validation score.
    pub patience: usize,
    pub select: Selection,
    /// Class weights are (majority count / class count) ^ power: 0 = unweighted, 1 = balanced.
    pub class_weight_power: f64,
    /// Weight of each branch's own loss next to the fused loss.
    pub branch_loss_weight: f64,
    /// Share of caption tokens replaced by `[UNK]` in each training batch (scratch encoders).
    pub word_dropout: f64,
    /// Distil the model from a teacher: the share of each labelled pair's target that is the
    /// teacher's probabilities (heads on frozen MobileNetV2 features beside a frozen caption
    /// encoder's, fitted on the same training pairs), the unlabelled pairs trained on with the
    /// teacher's alone; 0 = off. The small model and the fine-tuned default can learn so.
    #[serde(default)]
    pub distil: f64,
    /// The caption encoder under the teacher's heads.
    #[serde(default)]
    pub teacher: TeacherText,
    /// How the model folder stores the weights (the model computes in f32 either way).
    /// Metrics files of the first versions said `half_precision` instead; it reads as f32.
    #[serde(default)]
    pub weights: WeightPlan,
    /// With `--cv`: parts to store smaller still, tried in turn on top of `weights`; each is
    /// kept where the folds, written and classified end to end, stay within the tolerance of
    /// f32 ([`crate::pipeline::precision`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights_try: Vec<Choice>,
}

/// The frozen caption encoder a distillation teacher's heads read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeacherText {
    /// The default model's all-MiniLM-L6-v2.
    #[default]
    Minilm,
    /// all-mpnet-base-v2 (fetched apart: too big for the page, so it only ever teaches).
    Mpnet,
}

fn default_finetune_lr() -> f64 {
    5e-5
}

/// Fine-tuned picture layers at most: the head conv and the 7x7 blocks above the last
/// stride (their activations are small enough to cache for every picture).
pub const MAX_IMAGE_LAYERS: usize = 4;

fn default_finetune_image_lr() -> f64 {
    1e-4
}

/// How the model learns, decided once from the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegimeKind {
    /// Every encoder from scratch, trained end to end with augmentation.
    Scratch,
    /// Frozen pretrained encoders: heads on their cached features.
    Heads,
    /// A frozen pretrained picture encoder (its cached features) beside a caption encoder
    /// trained from scratch, end to end with the heads: the small model.
    Mixed,
    /// Heads plus MiniLM's top `layers` (on cached states of the layers below) and the picture
    /// encoder's top `image_layers` (on cached activations of the blocks below).
    FineTune { layers: usize, image_layers: usize },
}

impl TrainingOptions {
    /// The settings of a model whose caption encoder trains from scratch (tuned on the
    /// validation split for the from-scratch model, kept for the small one); weights in f16
    /// (half the download, the same answers).
    pub fn scratch() -> Self {
        Self {
            epochs: 12,
            batch_size: 32,
            lr: 1e-3,
            finetune_layers: 0,
            finetune_lr: default_finetune_lr(),
            finetune_image_layers: 0,
            finetune_image_lr: default_finetune_image_lr(),
            mirror_tta: false,
            seed: 42,
            val_fraction: 0.15,
            limit: None,
            cv: None,
            patience: 5,
            select: Selection::Accuracy,
            class_weight_power: 0.5,
            branch_loss_weight: 0.5,
            word_dropout: 0.1,
            distil: 0.0,
            teacher: TeacherText::Minilm,
            weights: WeightPlan::uniform(WeightFormat::F16),
            weights_try: Vec::new(),
        }
    }

    /// The small model (a pretrained picture encoder beside a caption encoder from scratch):
    /// scratch's schedule, distilled from a teacher for half of each target (2.1 points more
    /// accurate under cross-validation than without).
    pub fn small() -> Self {
        Self {
            distil: 0.5,
            // MobileNetV2's depthwise and stem kernels are left as they are: 0.05 MB between
            // them, and the depthwise ones cost 0.3 points in 8 bits; its 1×1 convolutions in
            // 4 bits cost 2 points, the heads 0.12 (docs/experiments.md).
            weights_try: choices(&[
                "pointwise=int8",
                "pointwise=int8/128",
                "word-embeddings=int4",
                "text-layers=int4",
                "matrices=int8",
            ]),
            ..Self::scratch()
        }
    }

    /// Pretrained encoders: MiniLM's top two layers fine-tuned with the heads for 8 epochs (a
    /// caption encoder that adapts to tweets is worth 3 points over a frozen one), int8
    /// weights (a quarter of the download).
    pub fn finetune() -> Self {
        Self {
            epochs: 8,
            patience: 8,
            finetune_layers: 2,
            weights: WeightPlan::uniform(WeightFormat::Int8),
            // The largest first: MiniLM's embeddings and layers (in larger blocks while the
            // folds allow), then MobileNetV2. Its 1×1 convolutions in 4 bits (1.6 points) and
            // depthwise kernels in 8 (0.25) are over the tolerance (docs/experiments.md).
            weights_try: choices(&[
                "word-embeddings=int4",
                "word-embeddings=int4/64",
                "word-embeddings=int4/128",
                "text-layers=int4",
                "text-layers=int4/64",
                "text-layers=int4/128",
                "pointwise=int8",
                "pointwise=int8/128",
                "matrices=int4",
                "stem=int8",
            ]),
            ..Self::scratch()
        }
    }

    /// Heads on frozen features only: many cheap epochs, each a pass over cached features.
    pub fn heads_only() -> Self {
        Self {
            epochs: 60,
            patience: 15,
            finetune_layers: 0,
            ..Self::finetune()
        }
    }

    /// The preset for `model`: scratch's where a caption encoder (or every encoder) trains
    /// from scratch (distilled beside a pretrained picture encoder), fine-tuning where there
    /// is a MiniLM to fine-tune (and `finetune` does not say 0, or `image_layers` of the
    /// picture encoder are fine-tuned), heads only otherwise.
    pub fn preset(model: &ModelConfig, finetune: Option<usize>, image_layers: usize) -> Self {
        // The caption encoder decides where there is one (a scratch BiLSTM needs scratch's
        // schedule, whatever reads the picture); the picture encoder otherwise.
        let pretrained = match (&model.text, &model.image) {
            (Some(text), _) => text.encoder.is_pretrained(),
            (None, image) => image.as_ref().is_some_and(|b| b.encoder.is_pretrained()),
        };
        let minilm = matches!(
            model.text.as_ref().map(|b| &b.encoder),
            Some(TextEncoderConfig::MinilmL6(_))
        );
        let pretrained_image = (model.image.as_ref()).is_some_and(|b| b.encoder.is_pretrained());
        match (
            pretrained,
            minilm && (finetune != Some(0) || image_layers > 0),
        ) {
            (false, _) if pretrained_image => Self::small(),
            (false, _) => Self::scratch(),
            (true, true) => Self::finetune(),
            (true, false) => Self::heads_only(),
        }
    }
}

impl TrainingConfig {
    /// The run's regime, and the checks that the options suit the model.
    pub fn regime(&self) -> Result<RegimeKind> {
        let o = &self.options;
        let regime = self.decide()?;
        ensure!(
            (0.0..=1.0).contains(&o.distil),
            "--distil must be between 0 and 1, got {}",
            o.distil
        );
        let taught = match regime {
            RegimeKind::Mixed => true,
            RegimeKind::FineTune { .. } => self.model.image.is_some() && self.model.text.is_some(),
            _ => false,
        };
        ensure!(
            o.teacher == TeacherText::Minilm || o.distil > 0.0,
            "--teacher chooses the distillation teacher's caption encoder: it needs --distil \
             above 0"
        );
        ensure!(
            o.distil == 0.0 || taught,
            "--distil teaches the small model (`--small`) and the default model with both \
             branches and MiniLM fine-tuned, not heads alone or a model trained from scratch"
        );
        Ok(regime)
    }

    fn decide(&self) -> Result<RegimeKind> {
        let o = &self.options;
        ensure!(o.epochs > 0, "--epochs must be at least 1");
        ensure!(o.batch_size > 0, "--batch-size must be at least 1");
        ensure!(
            o.val_fraction > 0.0 && o.val_fraction < 1.0,
            "--val-fraction must be between 0 and 1, got {}",
            o.val_fraction
        );
        let kinds = [
            self.model.image.as_ref().map(|b| b.encoder.is_pretrained()),
            self.model.text.as_ref().map(|b| b.encoder.is_pretrained()),
        ];
        let pretrained: Vec<bool> = kinds.iter().flatten().copied().collect();
        ensure!(
            o.finetune_image_layers <= MAX_IMAGE_LAYERS,
            "--finetune-image-layers {}: at most {MAX_IMAGE_LAYERS} (the head conv and the last \
             stage's blocks)",
            o.finetune_image_layers
        );
        ensure!(
            !o.mirror_tta || o.finetune_image_layers > 0,
            "--mirror-tta needs --finetune-image-layers (the mirrored activations it averages)"
        );
        if pretrained.iter().all(|p| !p) {
            ensure!(
                o.finetune_image_layers == 0,
                "--finetune-image-layers: the picture encoder is trained from scratch already"
            );
            return Ok(RegimeKind::Scratch);
        }
        if !pretrained.iter().all(|p| *p) {
            ensure!(
                kinds == [Some(true), Some(false)],
                "a from-scratch picture encoder next to a pretrained caption encoder is not \
                 supported: use a pretrained picture encoder with a scratch caption encoder, two \
                 of a kind, or --modality to train one branch alone"
            );
            ensure!(
                o.finetune_image_layers == 0,
                "--finetune-image-layers needs the MiniLM caption branch next to the picture"
            );
            return Ok(RegimeKind::Mixed);
        }
        match self.model.text.as_ref().map(|b| &b.encoder) {
            Some(TextEncoderConfig::MinilmL6(shape))
                if o.finetune_layers > 0 || o.finetune_image_layers > 0 =>
            {
                ensure!(
                    o.finetune_layers <= shape.num_hidden_layers,
                    "--finetune-layers {}: MiniLM has {} layers",
                    o.finetune_layers,
                    shape.num_hidden_layers
                );
                ensure!(
                    o.finetune_image_layers == 0 || self.model.image.is_some(),
                    "--finetune-image-layers needs the picture branch"
                );
                Ok(RegimeKind::FineTune {
                    layers: o.finetune_layers,
                    image_layers: o.finetune_image_layers,
                })
            }
            // Without the caption there is no MiniLM to fine-tune: heads only.
            _ => {
                ensure!(
                    o.finetune_image_layers == 0,
                    "--finetune-image-layers needs the MiniLM caption branch next to the picture"
                );
                Ok(RegimeKind::Heads)
            }
        }
    }
}

/// The presets' `weights_try`, spelled as on the command line.
fn choices(spelled: &[&str]) -> Vec<Choice> {
    let parse = |s: &&str| s.parse().expect("a preset's choice parses");
    spelled.iter().map(parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvsa_model::config::{ImageBranchConfig, TextBranchConfig};

    /// A 6-layer BERT, as small as it gets otherwise.
    fn minilm() -> TextBranchConfig {
        TextBranchConfig::minilm(crate::training::tiny_minilm(6))
    }

    fn regime(
        image: Option<ImageBranchConfig>,
        text: Option<TextBranchConfig>,
        finetune: Option<usize>,
    ) -> Result<RegimeKind> {
        let model = ModelConfig::new(image, text);
        let mut options = TrainingOptions::preset(&model, finetune, 0);
        if let Some(layers) = finetune {
            options.finetune_layers = layers;
        }
        TrainingConfig { model, options }.regime()
    }

    #[test]
    fn the_regime_is_decided_by_the_encoders_and_finetune_layers() {
        let scratch_image = || Some(ImageBranchConfig::scratch(32));
        let scratch_text = || Some(TextBranchConfig::scratch(100, 40));
        let mobilenet = || Some(ImageBranchConfig::mobilenet_v2());
        assert_eq!(
            regime(scratch_image(), scratch_text(), None).unwrap(),
            RegimeKind::Scratch
        );
        assert_eq!(
            regime(mobilenet(), Some(minilm()), None).unwrap(),
            RegimeKind::FineTune {
                layers: 2,
                image_layers: 0
            }
        );
        assert_eq!(
            regime(mobilenet(), Some(minilm()), Some(0)).unwrap(),
            RegimeKind::Heads
        );
        assert_eq!(regime(mobilenet(), None, None).unwrap(), RegimeKind::Heads);
        assert_eq!(
            regime(None, Some(minilm()), Some(6)).unwrap(),
            RegimeKind::FineTune {
                layers: 6,
                image_layers: 0
            }
        );
        assert!(regime(None, Some(minilm()), Some(7)).is_err());
        // The small model: MobileNetV2's features beside a BiLSTM, on scratch's schedule.
        assert_eq!(
            regime(mobilenet(), scratch_text(), None).unwrap(),
            RegimeKind::Mixed
        );
        let small = ModelConfig::new(mobilenet(), scratch_text());
        assert_eq!(TrainingOptions::preset(&small, None, 0).epochs, 12);
        assert_eq!(TrainingOptions::preset(&small, None, 0).distil, 0.5);
        let from_scratch = ModelConfig::new(scratch_image(), scratch_text());
        assert_eq!(TrainingOptions::preset(&from_scratch, None, 0).distil, 0.0);
        // Distillation teaches the small model, and only it, with a share in [0, 1].
        let distilled = |model: &ModelConfig, distil| {
            let mut options = TrainingOptions::preset(model, None, 0);
            options.distil = distil;
            let model = model.clone();
            TrainingConfig { model, options }.regime()
        };
        assert_eq!(distilled(&small, 0.5).unwrap(), RegimeKind::Mixed);
        assert!(distilled(&small, 1.5).is_err());
        let default = ModelConfig::new(mobilenet(), Some(minilm()));
        let fine_tuned = RegimeKind::FineTune {
            layers: 2,
            image_layers: 0,
        };
        assert_eq!(distilled(&default, 0.5).unwrap(), fine_tuned);
        assert!(distilled(&default, 0.0).is_ok());
        let caption_alone = ModelConfig::new(None, Some(minilm()));
        assert!(distilled(&caption_alone, 0.5).is_err());
        let from_scratch_distilled = distilled(&from_scratch, 0.5);
        assert!(from_scratch_distilled.is_err());
        // A teacher's encoder is chosen only where there is a teacher.
        let taught_by = |distil, teacher| {
            let mut options = TrainingOptions::preset(&small, None, 0);
            (options.distil, options.teacher) = (distil, teacher);
            let model = small.clone();
            TrainingConfig { model, options }.regime()
        };
        assert!(taught_by(0.5, TeacherText::Mpnet).is_ok());
        assert!(taught_by(0.0, TeacherText::Mpnet).is_err());
        assert!(taught_by(0.0, TeacherText::Minilm).is_ok());
        assert!(regime(scratch_image(), Some(minilm()), None).is_err());
        let model = ModelConfig::new(mobilenet(), None);
        assert_eq!(TrainingOptions::preset(&model, None, 0).epochs, 60);
        // The picture encoder's top layers: at most the 7x7 blocks; mirror TTA needs them.
        let model = ModelConfig::new(mobilenet(), Some(minilm()));
        let with = |image_layers, mirror_tta| {
            let mut options = TrainingOptions::preset(&model, Some(0), image_layers);
            options.finetune_layers = 0;
            (options.finetune_image_layers, options.mirror_tta) = (image_layers, mirror_tta);
            let model = model.clone();
            TrainingConfig { model, options }.regime()
        };
        let both = RegimeKind::FineTune {
            layers: 0,
            image_layers: 2,
        };
        assert_eq!(with(2, true).unwrap(), both);
        assert!(with(5, false).is_err());
        assert!(with(0, true).is_err());
        // Fine-tuning the picture alone takes the fine-tuning schedule, not 60 epochs.
        let options = TrainingOptions::preset(&model, Some(0), 2);
        assert_eq!(options.epochs, 8);
        let picture_alone = ModelConfig::new(mobilenet(), None);
        let mut options = TrainingOptions::preset(&picture_alone, None, 0);
        options.finetune_image_layers = 1;
        let config = TrainingConfig {
            model: picture_alone,
            options,
        };
        assert!(config.regime().is_err(), "needs MiniLM beside it");
    }
}
