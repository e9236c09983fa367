//! Classify image + caption pairs with a model folder. The same code serves the native
//! predictor, the trainer's end-to-end check and the page; they differ only in how the
//! probabilities are read back ([`Classifier::run`] blocks, [`Classifier::run_async`] does not).

use burn::prelude::*;
use serde::Serialize;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::folder::ModelFiles;
use crate::metrics::argmax;
use crate::model::{PendingScores, Scores, SentimentModel, TokenBatch, image_batch};
use crate::preprocess::{ImagePreprocessor, Reading, TextPreprocessor, Tokens};

/// One pair as it arrives: picture bytes (JPEG/PNG) and/or a caption.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pair<'a> {
    pub image: Option<&'a [u8]>,
    pub caption: Option<&'a str>,
}

/// A classified pair: the winning label, the probabilities in `labels`' order, and what the
/// answer did not use as it was given.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    pub label: String,
    pub labels: Vec<String>,
    #[serde(flatten)]
    pub scores: Scores,
    pub notes: Vec<Note>,
}

/// Why an answer rests on less than it was given, in words for a person (the page shows them
/// on the answer, `predict` prints them).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Note {
    pub kind: NoteKind,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoteKind {
    /// The caption is mostly in a script the model cannot read ([`Reading::foreign`]).
    CaptionForeign,
    /// The caption is longer than the model reads; its tail was not used.
    CaptionCut,
    /// A missing or empty caption: the picture alone (folders).
    CaptionEmpty,
    /// No picture: the caption alone (folders).
    PictureMissing,
    /// A picture that cannot be read: the caption alone (folders).
    PictureUnreadable,
}

impl Note {
    fn new(kind: NoteKind, text: impl Into<String>) -> Self {
        let text = text.into();
        Self { kind, text }
    }
}

/// One pair, preprocessed and ready to batch, with the notes its answer will carry.
#[derive(Clone, Debug, Default)]
pub struct Prepared {
    pub image: Option<Vec<f32>>,
    pub tokens: Option<Tokens>,
    pub notes: Vec<Note>,
}

pub struct Classifier {
    config: ModelConfig,
    model: SentimentModel,
    image: Option<ImagePreprocessor>,
    text: Option<TextPreprocessor>,
    device: Device,
}

impl Classifier {
    /// Build the model a folder describes on `device`.
    pub fn new(files: ModelFiles, device: &Device) -> Result<Self> {
        let ModelFiles {
            config,
            tokenizer,
            weights,
        } = files;
        let text = match (&config.text, tokenizer) {
            (Some(branch), Some(json)) => Some(TextPreprocessor::from_json(&json, branch.clone())?),
            (Some(_), None) => {
                return Err(Error::Tokenizer(
                    "the model has a caption branch but no tokenizer".into(),
                ));
            }
            (None, _) => None,
        };
        let model = SentimentModel::from_stored(&config, weights)?
            .for_inference(&config, device)
            .to_device(device);
        Ok(Self::from_model(config, model, text, device))
    }

    /// Wrap an in-memory model (the trainer's, say) with its preprocessing.
    pub fn from_model(
        config: ModelConfig,
        model: SentimentModel,
        text: Option<TextPreprocessor>,
        device: &Device,
    ) -> Self {
        let image = config
            .image
            .as_ref()
            .map(|b| ImagePreprocessor::new(b.preprocess.clone()));
        Self {
            config,
            model,
            image,
            text,
            device: device.clone(),
        }
    }

    /// Pad captions to a few fixed lengths ([`crate::preprocess::LENGTH_BUCKETS`]): for a GPU
    /// backend, whose kernels are compiled per shape, so that a warm-up compiles them all.
    pub fn with_length_buckets(mut self) -> Self {
        if let Some(text) = self.text.as_mut() {
            text.pad_to_buckets(true);
        }
        self
    }

    /// Synthetic inputs that between them run every kernel a classification can need: a whole
    /// pair at the first caption width, then the caption alone at each other width (a picture
    /// has one shape). Unbucketed, one pair.
    pub fn warm_up_inputs(&self) -> Result<Vec<Prepared>> {
        let image = (self.image.as_ref()).map(|pre| vec![0.0; 3 * pre.config().size.pow(2)]);
        let Some(text) = &self.text else {
            return Ok(vec![Prepared {
                image,
                ..Prepared::default()
            }]);
        };
        let caption = text.encode("a warm-up caption")?;
        let widths = text.widths().unwrap_or_else(|| vec![caption.len()]);
        Ok(widths
            .into_iter()
            .enumerate()
            .map(|(i, width)| Prepared {
                image: if i == 0 { image.clone() } else { None },
                tokens: Some(Tokens {
                    ids: caption.ids.iter().copied().cycle().take(width).collect(),
                }),
                notes: Vec::new(),
            })
            .collect())
    }

    /// Read a model folder from disk.
    pub fn load(dir: &std::path::Path, device: &Device) -> Result<Self> {
        Self::new(ModelFiles::read(dir)?, device)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn model(&self) -> &SentimentModel {
        &self.model
    }

    pub fn image_preprocessor(&self) -> Option<&ImagePreprocessor> {
        self.image.as_ref()
    }

    pub fn text_preprocessor(&self) -> Option<&TextPreprocessor> {
        self.text.as_ref()
    }

    /// Decode and tokenise one pair. Parts the model has no branch for are ignored; a pair with
    /// nothing the model can use is an error. A caption the model cannot read (mostly in
    /// another script) is left out where there is a picture, and said unreliable where there is
    /// none; a caption longer than the model reads is said so.
    pub fn prepare(&self, pair: Pair) -> Result<Prepared> {
        let image = match (pair.image, &self.image) {
            (Some(bytes), Some(pre)) => Some(pre.preprocess(bytes)?),
            _ => None,
        };
        let mut notes = Vec::new();
        let tokens = match (pair.caption, &self.text) {
            (Some(caption), Some(pre)) => {
                pre.validate(caption)?;
                let reading = pre.reading(caption)?;
                notes.extend(reading_notes(&reading, image.is_some(), pre));
                match reading.foreign() && image.is_some() {
                    true => None,
                    false => Some(pre.encode(caption)?),
                }
            }
            _ => None,
        };
        if image.is_none() && tokens.is_none() {
            return Err(match (self.image.is_some(), self.text.is_some()) {
                (true, false) => Error::MissingBranch("text (it needs the picture)"),
                (false, true) => Error::MissingBranch("image (it needs the caption)"),
                _ => Error::NoInput,
            });
        }
        Ok(Prepared {
            image,
            tokens,
            notes,
        })
    }

    /// [`Classifier::prepare`] under the rule for a folder's pairs (the page's folder mode and
    /// `predict --list`), where a pair is classified from what can be read: a missing or empty
    /// caption leaves the picture alone, a missing picture or one that cannot be read the
    /// caption alone, each said in a note. An error only when neither part can be used.
    pub fn prepare_any(&self, pair: Pair) -> Result<Prepared> {
        let caption = pair.caption.filter(|c| !c.trim().is_empty());
        let mut notes = Vec::new();
        let one = |kind, text: &str| Note::new(kind, text);
        match (pair.image.is_some(), pair.caption, caption.is_some()) {
            (true, None, _) => {
                notes.push(one(NoteKind::CaptionEmpty, "no caption: the picture alone"))
            }
            (true, Some(_), false) => notes.push(one(
                NoteKind::CaptionEmpty,
                "empty caption: the picture alone",
            )),
            (false, _, true) => notes.push(one(
                NoteKind::PictureMissing,
                "no picture: the caption alone",
            )),
            _ => {}
        }
        let pair = Pair { caption, ..pair };
        let mut prepared = match self.prepare(pair) {
            // Only the picture's own errors leave the caption alone; a caption's are the pair's.
            Err(e @ (Error::Image(_) | Error::ImageTooLarge { .. }))
                if caption.is_some() && self.text.is_some() =>
            {
                let text = format!("picture unreadable ({e}): the caption alone");
                notes.push(Note::new(NoteKind::PictureUnreadable, text));
                self.prepare(Pair {
                    image: None,
                    caption,
                })?
            }
            prepared => prepared?,
        };
        notes.append(&mut prepared.notes);
        prepared.notes = notes;
        Ok(prepared)
    }

    /// Classify raw pairs (blocking read-back).
    pub fn classify(&self, pairs: &[Pair]) -> Result<Vec<Prediction>> {
        let prepared = pairs
            .iter()
            .map(|&p| self.prepare(p))
            .collect::<Result<Vec<_>>>()?;
        self.run(&prepared)
    }

    /// Classify raw pairs without blocking (the page).
    pub async fn classify_async(&self, pairs: &[Pair<'_>]) -> Result<Vec<Prediction>> {
        let prepared = pairs
            .iter()
            .map(|&p| self.prepare(p))
            .collect::<Result<Vec<_>>>()?;
        self.run_async(&prepared).await
    }

    /// Classify prepared pairs; pairs missing a part run apart from the complete ones.
    pub fn run(&self, batch: &[Prepared]) -> Result<Vec<Prediction>> {
        let mut groups = Vec::new();
        for (members, pending) in self.forward_groups(batch)? {
            groups.push((members, pending.read()?));
        }
        Ok(self.predictions(batch, groups))
    }

    /// [`Classifier::run`], reading the probabilities back asynchronously.
    pub async fn run_async(&self, batch: &[Prepared]) -> Result<Vec<Prediction>> {
        let mut groups = Vec::new();
        for (members, pending) in self.forward_groups(batch)? {
            groups.push((members, pending.read_async().await?));
        }
        Ok(self.predictions(batch, groups))
    }

    /// The model run once per group of pairs with the same parts: (members, probabilities).
    fn forward_groups(&self, batch: &[Prepared]) -> Result<Vec<(Vec<usize>, PendingScores)>> {
        let parts = |p: &Prepared| (p.image.is_some(), p.tokens.is_some());
        let mut groups: Vec<((bool, bool), Vec<usize>)> = Vec::new();
        for (i, p) in batch.iter().enumerate() {
            match groups.iter_mut().find(|(k, _)| *k == parts(p)) {
                Some((_, members)) => members.push(i),
                None => groups.push((parts(p), vec![i])),
            }
        }
        groups
            .into_iter()
            .map(|(_, members)| {
                let items: Vec<&Prepared> = members.iter().map(|&i| &batch[i]).collect();
                Ok((members, self.forward(&items)?))
            })
            .collect()
    }

    /// Run the model on pairs that all carry the same parts. On the CPU with threads, the
    /// picture and the caption are encoded side by side, each operation's parts shared out
    /// among the threads as well: fewer of the pool's threads sit idle between operations.
    fn forward(&self, batch: &[&Prepared]) -> Result<PendingScores> {
        let (images, tokens) = self.inputs(batch);
        if self.device != Device::flex() || images.is_none() || tokens.is_none() {
            return Ok(self.model.forward(images, tokens)?.probabilities());
        }
        let model = &self.model;
        let (image, text) = crate::model::cpu_join(
            || model.encode(images, None).0,
            || model.encode(None, tokens).1,
        );
        Ok(model.heads(image, text)?.probabilities())
    }

    /// The model's input tensors for pairs that all carry the same parts (a part some pair
    /// lacks is left out).
    pub fn inputs(&self, batch: &[&Prepared]) -> (Option<Tensor<4>>, Option<TokenBatch>) {
        let images = match (&self.image, batch.iter().all(|p| p.image.is_some())) {
            (Some(pre), true) => {
                let pixels = batch.iter().flat_map(|p| p.image.iter().flatten().copied());
                let size = pre.config().size;
                Some(image_batch(
                    pixels.collect(),
                    batch.len(),
                    size,
                    &self.device,
                ))
            }
            _ => None,
        };
        let tokens = match (&self.text, batch.iter().all(|p| p.tokens.is_some())) {
            (Some(pre), true) => {
                let tokens: Vec<&Tokens> = batch.iter().flat_map(|p| p.tokens.as_ref()).collect();
                let rows = pre.rows(&tokens);
                Some(TokenBatch::new(
                    rows.ids,
                    rows.mask,
                    rows.shape,
                    &self.device,
                ))
            }
            _ => None,
        };
        (images, tokens)
    }

    /// Scores of each group back in batch order, as labelled predictions with their notes.
    fn predictions(
        &self,
        batch: &[Prepared],
        groups: Vec<(Vec<usize>, Vec<Scores>)>,
    ) -> Vec<Prediction> {
        let mut out: Vec<Option<Prediction>> = vec![None; batch.len()];
        for (members, scores) in groups {
            for (i, scores) in members.into_iter().zip(scores) {
                out[i] = Some(Prediction {
                    label: self.config.labels[argmax(&scores.fused)].clone(),
                    labels: self.config.labels.clone(),
                    scores,
                    notes: batch[i].notes.clone(),
                });
            }
        }
        out.into_iter().flatten().collect()
    }
}

/// What an answer says about a caption the model reads only in part.
fn reading_notes(reading: &Reading, picture: bool, pre: &TextPreprocessor) -> Vec<Note> {
    let mut notes = Vec::new();
    if reading.foreign() {
        // Rounded down: a caption "mostly" in another script never reads as 50 % Latin.
        let share = (reading.latin_share.unwrap_or(0.0) * 100.0).floor();
        let said = "The caption is mostly in a script the model was not trained to read (it reads \
                    English";
        let text = match picture {
            true => format!(
                "{said}; {share:.0} % of its letters are Latin): the answer rests on \
                             the picture alone."
            ),
            false => format!(
                "{said}; {share:.0} % of its letters are Latin): this answer from \
                              the caption alone is unreliable. Add the picture, or an English \
                              caption."
            ),
        };
        notes.push(Note::new(NoteKind::CaptionForeign, text));
    }
    if reading.cut() && !(reading.foreign() && picture) {
        let tokens = pre.max_len();
        let text = format!(
            "The caption is longer than the model reads ({tokens} tokens): it read the first \
             {} of its {} words; the rest was not used.",
            reading.read, reading.words
        );
        notes.push(Note::new(NoteKind::CaptionCut, text));
    }
    notes
}
