//! The heads on the encoders' features: each branch's own linear head, and what combines the
//! branches (the fusion MLP over their features, or late fusion over their heads' scores). An
//! ensemble is several such sets over the same features; [`super::SentimentModel`] holds the
//! first set in its branches and the others as [`HeadSet`]s.

use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, Relu};
use burn::prelude::*;

use super::output::ModelOutput;
use crate::error::{Error, Result};

/// Concatenated branch features → hidden layer → classes.
#[derive(Module, Debug)]
pub struct FusionHead {
    hidden: Linear,
    activation: Relu,
    dropout: Dropout,
    output: Linear,
}

impl FusionHead {
    pub fn new(
        inputs: usize,
        hidden: usize,
        classes: usize,
        dropout: f64,
        device: &Device,
    ) -> Self {
        Self {
            hidden: LinearConfig::new(inputs, hidden).init(device),
            activation: Relu::new(),
            dropout: DropoutConfig::new(dropout).init(),
            output: LinearConfig::new(hidden, classes).init(device),
        }
    }

    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        let x = self.activation.forward(self.hidden.forward(features));
        self.output.forward(self.dropout.forward(x))
    }
}

/// One more member of an ensemble: heads of its own for each branch, and its own fusion.
#[derive(Module, Debug)]
pub struct HeadSet {
    pub image: Option<Linear>,
    pub text: Option<Linear>,
    pub fusion: Option<FusionHead>,
    pub late: Option<Linear>,
}

impl HeadSet {
    pub fn heads(&self) -> Heads<'_> {
        Heads {
            image: self.image.as_ref(),
            text: self.text.as_ref(),
            fusion: self.fusion.as_ref(),
            late: self.late.as_ref(),
        }
    }
}

/// One set of heads, wherever its modules live.
pub struct Heads<'a> {
    pub image: Option<&'a Linear>,
    pub text: Option<&'a Linear>,
    pub fusion: Option<&'a FusionHead>,
    pub late: Option<&'a Linear>,
}

impl Heads<'_> {
    /// This set's logits on the branches' features (after dropout): with both branches,
    /// `fused` is the fusion head, or late fusion of the two heads' scores; with one, that
    /// branch's own head.
    pub fn forward(
        &self,
        image: Option<&Tensor<2>>,
        text: Option<&Tensor<2>>,
    ) -> Result<ModelOutput> {
        let li = self.image.zip(image).map(|(h, f)| h.forward(f.clone()));
        let lt = self.text.zip(text).map(|(h, f)| h.forward(f.clone()));
        let fused = match (image, text, &li, &lt, self.fusion, self.late) {
            (Some(fi), Some(ft), Some(_), Some(_), Some(fusion), _) => {
                fusion.forward(Tensor::cat(vec![fi.clone(), ft.clone()], 1))
            }
            (.., Some(li), Some(lt), None, Some(late)) => {
                late.forward(Tensor::cat(vec![li.clone(), lt.clone()], 1))
            }
            (.., Some(logits), _, _, _) | (.., None, Some(logits), _, _) => logits.clone(),
            (.., None, None, _, _) => return Err(Error::NoInput),
        };
        Ok(ModelOutput {
            fused,
            image: li,
            text: lt,
            members: Vec::new(),
        })
    }
}
