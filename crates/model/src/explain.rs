//! Why the classifier decided, by occlusion: each word of the caption, and each cell of a grid
//! over the part of the picture the model sees, is hidden in turn; the fall in the fused
//! probability of each label is that part's effect (positive: it pushed the answer toward the
//! label). Each branch is encoded once for the whole pair; only the varied part runs per
//! variant, in one batch, so an explanation costs about one extra forward pass of each branch
//! per 16 variants.

use serde::Serialize;

use crate::classifier::{Classifier, Pair, Prepared};
use crate::error::Result;
use crate::model::{PendingScores, Scores};
use crate::preprocess::split_words;

/// The largest grid side accepted: 8 x 8 cells is 64 image-encoder runs.
pub const MAX_GRID: usize = 8;

/// One word of the caption, with the whitespace before it, so that `before + word` over all
/// words gives the caption back.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WordEffect {
    pub before: String,
    pub word: String,
    /// Whether the model read this word (a caption's words past `max_len` tokens are cut off).
    pub read: bool,
    /// Fused probability of each label with the whole pair, minus with this word hidden;
    /// `None` for words not read.
    pub effect: Option<Vec<f32>>,
}

/// A `rows` x `cols` grid over the centre square the model sees, which covers `crop` (x, y,
/// width, height as fractions of the picture's width and height) of the picture.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PictureEffect {
    pub width: u32,
    pub height: u32,
    pub crop: [f32; 4],
    pub rows: usize,
    pub cols: usize,
    /// Per cell, row by row: fused probability of each label with the whole pair, minus with
    /// the cell hidden (set to the mean colour).
    pub cells: Vec<Vec<f32>>,
}

/// What an explanation found: the fused probabilities of the whole pair, and each part's effect.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    pub labels: Vec<String>,
    pub fused: Vec<f32>,
    pub words: Vec<WordEffect>,
    pub picture: Option<PictureEffect>,
}

/// The forward passes of an explanation, not yet read back.
pub struct Occlusion {
    labels: Vec<String>,
    words: Vec<(String, String)>,
    /// How many of `words`, from the first, the model read.
    read: usize,
    picture: Option<(u32, u32, [f32; 4], usize)>,
    hidden_words: Option<PendingScores>,
    hidden_cells: Option<PendingScores>,
}

impl Classifier {
    /// Run the model on `pair` with each word, and each cell of a `grid` x `grid` split of the
    /// picture, hidden.
    pub fn occlude(&self, pair: Pair, grid: usize) -> Result<Occlusion> {
        let grid = grid.clamp(1, MAX_GRID);
        let prepared = self.prepare(pair)?;
        let picture = match (pair.image, self.image_preprocessor(), &prepared.image) {
            (Some(bytes), Some(pre), Some(_)) => {
                let (width, height) = pre.dimensions(bytes)?;
                Some((width, height, pre.crop_fraction(width, height), grid))
            }
            _ => None,
        };
        let (words, read) = match (pair.caption, &prepared.tokens, self.text_preprocessor()) {
            (Some(caption), Some(_), Some(pre)) => {
                let words = split_words(caption);
                let read = pre.words_read(&words)?;
                (words, read)
            }
            _ => (Vec::new(), 0),
        };
        let (images, tokens) = self.inputs(&[&prepared]);
        let (image_features, text_features) = self.model().encode(images, tokens);
        let hidden_words = match (&text_features, pair.caption) {
            (Some(_), Some(_)) => {
                let variants = self.word_variants(&words, read)?;
                let n = variants.len();
                let refs: Vec<&Prepared> = variants.iter().collect();
                let (_, tokens) = self.inputs(&refs);
                let (_, text) = self.model().encode(None, tokens);
                let image = image_features.clone().map(|f| f.repeat_dim(0, n));
                Some(self.model().heads(image, text)?.probabilities())
            }
            _ => None,
        };
        let hidden_cells = match &prepared.image {
            Some(pixels) if picture.is_some() => {
                let variants = self.cell_variants(pixels, grid);
                let n = variants.len();
                let refs: Vec<&Prepared> = variants.iter().collect();
                let (images, _) = self.inputs(&refs);
                let (image, _) = self.model().encode(images, None);
                let text = text_features.map(|f| f.repeat_dim(0, n));
                Some(self.model().heads(image, text)?.probabilities())
            }
            _ => None,
        };
        Ok(Occlusion {
            labels: self.config().labels.clone(),
            words,
            read,
            picture,
            hidden_words,
            hidden_cells,
        })
    }

    /// Blocking [`Classifier::occlude`] + read back (native).
    pub fn explain(&self, pair: Pair, grid: usize) -> Result<Explanation> {
        self.occlude(pair, grid)?.read()
    }

    /// The whole caption first, then the caption without each of its first `read` words (the
    /// ones the model reads).
    fn word_variants(&self, words: &[(String, String)], read: usize) -> Result<Vec<Prepared>> {
        let Some(text) = self.text_preprocessor() else {
            return Ok(Vec::new());
        };
        let whole: String = words.iter().map(|(b, w)| format!("{b}{w}")).collect();
        let mut captions = vec![whole];
        for hidden in 0..read.min(words.len()) {
            let caption = words
                .iter()
                .enumerate()
                .fold(String::new(), |mut s, (i, (b, w))| {
                    s.push_str(b);
                    if i != hidden {
                        s.push_str(w);
                    }
                    s
                });
            captions.push(caption);
        }
        captions
            .iter()
            .map(|c| {
                let tokens = text.encode(c)?;
                let tokens = if tokens.is_empty() {
                    text.padding()
                } else {
                    tokens
                };
                Ok(Prepared {
                    tokens: Some(tokens),
                    ..Prepared::default()
                })
            })
            .collect()
    }

    /// The whole picture first, then the picture with each grid cell set to 0 (the mean colour,
    /// once normalised), row by row.
    fn cell_variants(&self, pixels: &[f32], grid: usize) -> Vec<Prepared> {
        let size = self.image_preprocessor().map_or(0, |p| p.config().size);
        let bounds = |i: usize| (i * size / grid, (i + 1) * size / grid);
        let mut variants = vec![pixels.to_vec()];
        for row in 0..grid {
            for col in 0..grid {
                let mut hidden = pixels.to_vec();
                let ((y0, y1), (x0, x1)) = (bounds(row), bounds(col));
                for channel in hidden.chunks_mut(size * size) {
                    for y in y0..y1 {
                        channel[y * size + x0..y * size + x1].fill(0.0);
                    }
                }
                variants.push(hidden);
            }
        }
        variants
            .into_iter()
            .map(|image| Prepared {
                image: Some(image),
                ..Prepared::default()
            })
            .collect()
    }
}

impl Occlusion {
    /// Read back, blocking (native backends).
    pub fn read(mut self) -> Result<Explanation> {
        let words = self
            .hidden_words
            .take()
            .map(PendingScores::read)
            .transpose()?;
        let cells = self
            .hidden_cells
            .take()
            .map(PendingScores::read)
            .transpose()?;
        Ok(self.explanation(words, cells))
    }

    /// Read back without blocking (the page).
    pub async fn read_async(mut self) -> Result<Explanation> {
        let words = match self.hidden_words.take() {
            Some(p) => Some(p.read_async().await?),
            None => None,
        };
        let cells = match self.hidden_cells.take() {
            Some(p) => Some(p.read_async().await?),
            None => None,
        };
        Ok(self.explanation(words, cells))
    }

    /// Effects as differences from the first row (the whole pair) of each set of variants.
    fn explanation(self, words: Option<Vec<Scores>>, cells: Option<Vec<Scores>>) -> Explanation {
        let effects = |rows: &[Scores]| -> Vec<Vec<f32>> {
            let base = &rows[0].fused;
            (rows[1..].iter())
                .map(|r| base.iter().zip(&r.fused).map(|(b, h)| b - h).collect())
                .collect()
        };
        let fused = (words.as_ref().or(cells.as_ref()))
            .and_then(|rows| rows.first())
            .map(|r| r.fused.clone())
            .unwrap_or_default();
        let mut word_effects = words
            .as_deref()
            .map(effects)
            .unwrap_or_default()
            .into_iter();
        let read = self.read;
        let words = (self.words.into_iter().enumerate())
            .map(|(i, (before, word))| WordEffect {
                before,
                word,
                read: i < read,
                effect: if i < read { word_effects.next() } else { None },
            })
            .collect();
        let picture = self
            .picture
            .map(|(width, height, crop, grid)| PictureEffect {
                width,
                height,
                crop,
                rows: grid,
                cols: grid,
                cells: cells.as_deref().map(effects).unwrap_or_default(),
            });
        Explanation {
            labels: self.labels,
            fused,
            words,
            picture,
        }
    }
}
