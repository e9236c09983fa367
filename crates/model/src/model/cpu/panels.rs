//! A linear layer's multiply for a few rows (a caption's tokens). gemm's kernels are shaped
//! for many rows: at 13 they packed the weight again on every call and left a quarter of
//! their 12-row tiles empty. Here the weight is packed once, at load, in panels of
//! [`WIDTH`] columns stored input by input, so a panel streams through the cache in order;
//! the rows are laid out input-major in tiles of up to [`TILE`], and each tile × panel of the
//! output is summed in registers over every input.

use wide::f32x4;

/// Columns per panel: two 128-bit vectors (wasm SIMD's width).
pub const WIDTH: usize = 8;
/// Rows summed together: 4 × 8 sums fill half of x86's 16 vector registers, leaving room
/// for the panel's values and the row's broadcast one.
pub const TILE: usize = 4;

/// A `[k, n]` row-major matrix as panels of [`WIDTH`] columns, each `[k, WIDTH]` (the last
/// padded with zeros).
#[derive(Clone, Debug)]
pub struct Panels {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl Panels {
    pub fn pack(matrix: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(matrix.len(), k * n, "a [{k}, {n}] matrix");
        let mut data = vec![0.0; n.div_ceil(WIDTH) * k * WIDTH];
        for (p, panel) in data.chunks_exact_mut(k * WIDTH).enumerate() {
            let cols = p * WIDTH..((p + 1) * WIDTH).min(n);
            for (row, dst) in panel.chunks_exact_mut(WIDTH).enumerate() {
                dst[..cols.len()].copy_from_slice(&matrix[row * n..][cols.clone()]);
            }
        }
        Self { k, n, data }
    }

    pub fn inputs(&self) -> usize {
        self.k
    }

    pub fn outputs(&self) -> usize {
        self.n
    }

    /// `out[r, c] = Σᵢ x[r, i] · self[i, first + c]` for the rows of `x` (already
    /// [`Rows::tile`]d) and `out.len() / rows` columns from `first` (a multiple of
    /// [`WIDTH`]), `out` `[rows, width]` row-major.
    pub fn multiply(&self, x: &Rows, first: usize, out: &mut [f32]) {
        assert_eq!(x.k, self.k, "as many inputs as the weight has");
        assert!(first.is_multiple_of(WIDTH) && x.rows > 0);
        let width = out.len() / x.rows;
        assert!(first + width <= self.n);
        let panels = self.data.chunks_exact(self.k * WIDTH).skip(first / WIDTH);
        for (c, panel) in (0..width).step_by(WIDTH).zip(panels) {
            let w = WIDTH.min(width - c);
            let mut r = 0;
            for tile in x.data.chunks(TILE * self.k) {
                let out = &mut out[r * width + c..];
                match tile.len() / self.k {
                    4 => sum::<4>(tile, panel, out, width, w),
                    3 => sum::<3>(tile, panel, out, width, w),
                    2 => sum::<2>(tile, panel, out, width, w),
                    _ => sum::<1>(tile, panel, out, width, w),
                }
                r += TILE;
            }
        }
    }
}

/// A `[rows, k]` input laid out for [`Panels::multiply`]: tiles of [`TILE`] rows (the last
/// may have fewer), each input-major (`[k, rows in the tile]`).
pub struct Rows {
    rows: usize,
    k: usize,
    data: Vec<f32>,
}

impl Rows {
    pub fn tile(x: &[f32], rows: usize) -> Self {
        let k = x.len() / rows.max(1);
        let mut data = Vec::with_capacity(x.len());
        for tile in x.chunks(TILE * k) {
            let n = tile.len() / k;
            data.extend((0..k * n).map(|j| tile[(j % n) * k + j / n]));
        }
        Self { rows, k, data }
    }
}

/// One tile of `R` rows × one panel: `out[r * stride + c]` for `c < w`. Written with vector
/// types: left to itself, LLVM kept the 32 sums scalar.
#[inline(always)]
fn sum<const R: usize>(tile: &[f32], panel: &[f32], out: &mut [f32], stride: usize, w: usize) {
    let mut acc = [[f32x4::ZERO; 2]; R];
    for (x, p) in tile.chunks_exact(R).zip(panel.chunks_exact(WIDTH)) {
        let p = [quad(&p[..4]), quad(&p[4..])];
        for (acc, &x) in acc.iter_mut().zip(x) {
            let x = f32x4::splat(x);
            acc[0] += x * p[0];
            acc[1] += x * p[1];
        }
    }
    for (r, [low, high]) in acc.iter().enumerate() {
        let mut row = [0.0; WIDTH];
        row[..4].copy_from_slice(&low.to_array());
        row[4..].copy_from_slice(&high.to_array());
        out[r * stride..][..w].copy_from_slice(&row[..w]);
    }
}

/// Four values as a vector.
pub fn quad(v: &[f32]) -> f32x4 {
    f32x4::new(v.try_into().expect("4 values"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_plain_product_on_ragged_shapes() {
        for (rows, k, n) in [(13, 384, 40), (1, 5, 3), (6, 17, 8), (4, 8, 9)] {
            let x: Vec<f32> = (0..rows * k).map(|i| (i % 7) as f32 - 3.0).collect();
            let m: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5).collect();
            let panels = Panels::pack(&m, k, n);
            let tiled = Rows::tile(&x, rows);
            for first in (0..n).step_by(WIDTH) {
                let width = n - first;
                let mut out = vec![f32::NAN; rows * width];
                panels.multiply(&tiled, first, &mut out);
                for r in 0..rows {
                    for c in 0..width {
                        let want: f32 = (0..k).map(|i| x[r * k + i] * m[i * n + first + c]).sum();
                        assert_eq!(out[r * width + c], want, "{rows}x{k}x{n} [{r}, {c}]");
                    }
                }
            }
        }
    }
}
