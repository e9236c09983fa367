//! MiniLM ([`crate::model::minilm`]) on the CPU, a caption at a time at its own length (its
//! padding would only be masked out again): each linear layer one multiply of the caption's
//! rows by the weight packed at load ([`super::panels`]), its bias (and GELU) applied to the
//! rows it wrote, attention over 12 heads of 32 values as plain loops (13 tokens make it a
//! rounding error), layer norm in one pass per row.

use std::f32::consts::FRAC_1_SQRT_2;

use wide::f32x4;

use super::panels::{Panels, Rows, WIDTH, quad};
use super::{for_parts, parts};

/// A linear layer: the weight packed for the multiply, the bias `[outputs]`.
#[derive(Clone, Debug)]
pub struct Dense {
    weight: Panels,
    bias: Vec<f32>,
}

impl Dense {
    /// From Burn's layout: weight `[inputs, outputs]` row-major, bias `[outputs]`.
    pub fn new(weight: &[f32], bias: Vec<f32>) -> Self {
        let outputs = bias.len();
        let inputs = weight.len() / outputs.max(1);
        Self {
            weight: Panels::pack(weight, inputs, outputs),
            bias,
        }
    }

    /// `x` `[tokens, inputs]` → `[tokens, outputs]`, with GELU after the bias if `gelu`.
    /// With threads, each multiplies a share of the weight's columns into a block of its own
    /// and finishes it there, then the blocks are laid side by side.
    fn forward(&self, x: &[f32], tokens: usize, gelu: bool) -> Vec<f32> {
        let outputs = self.weight.outputs();
        let rows = Rows::tile(x, tokens);
        let split = parts(outputs / 16, tokens * outputs * self.weight.inputs());
        // Whole panels per block.
        let per = outputs.div_ceil(split).next_multiple_of(WIDTH).min(outputs);
        let mut blocks = vec![0.0; tokens * outputs];
        for_parts(&mut blocks, tokens * per, |i, block| {
            let width = block.len() / tokens;
            self.weight.multiply(&rows, i * per, block);
            let bias = &self.bias[i * per..i * per + width];
            for row in block.chunks_exact_mut(width) {
                row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                if gelu {
                    self::gelu(row);
                }
            }
        });
        if per == outputs {
            blocks
        } else {
            side_by_side(&blocks, tokens, outputs, per)
        }
    }
}

/// `[tokens, outputs]` from blocks of `per` columns (the last narrower), each `[tokens, width]`.
fn side_by_side(blocks: &[f32], tokens: usize, outputs: usize, per: usize) -> Vec<f32> {
    let mut out = vec![0.0; tokens * outputs];
    for (i, block) in blocks.chunks(tokens * per).enumerate() {
        let width = block.len() / tokens;
        for (t, row) in block.chunks_exact(width).enumerate() {
            out[t * outputs + i * per..][..width].copy_from_slice(row);
        }
    }
    out
}

/// Layer norm over the last dimension.
#[derive(Clone, Debug)]
pub struct Norm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub epsilon: f32,
}

impl Norm {
    fn apply(&self, x: &mut [f32]) {
        let n = self.gamma.len();
        for row in x.chunks_exact_mut(n) {
            let mean = row.iter().sum::<f32>() / n as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n as f32;
            let scale = 1.0 / (var + self.epsilon).sqrt();
            for ((v, g), b) in row.iter_mut().zip(&self.gamma).zip(&self.beta) {
                *v = (*v - mean) * scale * g + b;
            }
        }
    }

    /// `norm(x + residual)`, in place in `x`.
    fn add_apply(&self, x: &mut [f32], residual: &[f32]) {
        x.iter_mut().zip(residual).for_each(|(v, r)| *v += r);
        self.apply(x);
    }
}

/// One BERT layer (post-norm).
#[derive(Clone, Debug)]
pub struct Layer {
    pub query: Dense,
    pub key: Dense,
    pub value: Dense,
    pub attention_output: Dense,
    pub attention_norm: Norm,
    pub intermediate: Dense,
    pub output: Dense,
    pub output_norm: Norm,
}

/// The whole encoder, embeddings to the sentence embedding.
#[derive(Clone, Debug)]
pub struct CpuMiniLm {
    /// `[vocabulary, hidden]`, `[positions, hidden]`, and token type 0's row.
    pub words: Vec<f32>,
    pub positions: Vec<f32>,
    pub token_type: Vec<f32>,
    pub norm: Norm,
    pub layers: Vec<Layer>,
    pub heads: usize,
}

impl CpuMiniLm {
    /// A caption's tokens (position, id), its padding left out → its L2-normalised
    /// mean-pooled embedding, naming each step to `step` once it is done (the bench's profile).
    pub fn embed(
        &self,
        tokens: &[(usize, usize)],
        step: &mut (dyn FnMut(&'static str) + Send),
    ) -> Vec<f32> {
        let hidden = self.token_type.len();
        let t = tokens.len();
        if t == 0 {
            return vec![0.0; hidden];
        }
        let mut x = Vec::with_capacity(t * hidden);
        for &(p, id) in tokens {
            let word = &self.words[id * hidden..(id + 1) * hidden];
            let position = &self.positions[p * hidden..(p + 1) * hidden];
            let sum = word.iter().zip(position).zip(&self.token_type);
            x.extend(sum.map(|((w, p), k)| w + p + k));
        }
        self.norm.apply(&mut x);
        step("embeddings + norm");
        for layer in &self.layers {
            x = self.layer(layer, x, t, step);
        }
        let mut mean = vec![0.0; hidden];
        for row in x.chunks_exact(hidden) {
            mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
        }
        mean.iter_mut().for_each(|m| *m /= t as f32);
        let norm = mean.iter().map(|m| m * m).sum::<f32>().sqrt().max(1e-12);
        mean.iter_mut().for_each(|m| *m /= norm);
        step("mean pool + normalise");
        mean
    }

    fn layer(
        &self,
        layer: &Layer,
        x: Vec<f32>,
        t: usize,
        step: &mut (dyn FnMut(&'static str) + Send),
    ) -> Vec<f32> {
        let q = layer.query.forward(&x, t, false);
        let k = layer.key.forward(&x, t, false);
        let v = layer.value.forward(&x, t, false);
        step("query, key, value projections");
        let context = attend(&q, &k, &v, t, self.heads);
        step("attention (scores, softmax, context)");
        let mut a = layer.attention_output.forward(&context, t, false);
        layer.attention_norm.add_apply(&mut a, &x);
        step("attention output + norm");
        let h = layer.intermediate.forward(&a, t, true);
        step("feed-forward in (384 → 1536) + gelu");
        let mut out = layer.output.forward(&h, t, false);
        layer.output_norm.add_apply(&mut out, &a);
        step("feed-forward out (1536 → 384) + norm");
        out
    }
}

/// GELU as BERT has it, with erf (not the tanh approximation), over a row four values at a
/// time: libm's scalar `erff` was a sixth of the caption's time in the page.
fn gelu(row: &mut [f32]) {
    let gelu = |x: f32x4| x * f32x4::splat(0.5) * (f32x4::ONE + erf(x * FRAC_1_SQRT_2));
    let mut quads = row.chunks_exact_mut(4);
    for q in &mut quads {
        q.copy_from_slice(&gelu(quad(q)).to_array());
    }
    let rest = quads.into_remainder();
    let mut last = [0.0; 4];
    last[..rest.len()].copy_from_slice(rest);
    rest.copy_from_slice(&gelu(f32x4::new(last)).to_array()[..rest.len()]);
}

/// erf as a rational function of x (odd degree 13 over even degree 8), x clamped to ±4 where
/// f32's erf is ±1: Eigen's and XLA's single-precision erf, within 1e-6 of libm's (tested).
fn erf(x: f32x4) -> f32x4 {
    const ALPHA: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ];
    const BETA: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329e-3,
        -1.426_474e-2,
    ];
    let x = x.fast_max(f32x4::splat(-4.0)).fast_min(f32x4::splat(4.0));
    let x2 = x * x;
    let horner = |c: &[f32]| c.iter().fold(f32x4::ZERO, |p, &c| p * x2 + f32x4::splat(c));
    x * horner(&ALPHA) / horner(&BETA)
}

/// Scaled dot-product attention over `heads` heads: `q`, `k`, `v` `[t, hidden]` → the context
/// `[t, hidden]`, every token seeing every token.
fn attend(q: &[f32], k: &[f32], v: &[f32], t: usize, heads: usize) -> Vec<f32> {
    let hidden = q.len() / t.max(1);
    let d = hidden / heads;
    let scale = 1.0 / (d as f32).sqrt();
    let mut context = vec![0.0; t * hidden];
    let mut scores = vec![0.0; t];
    for h in 0..heads {
        let cols = h * d..(h + 1) * d;
        for i in 0..t {
            let qi = &q[i * hidden..][cols.clone()];
            for (j, s) in scores.iter_mut().enumerate() {
                let kj = &k[j * hidden..][cols.clone()];
                *s = qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale;
            }
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            scores.iter_mut().for_each(|s| *s = (*s - max).exp());
            let total: f32 = scores.iter().sum();
            let out = &mut context[i * hidden..][cols.clone()];
            for (j, s) in scores.iter().enumerate() {
                let vj = &v[j * hidden..][cols.clone()];
                let p = s / total;
                out.iter_mut().zip(vj).for_each(|(o, v)| *o += p * v);
            }
        }
    }
    context
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_is_libms_within_a_millionth() {
        let xs = (-6000..=6000).map(|i| i as f32 / 1000.0);
        for x in xs {
            let got = erf(f32x4::splat(x)).to_array()[0];
            let want = libm::erff(x);
            assert!((got - want).abs() < 1e-6, "erf({x}) = {got}, libm {want}");
        }
    }

    #[test]
    fn gelu_covers_a_ragged_row() {
        let mut row: Vec<f32> = (0..7).map(|i| i as f32 - 3.0).collect();
        let want: Vec<f32> = row
            .iter()
            .map(|&x| 0.5 * x * (1.0 + libm::erff(x / std::f32::consts::SQRT_2)))
            .collect();
        gelu(&mut row);
        for (g, w) in row.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{g} against {w}");
        }
    }
}
