//! What each training regime trains on, computed (or read from the feature cache) before
//! fitting: the stored pictures and tokens (scratch), the frozen encoders' features (heads),
//! the picture's features beside the tokens (mixed), MiniLM's lower states and the picture's
//! lower activations (fine-tuning).

use anyhow::{Context, Result};
use mvsa_model::ModelConfig;
use mvsa_model::config::{ImageBranchConfig, TextBranchConfig, TextEncoderConfig};
use mvsa_model::model::{ImageEncoder, TextEncoder};
use mvsa_model::preprocess::TextPreprocessor;

use super::{Dataset, Trained, Trainer};
use crate::data::Sample;
use crate::training::TrainingOptions;
use crate::training::config::TeacherText;
use crate::training::distil::Teacher;
use crate::training::finetune::{Activations, FineTune, States};
use crate::training::heads::{Features, Heads};
use crate::training::mixed::Mixed;
use crate::training::scratch::Scratch;
use crate::training::{FeatureTiming, inputs};

/// A teacher's caption branch and its caption features: the labelled pairs', then the
/// unlabelled ones'.
struct TeacherCaptions {
    branch: TextBranchConfig,
    labelled: Vec<Vec<f32>>,
    unlabelled: Vec<Vec<f32>>,
}

impl Trainer<'_> {
    pub(super) fn scratch(
        &self,
        config: &ModelConfig,
        text: Option<&TextPreprocessor>,
        data: &Dataset,
    ) -> Result<Trained> {
        let regime = Scratch::new(config, text, self.config.options.word_dropout)?;
        let inputs = regime.inputs(&data.samples)?;
        self.fit(regime, inputs, data, None)
    }

    /// The frozen picture encoder's features, computed once (or read from the cache), beside
    /// the scratch caption encoder's tokens.
    pub(super) fn mixed(
        &self,
        config: &ModelConfig,
        text: Option<&TextPreprocessor>,
        data: &Dataset,
    ) -> Result<Trained> {
        let (Some(branch), Some(text)) = (&config.image, text) else {
            anyhow::bail!("the mixed regime needs a picture and a caption branch");
        };
        let encoder = (self.encoders.image_encoder(&branch.encoder, &self.device)?)
            .context("the picture encoder is not a pretrained one")?;
        let computed = self.image_inputs(&encoder, branch, &data.samples)?;
        let timing = FeatureTiming {
            pairs: data.samples.len(),
            image_computed: computed.computed,
            image_seconds: computed.seconds,
            ..FeatureTiming::default()
        };
        let o = &self.config.options;
        let teacher = match o.distil > 0.0 {
            true => {
                let unlabelled = self.image_inputs(&encoder, branch, &data.unlabelled)?;
                let teacher = self.teacher(config, data, &computed.rows, &unlabelled.rows)?;
                Some((teacher, unlabelled.rows))
            }
            false => None,
        };
        let mut regime = Mixed::new(config, encoder, text, o.word_dropout, &self.device)?;
        if let Some((teacher, pictures)) = teacher {
            let (n, unlabelled) = (data.samples.len(), &data.unlabelled);
            regime = regime.with_teacher(teacher, n, unlabelled, pictures)?;
        }
        let inputs = regime.inputs(&data.samples, computed.rows)?;
        self.fit(regime, inputs, data, Some(timing))
    }

    /// A distilled model's teacher ([`Teacher`]): heads on the picture features beside a
    /// frozen caption encoder's features (MiniLM's, or all-mpnet-base-v2's with `--teacher
    /// mpnet`), for the labelled pairs and then the unlabelled ones.
    fn teacher(
        &self,
        config: &ModelConfig,
        data: &Dataset,
        labelled: &[Vec<f32>],
        unlabelled: &[Vec<f32>],
    ) -> Result<Teacher> {
        let captions = self.teacher_captions(data)?;
        let features = |pictures: &[Vec<f32>], captions: Vec<Vec<f32>>| -> Vec<Features> {
            (pictures.iter().zip(captions))
                .map(|(image, text)| Features {
                    image: Some(image.clone()),
                    text: Some(text),
                })
                .collect()
        };
        let mut teacher_config = config.clone();
        teacher_config.text = Some(captions.branch);
        let options = TrainingOptions {
            seed: self.config.options.seed,
            ..TrainingOptions::heads_only()
        };
        Teacher::new(
            &teacher_config,
            features(labelled, captions.labelled),
            features(unlabelled, captions.unlabelled),
            self.config.options.distil,
            options,
        )
    }

    /// The teacher's caption branch and its features of the labelled, then the unlabelled
    /// pairs' captions.
    fn teacher_captions(&self, data: &Dataset) -> Result<TeacherCaptions> {
        let (cache, device, progress) = (&self.feature_cache, &self.device, self.progress);
        let minilm = || -> Result<TeacherCaptions> {
            let branch = TextBranchConfig::minilm(self.encoders.minilm_config()?);
            let encoder = (self.encoders.text_encoder(&branch.encoder, device)?)
                .context("MiniLM is a pretrained caption encoder")?;
            let text = TextPreprocessor::new(self.encoders.minilm_tokenizer()?, branch.clone())?;
            let run = |samples| self.caption_inputs(&encoder, &branch, &text, samples);
            let (labelled, unlabelled) = (run(&data.samples)?, run(&data.unlabelled)?);
            Ok(TeacherCaptions {
                branch,
                labelled: labelled.rows,
                unlabelled: unlabelled.rows,
            })
        };
        let mpnet = || -> Result<TeacherCaptions> {
            let mpnet = self.encoders.mpnet(device)?;
            let run = |samples| inputs::mpnet_features(&mpnet, samples, cache, device, progress);
            let (labelled, unlabelled) = (run(&data.samples)?, run(&data.unlabelled)?);
            Ok(TeacherCaptions {
                branch: mpnet.branch,
                labelled: labelled.rows,
                unlabelled: unlabelled.rows,
            })
        };
        match self.config.options.teacher {
            TeacherText::Minilm => minilm(),
            TeacherText::Mpnet => mpnet(),
        }
    }

    pub(super) fn heads(
        &self,
        config: &ModelConfig,
        text: Option<&TextPreprocessor>,
        data: &Dataset,
    ) -> Result<Trained> {
        let image = match &config.image {
            Some(b) => self.encoders.image_encoder(&b.encoder, &self.device)?,
            None => None,
        };
        let text_encoder = match &config.text {
            Some(b) => self.encoders.text_encoder(&b.encoder, &self.device)?,
            None => None,
        };
        let mut timing = FeatureTiming {
            pairs: data.samples.len(),
            ..FeatureTiming::default()
        };
        let mut features: Vec<Features> = vec![
            Features {
                image: None,
                text: None
            };
            data.samples.len()
        ];
        if let (Some(encoder), Some(branch)) = (&image, &config.image) {
            let computed = self.image_inputs(encoder, branch, &data.samples)?;
            (timing.image_computed, timing.image_seconds) = (computed.computed, computed.seconds);
            features
                .iter_mut()
                .zip(computed.rows)
                .for_each(|(f, row)| f.image = Some(row));
        }
        if let (Some(encoder), Some(branch), Some(text)) = (&text_encoder, &config.text, text) {
            let computed = self.caption_inputs(encoder, branch, text, &data.samples)?;
            (timing.text_computed, timing.text_seconds) = (computed.computed, computed.seconds);
            features
                .iter_mut()
                .zip(computed.rows)
                .for_each(|(f, row)| f.text = Some(row));
        }
        let pretrained = config.init_with(image, text_encoder, &self.device)?;
        self.fit(Heads::new(config, pretrained), features, data, Some(timing))
    }

    pub(super) fn finetune(
        &self,
        config: &ModelConfig,
        text: Option<&TextPreprocessor>,
        data: &Dataset,
        (layers, image_layers): (usize, usize),
    ) -> Result<Trained> {
        let (Some(text), Some(TextEncoderConfig::MinilmL6(shape))) =
            (text, config.text.as_ref().map(|b| &b.encoder))
        else {
            anyhow::bail!("fine-tuning needs the MiniLM caption encoder");
        };
        let image = match &config.image {
            Some(branch) => self.encoders.image_encoder(&branch.encoder, &self.device)?,
            None => None,
        };
        let o = &self.config.options;
        // The teacher reads the whole picture encoder's features, whatever the student tunes.
        let teacher_image = (o.distil > 0.0).then(|| image.clone());
        let minilm = self.encoders.minilm(shape, &self.device)?;
        let regime = FineTune::new(
            config,
            image,
            (image_layers, o.finetune_image_lr),
            minilm,
            (layers, o.finetune_lr),
            &self.device,
        )?
        .with_mirror_tta(o.mirror_tta);
        let mut timing = FeatureTiming {
            pairs: data.samples.len(),
            ..FeatureTiming::default()
        };
        let inputs = |samples: &[Sample], first: usize, timing: &mut FeatureTiming| {
            self.finetune_inputs(&regime, config, text, samples, first, timing)
        };
        let examples = inputs(&data.samples, 0, &mut timing)?;
        let regime = match teacher_image {
            Some(Some(encoder)) => {
                let branch = (config.image.as_ref()).context("no picture branch")?;
                let labelled = self.image_inputs(&encoder, branch, &data.samples)?;
                let pictures = self.image_inputs(&encoder, branch, &data.unlabelled)?;
                let teacher = self.teacher(config, data, &labelled.rows, &pictures.rows)?;
                let n = data.samples.len();
                let unlabelled = inputs(&data.unlabelled, n, &mut FeatureTiming::default())?;
                regime.with_teacher(teacher, n, unlabelled)?
            }
            Some(None) => anyhow::bail!("distillation needs the picture branch"),
            None => regime,
        };
        self.fit(regime, examples, data, Some(timing))
    }

    /// What fine-tuning reads of `samples` (ids from `first`): the picture's pooled features
    /// (frozen) or its lower blocks' activations (fine-tuned), and MiniLM's lower states.
    fn finetune_inputs(
        &self,
        regime: &FineTune,
        config: &ModelConfig,
        text: &TextPreprocessor,
        samples: &[Sample],
        first: usize,
        timing: &mut FeatureTiming,
    ) -> Result<Vec<States>> {
        let (cache, device, progress) = (&self.feature_cache, &self.device, self.progress);
        let pictures = match (regime.image_frozen(), regime.image_lower(), &config.image) {
            (Some(encoder), _, Some(branch)) => {
                let c = self.image_inputs(encoder, branch, samples)?;
                (timing.image_computed, timing.image_seconds) = (c.computed, c.seconds);
                let pooled = |row: Vec<f32>| Activations {
                    shape: [row.len(), 1, 1],
                    centre: row,
                    mirrored: None,
                };
                Some(c.rows.into_iter().map(pooled).collect::<Vec<_>>())
            }
            (None, Some(lower), Some(branch)) => {
                let both =
                    inputs::picture_activations(lower, branch, samples, cache, device, progress)?;
                (timing.image_computed, timing.image_seconds) = (both.computed, both.seconds);
                Some(both.rows)
            }
            _ => None,
        };
        let branch = (config.text.as_ref()).context("fine-tuning needs a caption branch")?;
        let states = inputs::lower_states(
            regime.lower(),
            branch,
            text,
            samples,
            cache,
            device,
            progress,
        )?;
        (timing.text_computed, timing.text_seconds) = (states.computed, states.seconds);
        let mut pictures = pictures.map(Vec::into_iter);
        Ok((states.rows.into_iter().enumerate())
            .map(|(i, states)| States {
                image: pictures.as_mut().and_then(Iterator::next),
                states,
                id: first + i,
            })
            .collect())
    }

    pub(super) fn image_inputs(
        &self,
        encoder: &ImageEncoder,
        branch: &ImageBranchConfig,
        samples: &[Sample],
    ) -> Result<inputs::Computed> {
        inputs::image_features(
            encoder,
            branch,
            samples,
            &self.feature_cache,
            &self.device,
            self.progress,
        )
    }

    /// MiniLM's caption features (or the cache's) of `samples`.
    fn caption_inputs(
        &self,
        encoder: &TextEncoder,
        branch: &TextBranchConfig,
        text: &TextPreprocessor,
        samples: &[Sample],
    ) -> Result<inputs::Computed> {
        let (cache, device) = (&self.feature_cache, &self.device);
        inputs::text_features(encoder, branch, text, samples, cache, device, self.progress)
    }
}
