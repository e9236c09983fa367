//! The mobile CNNs ([`crate::model::mobile`]) on the CPU with kernels written for them: the picture
//! is most of an answer's time in the page's one-thread wasm. Burn's flex backend runs a
//! convolution, its bias and its ReLU6 as separate passes over activations too big for the
//! cache, and its depthwise kernel reads every other value at stride 2 (the profile:
//! docs/benchmarks.md). Here, with batch norm already folded into each convolution:
//! - a pointwise (1x1) convolution is one gemm (the crate flex's own matmul calls) per tile
//!   of output columns, its bias and ReLU6 applied to the tile while it is still in cache;
//! - a depthwise convolution works a channel at a time on a zero-padded copy of its plane,
//!   split into even and odd columns at stride 2, so that every tap is a contiguous run the
//!   compiler vectorises; a 3x3 kernel's nine taps in one pass, bias and ReLU6 on the way out;
//! - the stem is im2col (contiguous copies from the same split planes) + the same gemm.
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

/// Any convolution (the stem's) as im2col + gemm. Each im2col row is a run of `w` values
/// from each output row's place in the input's phases (see [`depthwise`]): contiguous copies,
/// where reading the padded plane at stride 2 moved one value at a time. The rows are shared
/// out among threads.
#[inline(never)]
fn dense(conv: &Conv, x: &Map) -> Map {
    let [inputs, _] = conv.channels;
    let k = conv.kernel;
    let (phases, h, w) = Phases::new(conv, x);
    let size = phases.len();
    let mut split = vec![0.0; inputs * size];
    let planes = x.data.chunks_exact(x.h * x.w);
    for (plane, split) in planes.zip(split.chunks_exact_mut(size)) {
        for (ih, line) in plane.chunks_exact(x.w).enumerate() {
            phases.split(line, ih, split);
        }
    }
    let starts = phases.starts(k);
    // One row per input channel and tap, in the weights' order.
    let rows = inputs * k * k;
    let mut cols = vec![0.0; rows * h * w];
    let per = rows.div_ceil(parts(rows, rows * h * w));
    for_parts(&mut cols, per * h * w, |i, part| {
        for (n, row) in part.chunks_exact_mut(h * w).enumerate() {
            let r = i * per + n;
            let from = &split[r / (k * k) * size + starts[r % (k * k)]..];
            for (oh, out) in row.chunks_exact_mut(w).enumerate() {
                copy(out, &from[oh * phases.width..][..w]);
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
/// `(kh % s, kw % s)`. Computed on rows as wide as a phase's, the taps are then multiply-adds
/// over the whole plane at once (the columns past `w` are dropped at the end): long runs the
/// compiler vectorises, even for 7-wide planes.
#[inline(never)]
fn depthwise(conv: &Conv, x: &Map) -> Map {
    let k = conv.kernel;
    let (phases, h, w) = Phases::new(conv, x);
    let (width, run) = (phases.width, (h - 1) * phases.width + w);
    // The taps run over a band of output rows at a time, small enough that its sums and the
    // rows they read stay in the L1 cache (a 112 x 112 plane is 50 KB).
    let band = (512 / width).max(1);
    let channels = conv.channels[1];
    let mut out = vec![0.0; channels * h * w];
    let starts = phases.starts(k);
    let per = channels.div_ceil(parts(channels, channels * h * w * k * k));
    for_parts(&mut out, per * h * w, |i, part| {
        // Every channel writes the same places, so the zeros around them stay from here on.
        let mut split = vec![0.0; phases.len()];
        let mut acc = vec![0.0; (band * width).min(run)];
        let planes = x.data.chunks_exact(x.h * x.w).skip(i * per);
        for (n, (plane, out)) in planes.zip(part.chunks_exact_mut(h * w)).enumerate() {
            let c = i * per + n;
            for (ih, line) in plane.chunks_exact(x.w).enumerate() {
                phases.split(line, ih, &mut split);
            }
            let weights = &conv.weight[c * k * k..(c + 1) * k * k];
            for first in (0..h).step_by(band) {
                let (lo, hi) = (first * width, ((first + band) * width).min(run));
                let acc = &mut acc[..hi - lo];
                taps(acc, weights, |t| &split[starts[t] + lo..starts[t] + hi]);
                // The band's output rows, finished while they are in cache.
                let lines = out.chunks_exact_mut(w).skip(first).take(band);
                for (row, sums) in lines.zip(acc.chunks(width)) {
                    finish_from(conv, c, row, sums);
                }
            }
        }
    });
    Map { data: out, h, w }
}

/// Where a channel's plane goes in its `s²` phases, one after the other, each `rows` of
/// `width` (zero padding included).
struct Phases {
    s: usize,
    top: usize,
    left: usize,
    rows: usize,
    width: usize,
}

impl Phases {
    /// The phases of `x` for `conv`, with the output's height and width.
    fn new(conv: &Conv, x: &Map) -> (Self, usize, usize) {
        let (k, s) = (conv.kernel, conv.stride);
        let (top, bottom, h) = conv.pad.around(x.h, k, s);
        let (left, right, w) = conv.pad.around(x.w, k, s);
        let phases = Phases {
            s,
            top,
            left,
            // Padded sizes rounded up to whole phases (the extra zeros are never read).
            rows: (x.h + top + bottom).div_ceil(s),
            width: (x.w + left + right).div_ceil(s),
        };
        (phases, h, w)
    }

    /// Values in all the phases.
    fn len(&self) -> usize {
        self.s * self.s * self.rows * self.width
    }

    /// Where each tap of a `k x k` kernel starts reading, in the weights' order: output
    /// `(oh, j)` reads `starts[tap] + oh * width + j`.
    fn starts(&self, k: usize) -> Vec<usize> {
        let s = self.s;
        let tap = |t: usize| self.at((t / k) % s, (t % k) % s, (t / k) / s) + (t % k) / s;
        (0..k * k).map(tap).collect()
    }

    /// Where row `r` of phase `(rp, cp)` starts.
    fn at(&self, rp: usize, cp: usize, r: usize) -> usize {
        ((rp * self.s + cp) * self.rows + r) * self.width
    }

    /// Input row `ih` (`line`) into its place in the phases.
    fn split(&self, line: &[f32], ih: usize, phases: &mut [f32]) {
        let (s, left) = (self.s, self.left);
        let (r, rp) = ((ih + self.top) / s, (ih + self.top) % s);
        match s {
            1 => {
                let at = self.at(0, 0, r) + left;
                copy(&mut phases[at..at + line.len()], line);
            }
            2 => {
                // Padded column `left + 2m` is value `m + left / 2` of phase `left % 2`, the
                // next one `m + ⌈left / 2⌉` of the other phase. Pair by pair is a pattern the
                // compiler turns into vector shuffles; a strided copy moved one value at a time.
                let even = self.at(rp, left % 2, r) + left / 2;
                let odd = self.at(rp, 1 - left % 2, r) + left.div_ceil(2);
                let pairs = line.len() / 2;
                let (lo, hi) = phases.split_at_mut(even.max(odd));
                let (first, second) = (&mut lo[even.min(odd)..][..pairs], &mut hi[..pairs]);
                let (evens, odds) = if even < odd {
                    (first, second)
                } else {
                    (second, first)
                };
                let pairs_in = line.chunks_exact(2);
                for ((e, o), pair) in evens.iter_mut().zip(odds.iter_mut()).zip(pairs_in) {
                    (*e, *o) = (pair[0], pair[1]);
                }
                if line.len() % 2 == 1 {
                    phases[even + pairs] = line[line.len() - 1];
                }
            }
            _ => {
                for cp in 0..s {
                    // The first column in this phase, and where it lands.
                    let first = (cp + s - left % s) % s;
                    let at = self.at(rp, cp, r) + (first + left) / s;
                    let values = line.iter().skip(first).step_by(s);
                    phases[at..]
                        .iter_mut()
                        .zip(values)
                        .for_each(|(p, v)| *p = *v);
                }
            }
        }
    }
}

/// `acc = Σ_t weights[t] · src(t)`, all of a 3x3 kernel's nine taps in one pass over `acc`
/// (the same sums in the same order as one tap at a time, a ninth of the trips through
/// memory). Nine runs apart, not one run read at offsets 0, 1, 2: given those, the compiler
/// builds the shifted vectors with shuffles, slower here than loads.
fn taps<'a>(acc: &mut [f32], weights: &[f32], src: impl Fn(usize) -> &'a [f32]) {
    let n = acc.len();
    let &[w0, w1, w2, w3, w4, w5, w6, w7, w8] = weights else {
        acc.fill(0.0);
        for (t, &tap) in weights.iter().enumerate() {
            acc.iter_mut().zip(src(t)).for_each(|(o, v)| *o += tap * v);
        }
        return;
    };
    let [a, b, c, d, e, f, g, h, i] = std::array::from_fn(|t| &src(t)[..n]);
    for j in 0..n {
        acc[j] = w0 * a[j]
            + w1 * b[j]
            + w2 * c[j]
            + w3 * d[j]
            + w4 * e[j]
            + w5 * f[j]
            + w6 * g[j]
            + w7 * h[j]
            + w8 * i[j];
    }
}

/// `row = finished(sums)`: [`finish`] on the way out of the sums.
fn finish_from(conv: &Conv, channel: usize, row: &mut [f32], sums: &[f32]) {
    let b = conv.bias[channel];
    let pairs = row.iter_mut().zip(sums);
    if conv.relu6 {
        pairs.for_each(|(o, v)| *o = (*v + b).clamp(0.0, 6.0));
    } else {
        pairs.for_each(|(o, v)| *o = *v + b);
    }
}

/// `dst = src`, four values at a time: rows of 7 to 28 values copied inline, where a call to
/// the memory copy cost more than the copy.
fn copy(dst: &mut [f32], src: &[f32]) {
    let (mut d, mut s) = (dst.chunks_exact_mut(4), src.chunks_exact(4));
    for (d, s) in (&mut d).zip(&mut s) {
        let d: &mut [f32; 4] = d.try_into().expect("4 values");
        *d = s.try_into().expect("4 values");
    }
    let rest = d.into_remainder().iter_mut().zip(s.remainder());
    rest.for_each(|(d, s)| *d = *s);
}
