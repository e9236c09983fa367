//! What the model returns, and the one way it becomes probabilities on the host: a softmax per
//! output, all of them read back in one transfer (synchronously natively, asynchronously where a
//! GPU read cannot block, as in a browser).

use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::error::{Error, Result};

/// Logits of the fused model and of each branch's own head, `[batch, classes]` each.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    pub fused: Tensor<2>,
    pub image: Option<Tensor<2>>,
    pub text: Option<Tensor<2>>,
    /// With an ensemble of heads, each member's own output (what training's loss reads); the
    /// fields above are then the members' mean probabilities, as log-probabilities.
    pub members: Vec<ModelOutput>,
}

/// Class probabilities of one pair: the fused model's and each branch head's own (`None` for a
/// branch the model or the input lacks).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Scores {
    pub fused: Vec<f32>,
    pub image: Option<Vec<f32>>,
    pub text: Option<Vec<f32>>,
}

/// Probabilities still on the device: `[batch, classes * parts]`, fused then image then text.
pub struct PendingScores {
    probabilities: Tensor<2>,
    classes: usize,
    image: bool,
    text: bool,
}

impl ModelOutput {
    /// An ensemble's output: the mean of its members' probabilities, as log-probabilities (so
    /// a softmax of them gives that mean back), keeping the members.
    pub fn ensemble(first: ModelOutput, rest: Vec<ModelOutput>) -> Self {
        let mut members = vec![first];
        members.extend(rest);
        let n = members.len() as f64;
        let mean = |part: fn(&ModelOutput) -> Option<Tensor<2>>| {
            let probs: Option<Vec<Tensor<2>>> = members.iter().map(part).collect();
            let sum = probs?
                .into_iter()
                .map(|l| softmax(l, 1))
                .reduce(|a, b| a + b)?;
            Some(sum.div_scalar(n).log())
        };
        let (image, text) = (mean(|m| m.image.clone()), mean(|m| m.text.clone()));
        let fused = mean(|m| Some(m.fused.clone()));
        Self {
            fused: fused.unwrap_or_else(|| members[0].fused.clone()),
            image,
            text,
            members,
        }
    }

    pub fn probabilities(self) -> PendingScores {
        let [_, classes] = self.fused.dims();
        let (image, text) = (self.image.is_some(), self.text.is_some());
        let parts = [Some(self.fused), self.image, self.text]
            .into_iter()
            .flatten()
            .map(|logits| softmax(logits, 1))
            .collect();
        PendingScores {
            probabilities: Tensor::cat(parts, 1),
            classes,
            image,
            text,
        }
    }
}

impl PendingScores {
    /// Read back, blocking (native backends).
    pub fn read(self) -> Result<Vec<Scores>> {
        let data = self.probabilities.clone().into_data();
        self.split(data)
    }

    /// Read back without blocking (required for WebGPU in a browser).
    pub async fn read_async(self) -> Result<Vec<Scores>> {
        let data = self
            .probabilities
            .clone()
            .into_data_async()
            .await
            .map_err(|e| Error::Tensor(format!("{e:?}")))?;
        self.split(data)
    }

    fn split(&self, data: TensorData) -> Result<Vec<Scores>> {
        let values = data
            .try_into_vec::<f32>()
            .map_err(|e| Error::Tensor(format!("{e:?}")))?;
        let k = self.classes;
        let width = k * (1 + self.image as usize + self.text as usize);
        Ok(values
            .chunks(width)
            .map(|row| {
                let mut parts = row.chunks(k).map(<[f32]>::to_vec);
                let fused = parts.next().unwrap_or_default();
                let image = self.image.then(|| parts.next()).flatten();
                let text = self.text.then(|| parts.next()).flatten();
                Scores { fused, image, text }
            })
            .collect())
    }
}
