//! What MiniLM ([`super::minilm`]) and the trainer's MPNet teacher share: BERT's layer
//! (self-attention, then a GELU feed-forward closed by a dense → residual → layer norm
//! sub-layer) and multi-head attention's arithmetic. They differ in their attention's
//! parameters (named after their own checkpoints) and in its bias: padding alone for MiniLM,
//! relative positions too for MPNet.

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, softmax};

/// A layer's self-attention sub-layer, its output sub-layer included: `x` `[batch, len,
/// hidden]`, `bias` broadcast over `[batch, heads, len, len]`.
pub trait SelfAttention {
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3>;

    /// [`Self::forward`], naming its parts to `step` as they finish (the bench's profile).
    fn forward_profiled(
        &self,
        x: Tensor<3>,
        bias: Tensor<4>,
        step: &mut (dyn FnMut(&'static str) + Send),
    ) -> Tensor<3> {
        let x = self.forward(x, bias);
        step("self-attention");
        x
    }
}

/// Dense → residual add → layer norm (BERT's post-norm sub-layer output).
#[derive(Module, Debug)]
pub struct DenseNorm {
    dense: Linear,
    norm: LayerNorm,
}

impl DenseNorm {
    pub fn new(inputs: usize, hidden: usize, epsilon: f64, device: &Device) -> Self {
        Self {
            dense: LinearConfig::new(inputs, hidden).init(device),
            norm: LayerNormConfig::new(hidden)
                .with_epsilon(epsilon)
                .init(device),
        }
    }

    pub fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.norm.forward(self.dense.forward(x) + residual)
    }

    pub fn dense_mut(&mut self) -> &mut Linear {
        &mut self.dense
    }

    pub fn norm_mut(&mut self) -> &mut LayerNorm {
        &mut self.norm
    }
}

/// One BERT layer over an attention of type `A`.
#[derive(Module, Debug)]
pub struct Layer<A> {
    attention: A,
    intermediate: Linear,
    output: DenseNorm,
}

impl<A> Layer<A> {
    pub fn attention(&self) -> &A {
        &self.attention
    }

    /// The attention, the feed-forward's first linear layer and its closing sub-layer.
    pub fn parts_mut(&mut self) -> (&mut A, &mut Linear, &mut DenseNorm) {
        (
            &mut self.attention,
            &mut self.intermediate,
            &mut self.output,
        )
    }
}

impl<A: SelfAttention> Layer<A> {
    /// A layer `hidden` wide with a feed-forward `intermediate` wide.
    pub fn new(
        attention: A,
        hidden: usize,
        intermediate: usize,
        epsilon: f64,
        device: &Device,
    ) -> Self {
        Self {
            attention,
            intermediate: LinearConfig::new(hidden, intermediate).init(device),
            output: DenseNorm::new(intermediate, hidden, epsilon, device),
        }
    }

    pub fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        self.forward_profiled(x, bias, &mut |_| {})
    }

    /// [`Self::forward`], naming each part to `step` once it is done (the bench's profile).
    pub fn forward_profiled(
        &self,
        x: Tensor<3>,
        bias: Tensor<4>,
        step: &mut (dyn FnMut(&'static str) + Send),
    ) -> Tensor<3> {
        let x = self.attention.forward_profiled(x, bias, step);
        let h = self.intermediate.forward(x.clone());
        step("feed-forward in (384 → 1536)");
        let h = gelu(h);
        step("gelu");
        let x = self.output.forward(h, x);
        step("feed-forward out (1536 → 384) + norm");
        x
    }
}

/// Scaled dot-product attention over `heads` heads: `q`, `k`, `v` `[batch, len, hidden]` (the
/// projections), `bias` added to the scores before the softmax; the context `[batch, len,
/// hidden]`, heads merged again.
pub fn attend(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    bias: Tensor<4>,
    heads: usize,
) -> Tensor<3> {
    let [batch, len, hidden] = q.dims();
    let head_dim = hidden / heads;
    let split = |t: Tensor<3>| t.reshape([batch, len, heads, head_dim]).swap_dims(1, 2);
    let scores = split(q).matmul(split(k).swap_dims(2, 3)) / (head_dim as f64).sqrt() + bias;
    softmax(scores, 3)
        .matmul(split(v))
        .swap_dims(1, 2)
        .reshape([batch, len, hidden])
}
