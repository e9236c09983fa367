//! Classify image + caption pairs with a trained model folder. The same code serves the native
//! predictor and the page: the folder arrives either as files (native) or as fetched bytes (wasm).

use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::Serialize;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::metrics::argmax;
use crate::model::{ModelInput, ModelOutput, SentimentModel};
use crate::preprocess::{ImagePreprocessor, TextPreprocessor, Tokens};

/// A classified pair: the winning label, the fused probabilities and what each branch alone says
/// (`None` for a branch the model or the input lacks). Probabilities follow `labels`' order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    pub label: String,
    pub labels: Vec<String>,
    pub fused: Vec<f32>,
    pub image: Option<Vec<f32>>,
    pub text: Option<Vec<f32>>,
}

/// One pair, preprocessed and ready to batch.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub image: Option<Vec<f32>>,
    pub tokens: Option<Tokens>,
}

pub struct Classifier {
    config: ModelConfig,
    model: SentimentModel,
    image: ImagePreprocessor,
    text: TextPreprocessor,
    device: Device,
}

impl Classifier {
    /// Assemble a classifier from a model folder's three files.
    pub fn from_bytes(
        config_json: &[u8],
        tokenizer_json: &[u8],
        weights: Vec<u8>,
        device: &Device,
    ) -> Result<Self> {
        let config = ModelConfig::from_json(config_json)?;
        let text = TextPreprocessor::from_json(tokenizer_json, config.text.clone())?;
        // Weights may be stored in half precision; the model computes in f32.
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(weights))
            .map_err(|e| Error::Weights(e.to_string()))?
            .cast_to_module_dtype();
        let model = config
            .init(device)
            .try_load_record(record)
            .map_err(|e| Error::Weights(e.to_string()))?;
        Ok(Self::new(config, model, text, device))
    }

    /// Wrap an in-memory model (the trainer's best epoch, say).
    pub fn new(
        config: ModelConfig,
        model: SentimentModel,
        text: TextPreprocessor,
        device: &Device,
    ) -> Self {
        Self {
            image: ImagePreprocessor::new(config.image.clone()),
            config,
            model,
            text,
            device: device.clone(),
        }
    }

    /// Read a model folder from disk.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(dir: &std::path::Path, device: &Device) -> anyhow::Result<Self> {
        use crate::files;
        use anyhow::Context;
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
        };
        let config = read(files::CONFIG)?;
        let tokenizer = read(files::TOKENIZER)?;
        let weights = read(files::WEIGHTS)?;
        Self::from_bytes(&config, &tokenizer, weights, device)
            .with_context(|| format!("cannot load the model folder {}", dir.display()))
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn model(&self) -> &SentimentModel {
        &self.model
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn image_preprocessor(&self) -> &ImagePreprocessor {
        &self.image
    }

    pub fn text_preprocessor(&self) -> &TextPreprocessor {
        &self.text
    }

    /// Decode and tokenise one pair. Parts the model has no branch for are ignored; a pair with
    /// nothing the model can use is an error.
    pub fn prepare(&self, image: Option<&[u8]>, caption: Option<&str>) -> Result<Prepared> {
        let image = match image {
            Some(bytes) if self.model.has_image() => Some(self.image.preprocess(bytes)?),
            _ => None,
        };
        let tokens = match caption {
            Some(caption) if self.model.has_text() => {
                self.text.validate(caption)?;
                Some(self.text.encode(caption)?)
            }
            _ => None,
        };
        if image.is_none() && tokens.is_none() {
            return Err(match (self.model.has_image(), self.model.has_text()) {
                (true, false) => Error::MissingBranch("text (it needs the picture)"),
                (false, true) => Error::MissingBranch("image (it needs the caption)"),
                _ => Error::NoInput,
            });
        }
        Ok(Prepared { image, tokens })
    }

    /// Run the model on pairs that all carry the same parts.
    pub fn forward(&self, batch: &[Prepared]) -> ModelOutput {
        let size = self.config.image.size;
        let images = batch.iter().all(|p| p.image.is_some()).then(|| {
            let pixels = batch
                .iter()
                .flat_map(|p| p.image.clone().unwrap())
                .collect();
            ModelInput::images(pixels, batch.len(), size, &self.device)
        });
        let tokens = batch.iter().all(|p| p.tokens.is_some()).then(|| {
            ModelInput::tokens(
                batch.iter().map(|p| p.tokens.as_ref().unwrap()),
                &self.config.text,
                &self.device,
            )
        });
        self.model.forward(ModelInput { images, tokens })
    }

    /// Softmax the logits into [`Prediction`]s (given the host data of the three outputs).
    pub fn predictions(
        &self,
        fused: Vec<f32>,
        image: Option<Vec<f32>>,
        text: Option<Vec<f32>>,
    ) -> Vec<Prediction> {
        let k = self.config.num_classes();
        let rows =
            |v: &Option<Vec<f32>>, i: usize| v.as_ref().map(|v| v[i * k..(i + 1) * k].to_vec());
        (0..fused.len() / k)
            .map(|i| {
                let probs = fused[i * k..(i + 1) * k].to_vec();
                Prediction {
                    label: self.config.labels[argmax(&probs)].clone(),
                    labels: self.config.labels.clone(),
                    fused: probs,
                    image: rows(&image, i),
                    text: rows(&text, i),
                }
            })
            .collect()
    }

    /// Classify prepared pairs; pairs missing a part are run apart from the complete ones.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn classify_prepared(&self, batch: &[Prepared]) -> Result<Vec<Prediction>> {
        let mut out: Vec<Option<Prediction>> = vec![None; batch.len()];
        let kinds = |p: &Prepared| (p.image.is_some(), p.tokens.is_some());
        let mut groups: Vec<((bool, bool), Vec<usize>)> = Vec::new();
        for (i, p) in batch.iter().enumerate() {
            match groups.iter_mut().find(|(k, _)| *k == kinds(p)) {
                Some((_, members)) => members.push(i),
                None => groups.push((kinds(p), vec![i])),
            }
        }
        for (_, members) in groups {
            let items: Vec<Prepared> = members.iter().map(|&i| batch[i].clone()).collect();
            let output = self.forward(&items);
            let host = |t: Tensor<2>| -> Result<Vec<f32>> {
                burn::tensor::activation::softmax(t, 1)
                    .into_data()
                    .try_into_vec::<f32>()
                    .map_err(|e| Error::Tensor(format!("{e:?}")))
            };
            let fused = host(output.fused)?;
            let image = output.image.map(host).transpose()?;
            let text = output.text.map(host).transpose()?;
            for (p, &i) in self
                .predictions(fused, image, text)
                .into_iter()
                .zip(&members)
            {
                out[i] = Some(p);
            }
        }
        Ok(out
            .into_iter()
            .map(|p| p.expect("every pair classified"))
            .collect())
    }

    /// Classify one pair from its raw parts.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn classify(&self, image: Option<&[u8]>, caption: Option<&str>) -> Result<Prediction> {
        let prepared = self.prepare(image, caption)?;
        Ok(self.classify_prepared(&[prepared])?.remove(0))
    }
}
