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
use crate::training::distil::Teacher;
use crate::training::finetune::{Activations, FineTune, States};
use crate::training::heads::{Features, Heads};
use crate::training::mixed::Mixed;
use crate::training::scratch::Scratch;
use crate::training::{FeatureTiming, inputs};

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

    /// The small model's teacher ([`Teacher`]): heads on the picture features beside
    /// MiniLM's frozen caption features, for the labelled pairs and then the unlabelled ones.
    fn teacher(
        &self,
        config: &ModelConfig,
        data: &Dataset,
        labelled: &[Vec<f32>],
        unlabelled: &[Vec<f32>],
    ) -> Result<Teacher> {
        let branch = TextBranchConfig::minilm(self.encoders.minilm_config()?);
        let encoder = (self.encoders.text_encoder(&branch.encoder, &self.device)?)
            .context("MiniLM is a pretrained caption encoder")?;
        let text = TextPreprocessor::new(self.encoders.minilm_tokenizer()?, branch.clone())?;
        let features = |samples: &[Sample], pictures: &[Vec<f32>]| -> Result<Vec<Features>> {
            let captions = self.caption_inputs(&encoder, &branch, &text, samples)?;
            Ok((pictures.iter().zip(captions.rows))
                .map(|(image, text)| Features {
                    image: Some(image.clone()),
                    text: Some(text),
                })
                .collect())
        };
        let mut teacher_config = config.clone();
        teacher_config.text = Some(branch.clone());
        let options = TrainingOptions {
            seed: self.config.options.seed,
            ..TrainingOptions::heads_only()
        };
        Teacher::new(
            &teacher_config,
            features(&data.samples, labelled)?,
            features(&data.unlabelled, unlabelled)?,
            self.config.options.distil,
            options,
        )
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
        let mut timing = FeatureTiming {
            pairs: data.samples.len(),
            ..FeatureTiming::default()
        };
        let image = match &config.image {
            Some(branch) => self.encoders.image_encoder(&branch.encoder, &self.device)?,
            None => None,
        };
        // Frozen, the picture encoder's pooled features; fine-tuned, the regime's lower blocks'
        // activations (below).
        let mut pictures = match (&image, &config.image, image_layers) {
            (Some(encoder), Some(branch), 0) => {
                let c = self.image_inputs(encoder, branch, &data.samples)?;
                (timing.image_computed, timing.image_seconds) = (c.computed, c.seconds);
                let pooled = |row: Vec<f32>| Activations {
                    shape: [row.len(), 1, 1],
                    centre: row,
                    mirrored: None,
                };
                Some(c.rows.into_iter().map(pooled).collect::<Vec<_>>())
            }
            _ => None,
        };
        let minilm = self.encoders.minilm(shape, &self.device)?;
        let o = &self.config.options;
        let regime = FineTune::new(
            config,
            image,
            (image_layers, o.finetune_image_lr),
            minilm,
            (layers, o.finetune_lr),
            &self.device,
        )?
        .with_mirror_tta(o.mirror_tta);
        if let (Some(lower), Some(branch)) = (regime.image_lower(), &config.image) {
            let (cache, device) = (&self.feature_cache, &self.device);
            let both = inputs::picture_activations(
                lower,
                branch,
                &data.samples,
                cache,
                device,
                self.progress,
            )?;
            (timing.image_computed, timing.image_seconds) = (both.computed, both.seconds);
            pictures = Some(both.rows);
        }
        let branch = config
            .text
            .as_ref()
            .context("fine-tuning needs a caption branch")?;
        let states = inputs::lower_states(
            regime.lower(),
            branch,
            text,
            &data.samples,
            &self.feature_cache,
            &self.device,
            self.progress,
        )?;
        (timing.text_computed, timing.text_seconds) = (states.computed, states.seconds);
        let mut pictures = pictures.map(Vec::into_iter);
        let examples = states
            .rows
            .into_iter()
            .map(|states| States {
                image: pictures.as_mut().and_then(Iterator::next),
                states,
            })
            .collect();
        self.fit(regime, examples, data, Some(timing))
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
