//! The mobile CNNs ([`crate::model::mobile`]) on the CPU with kernels written for them: the picture
//! is most of an answer's time in the page's one-thread wasm. Burn's flex backend runs a
//! convolution, its bias and its ReLU6 as separate passes over activations too big for the
//! cache, and its depthwise kernel reads every other value at stride 2 (the profile:
//! docs/benchmarks.md). Here, with batch norm already folded into each convolution:
//! - a pointwise (1x1) convolution is one gemm (the crate flex's own matmul calls) per tile
//!   of output columns, its bias and ReLU6 applied to the tile while it is still in cache;
//! - a depthwise convolution works a channel at a time on a zero-padded copy of its plane,
//!   split into even and odd columns at stride 2, so that every tap is a contiguous
//!   multiply-add the compiler vectorises; bias and ReLU6 per output row;
//! - the stem is im2col + the same gemm.
//!
//! With threads (natively, and the page's threaded module), a convolution's output channels
//! are shared out among them.
//!
//! Same weights, same NCHW layout as the Burn module; the tests hold the two to 1e-4.

use super::{for_parts, matmul, parts};

/// How a convolution pads: before and after, the same rule for rows and columns.
#[derive(Clone, Copy, Debug)]
pub enum Pad {
    /// This many on each side.
    Fixed(usize),
    /// TensorFlow's "same": output `ceil(input / stride)`, the odd one after.
    Same,
}

impl Pad {
    /// `(before, after, output size)` for an input of `size`.
    fn around(self, size: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
        let (before, after) = match self {
            Pad::Fixed(p) => (p, p),
            Pad::Same => {
                let out = size.div_ceil(stride);
                let total = ((out - 1) * stride + kernel).saturating_sub(size);
                (total / 2, total - total / 2)
            }
        };
        (before, after, (size + before + after - kernel) / stride + 1)
    }
}

/// One convolution with its batch norm folded in: weights `[out, in / groups, k, k]`.
#[derive(Clone, Debug)]
pub struct Conv {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub channels: [usize; 2],
    pub kernel: usize,
    pub stride: usize,
    pub pad: Pad,
    pub relu6: bool,
}

/// An inverted residual block's convolutions.
#[derive(Clone, Debug)]
pub struct Block {
    pub expand: Option<Conv>,
    pub depthwise: Conv,
    pub project: Conv,
    pub residual: bool,
}

/// The whole network, stem to pooled features.
#[derive(Clone, Debug)]
pub struct CpuMobile {
    pub stem: Conv,
    pub blocks: Vec<Block>,
    pub head: Conv,
}

/// Channels of `h * w` values each, one after the other.
struct Map {
    data: Vec<f32>,
    h: usize,
    w: usize,
}

impl CpuMobile {
    /// One normalised picture (`3 * h * w` values, CHW) → its pooled features, naming each
    /// step to `step` once it is done (the bench's profile).
    pub fn features(
        &self,
        picture: &[f32],
        h: usize,
        w: usize,
        step: &mut (dyn FnMut(&'static str) + Send),
    ) -> Vec<f32> {
        let x = Map {
            data: picture.to_vec(),
            h,
            w,
        };
        let mut x = dense(&self.stem, &x);
        step("stem conv (3x3) + relu6");
        for block in &self.blocks {
            let expanded = block.expand.as_ref().map(|e| pointwise(e, &x));
            step("pointwise (1x1) conv + relu6");
            let y = depthwise(&block.depthwise, expanded.as_ref().unwrap_or(&x));
            step(match block.depthwise.stride {
                1 => "depthwise conv + relu6, stride 1",
                _ => "depthwise conv + relu6, stride 2",
            });
            let mut y = pointwise(&block.project, &y);
            step("pointwise (1x1) conv, linear");
            if block.residual {
                y.data.iter_mut().zip(&x.data).for_each(|(y, x)| *y += x);
                step("residual add");
            }
            x = y;
        }
        let x = pointwise(&self.head, &x);
        let plane = x.h * x.w;
        let pooled = x
            .data
            .chunks_exact(plane)
            .map(|c| c.iter().sum::<f32>() / plane as f32)
            .collect();
        step("head conv (1x1) + relu6 + pool");
        pooled
    }
}

/// Bias, then ReLU6 where the convolution has it, on one output row of `channel`.
fn finish(conv: &Conv, channel: usize, row: &mut [f32]) {
    let b = conv.bias[channel];
    if conv.relu6 {
        row.iter_mut().for_each(|v| *v = (*v + b).clamp(0.0, 6.0));
    } else {
        row.iter_mut().for_each(|v| *v += b);
    }
}

/// About 64 KB of output per tile: it stays in cache for the bias and ReLU6 after the gemm.
fn tile_columns(rows: usize) -> usize {
    (16_384 / rows.max(1)).clamp(64, 4096).next_multiple_of(16)
}

/// `out = W · cols` tile by tile, each tile finished while it is in cache; `cols` is
/// `[inputs, plane]`. With threads, each takes a share of the output channels.
fn conv_as_matmul(conv: &Conv, cols: &[f32], plane: usize) -> Vec<f32> {
    let [_, outputs] = conv.channels;
    let inputs = conv.weight.len() / outputs;
    let mut out = vec![0.0; outputs * plane];
    let per = outputs.div_ceil(parts(outputs, outputs * inputs * plane));
    for_parts(&mut out, per * plane, |i, rows| {
        let (first, count) = (i * per, rows.len() / plane);
        let weight = &conv.weight[first * inputs..(first + count) * inputs];
        let tile = tile_columns(count);
        for start in (0..plane).step_by(tile) {
            let n = tile.min(plane - start);
            let (rhs, out) = (&cols[start..], &mut rows[start..]);
            matmul(count, n, inputs, weight, rhs, plane, out, plane);
            for (c, row) in rows.chunks_exact_mut(plane).enumerate() {
                finish(conv, first + c, &mut row[start..start + n]);
            }
        }
    });
    out
}

#[inline(never)]
fn pointwise(conv: &Conv, x: &Map) -> Map {
    Map {
        data: conv_as_matmul(conv, &x.data, x.h * x.w),
        ..*x
    }
}

/// A channel's plane with zeros around it: `(values, rows, columns)`.
fn padded(plane: &[f32], x: &Map, rows: (usize, usize), cols: (usize, usize)) -> Vec<f32> {
    let width = x.w + cols.0 + cols.1;
    let mut out = vec![0.0; (x.h + rows.0 + rows.1) * width];
    for (r, row) in plane.chunks_exact(x.w).enumerate() {
        let start = (r + rows.0) * width + cols.0;
        out[start..start + x.w].copy_from_slice(row);
    }
    out
}

/// Any convolution (the stem's) as im2col + gemm; the im2col rows shared out among threads.
#[inline(never)]
fn dense(conv: &Conv, x: &Map) -> Map {
    let [inputs, _] = conv.channels;
    let (k, s) = (conv.kernel, conv.stride);
    let (top, bottom, h) = conv.pad.around(x.h, k, s);
    let (left, right, w) = conv.pad.around(x.w, k, s);
    let width = x.w + left + right;
    let planes: Vec<Vec<f32>> = (x.data.chunks_exact(x.h * x.w).take(inputs))
        .map(|plane| padded(plane, x, (top, bottom), (left, right)))
        .collect();
    // One row per input channel and tap, in the weights' order.
    let rows = inputs * k * k;
    let mut cols = vec![0.0; rows * h * w];
    let per = rows.div_ceil(parts(rows, rows * h * w));
    for_parts(&mut cols, per * h * w, |i, part| {
        for (n, row) in part.chunks_exact_mut(h * w).enumerate() {
            let r = i * per + n;
            let (p, kh, kw) = (&planes[r / (k * k)], r % (k * k) / k, r % k);
            for (oh, out) in row.chunks_exact_mut(w).enumerate() {
                let line = &p[(oh * s + kh) * width + kw..];
                out.iter_mut()
                    .zip(line.iter().step_by(s))
                    .for_each(|(o, v)| *o = *v);
            }
        }
    });
    Map {
        data: conv_as_matmul(conv, &cols, h * w),
        h,
        w,
    }
}

/// A depthwise convolution, channel by channel. Output row `oh`, column `j` reads padded
/// value `(s·oh + kh, s·j + kw)`: the padded plane is split into its `s²` phases (rows and
/// columns by their remainder mod `s`), where that is `(oh + kh / s, j + kw / s)` of phase
/// `(kh % s, kw % s)`. Computed on rows as wide as a phase's, each tap is then one
/// multiply-add over the whole plane at once (the columns past `w` are dropped at the end):
/// long runs the compiler vectorises, even for 7-wide planes.
#[inline(never)]
fn depthwise(conv: &Conv, x: &Map) -> Map {
    let (k, s) = (conv.kernel, conv.stride);
    let (top, bottom, h) = conv.pad.around(x.h, k, s);
    let (left, right, w) = conv.pad.around(x.w, k, s);
    // Padded sizes rounded up to whole phases (the extra zeros are never read).
    let rows = (x.h + top + bottom).div_ceil(s);
    let width = (x.w + left + right).div_ceil(s);
    let run = (h - 1) * width + w;
    // The taps run over a band of output rows at a time, small enough that its sums and the
    // rows they read stay in the L1 cache (a 112 x 112 plane is 50 KB).
    let band = (512 / width).max(1);
    let channels = conv.channels[1];
    let mut out = vec![0.0; channels * h * w];
    // Where each tap's run starts in the phases, in the weights' order.
    let starts: Vec<usize> = (0..k * k)
        .map(|t| {
            let (kh, kw) = (t / k, t % k);
            ((kh % s) * s + kw % s) * rows * width + (kh / s) * width + kw / s
        })
        .collect();
    let per = channels.div_ceil(parts(channels, channels * h * w * k * k));
    for_parts(&mut out, per * h * w, |i, part| {
        let mut phases = vec![0.0; s * s * rows * width];
        let mut acc = vec![0.0; (band * width).min(run)];
        let planes = x.data.chunks_exact(x.h * x.w).skip(i * per);
        for (n, (plane, out)) in planes.zip(part.chunks_exact_mut(h * w)).enumerate() {
            let c = i * per + n;
            phases.fill(0.0);
            for (ih, line) in plane.chunks_exact(x.w).enumerate() {
                let (r, rp) = ((ih + top) / s, (ih + top) % s);
                for cp in 0..s {
                    // The first column in this phase, and where it lands.
                    let first = (cp + s - left % s) % s;
                    let at = ((rp * s + cp) * rows + r) * width + (first + left) / s;
                    if s == 1 {
                        // A row copy; `step_by` moved one value at a time, a quarter of the
                        // stride-1 convolutions' time.
                        phases[at..at + line.len()].copy_from_slice(line);
                        continue;
                    }
                    let values = line.iter().skip(first).step_by(s);
                    phases[at..]
                        .iter_mut()
                        .zip(values)
                        .for_each(|(p, v)| *p = *v);
                }
            }
            let weights = &conv.weight[c * k * k..(c + 1) * k * k];
            for first in (0..h).step_by(band) {
                let (lo, hi) = (first * width, ((first + band) * width).min(run));
                let acc = &mut acc[..hi - lo];
                acc.fill(0.0);
                for (starts, taps) in starts.chunks(3).zip(weights.chunks(3)) {
                    let src = |t: usize| &phases[starts[t] + lo..starts[t] + hi];
                    if let [t0, t1, t2] = *taps {
                        // Three taps per pass over the band: the same sums in the same
                        // order as one tap at a time, a third of the accumulator's trips.
                        let (a, b, c) = (src(0), src(1), src(2));
                        for (((o, a), b), c) in acc.iter_mut().zip(a).zip(b).zip(c) {
                            *o = *o + t0 * a + t1 * b + t2 * c;
                        }
                    } else {
                        for (t, &tap) in taps.iter().enumerate() {
                            acc.iter_mut().zip(src(t)).for_each(|(o, v)| *o += tap * v);
                        }
                    }
                }
                // The band's output rows, finished while they are in cache.
                let lines = out.chunks_exact_mut(w).skip(first).take(band);
                for (row, sums) in lines.zip(acc.chunks(width)) {
                    row.copy_from_slice(&sums[..w]);
                    finish(conv, c, row);
                }
            }
        }
    });
    Map { data: out, h, w }
}
