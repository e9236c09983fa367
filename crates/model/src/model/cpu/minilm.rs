//! MiniLM ([`crate::model::minilm`]) on the CPU, a caption at a time at its own length (its
//! padding would only be masked out again): each linear layer one gemm with its bias (and
//! GELU) applied to the rows it wrote, attention over 12 heads of 32 values as plain loops
//! (13 tokens make it a rounding error), layer norm in one pass per row.

use super::{for_parts, matmul, parts};

/// A linear layer: weight `[inputs, outputs]` (Burn's layout), bias `[outputs]`.
#[derive(Clone, Debug)]
pub struct Dense {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Dense {
    /// `x` `[tokens, inputs]` → `[tokens, outputs]`, with GELU after the bias if `gelu`.
    /// With threads, each multiplies a share of the weight's columns into a block of its own
    /// and finishes it there, then the blocks are laid side by side.
    fn forward(&self, x: &[f32], tokens: usize, gelu: bool) -> Vec<f32> {
        let outputs = self.bias.len();
        let inputs = self.weight.len() / outputs;
        let split = parts(outputs / 16, tokens * outputs * inputs);
        // Whole SIMD widths per block (gemm's f32 kernels are 16 columns wide at most).
        let per = outputs.div_ceil(split).next_multiple_of(16).min(outputs);
        let mut blocks = vec![0.0; tokens * outputs];
        for_parts(&mut blocks, tokens * per, |i, block| {
            let width = block.len() / tokens;
            let rhs = &self.weight[i * per..];
            matmul(tokens, width, inputs, x, rhs, outputs, block, width);
            let bias = &self.bias[i * per..i * per + width];
            for row in block.chunks_exact_mut(width) {
                row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                if gelu {
                    row.iter_mut().for_each(|v| *v = gelu_erf(*v));
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

/// GELU as BERT has it, with erf (not the tanh approximation).
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x / std::f32::consts::SQRT_2))
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
