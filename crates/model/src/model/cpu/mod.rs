//! The pretrained encoders' inference on the CPU, with kernels written for them: what the
//! page's one-thread wasm spends an answer in. Burn's flex backend runs every operation as its
//! own pass over memory, and calls its matrix multiply through layers of dispatch that cost
//! more than the multiply itself for a 13-token caption (the profile: docs/benchmarks.md).
//! These take their weights from the Burn modules once, after loading, and compute the same
//! (the tests hold them to Burn's forward passes within 1e-4); `forward` picks them on the
//! flex device, the Burn modules run everywhere else (WebGPU, training).

pub mod lstm;
pub mod minilm;
pub mod mobile;
pub mod panels;

use burn::module::Param;
use burn::prelude::*;

/// A tensor's values, row-major.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    let data = t.into_data().convert::<f32>();
    data.try_into_vec::<f32>().expect("f32 values")
}

/// A parameter's values moved out for the kernels, an empty tensor left in its place: the
/// weights are never held twice (on the CPU a tensor Burn holds alone is handed over without
/// a copy).
pub fn take<const D: usize>(param: &mut Param<Tensor<D>>) -> Vec<f32> {
    let empty = Param::from_tensor(Tensor::zeros([0; D], &param.device()));
    values(std::mem::replace(param, empty).into_value())
}

/// `out[m, n] = lhs[m, k] · rhs[k, n]` (row-major; `rhs` rows `rhs_stride` apart and `out`
/// rows `out_stride` apart, `n` columns of each used).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    lhs: &[f32],
    rhs: &[f32],
    rhs_stride: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    assert!(lhs.len() >= m * k);
    assert!(k == 0 || rhs.len() >= (k - 1) * rhs_stride + n);
    assert!(m == 0 || out.len() >= (m - 1) * out_stride + n);
    // SAFETY: the asserts keep every element gemm reads or writes inside the slices: `lhs` is
    // m x k with row stride k, `rhs` k x n with row stride `rhs_stride`, `out` m x n with row
    // stride `out_stride`, column stride 1; `out` is borrowed mutably, so nothing else
    // aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            out_stride as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            rhs_stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Below this many multiply-adds an operation stays on one thread: handing work to the pool
/// and waking its threads costs more than it saves (tract and ORT keep such a threshold too).
const PARALLEL_WORK: usize = 1 << 18;

/// How many parts to split an operation of `work` multiply-adds over `units` independent
/// units (output channels, columns) into: one per thread of the pool, or one.
pub fn parts(units: usize, work: usize) -> usize {
    if work < PARALLEL_WORK {
        1
    } else {
        pool::threads().min(units).max(1)
    }
}

/// `f(i, part)` on each `chunk`-long part `i` of `out` (the last may be shorter): on the
/// pool's threads when there are several parts, else in turn.
pub fn for_parts(out: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if out.is_empty() {
        return;
    }
    let chunk = chunk.max(1);
    if out.len() > chunk {
        return pool::for_parts(out, chunk, &f);
    }
    f(0, out)
}

/// `f` on each item of a batch, the results one after the other, naming its steps to `step`
/// (the bench profiles one pair). With threads, the work runs on the pool's own threads: the
/// caller waits rather than competing with them for the cores between operations, and a
/// batch's items (independent pictures or captions) are shared out among them too.
pub fn each<T: Sync>(
    items: &[T],
    step: Step,
    f: impl Fn(&T, Step) -> Vec<f32> + Sync + Send,
) -> Vec<f32> {
    if pool::threads() > 1 {
        return pool::run(|| match items {
            [one] => f(one, step),
            _ => pool::each(items, &f),
        });
    }
    items.iter().flat_map(|x| f(x, step)).collect()
}

/// Told each step of a pass as it is done (the bench's profile), from whichever thread runs it.
pub type Step<'a> = &'a mut (dyn FnMut(&'static str) + Send);

/// The kernels' threads: rayon's pool natively and in the page's threaded module (wasm built
/// with atomics, pkg/cpu-threads, whose pool the page starts with `initThreadPool`); none in
/// the single-threaded module.
#[cfg(any(not(target_family = "wasm"), target_feature = "atomics"))]
mod pool {
    use rayon::prelude::*;

    pub fn threads() -> usize {
        rayon::current_num_threads()
    }

    pub fn for_parts(out: &mut [f32], chunk: usize, f: &(impl Fn(usize, &mut [f32]) + Sync)) {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, part)| f(i, part));
    }

    use super::Step;

    pub fn each<T: Sync>(items: &[T], f: &(impl Fn(&T, Step) -> Vec<f32> + Sync)) -> Vec<f32> {
        items
            .par_iter()
            .flat_map_iter(|x| f(x, &mut |_| {}))
            .collect()
    }

    /// `op` on one of the pool's threads.
    pub fn run<R: Send>(op: impl FnOnce() -> R + Send) -> R {
        rayon::scope(|_| op())
    }

    pub fn join<A: Send, B: Send>(
        a: impl FnOnce() -> A + Send,
        b: impl FnOnce() -> B + Send,
    ) -> (A, B) {
        match threads() {
            1 => (a(), b()),
            _ => run(|| rayon::join(a, b)),
        }
    }
}

#[cfg(not(any(not(target_family = "wasm"), target_feature = "atomics")))]
mod pool {
    pub fn threads() -> usize {
        1
    }

    pub fn for_parts(out: &mut [f32], chunk: usize, f: &impl Fn(usize, &mut [f32])) {
        out.chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, part)| f(i, part));
    }

    use super::Step;

    pub fn each<T>(items: &[T], f: &impl Fn(&T, Step) -> Vec<f32>) -> Vec<f32> {
        items.iter().flat_map(|x| f(x, &mut |_| {})).collect()
    }

    pub fn run<R>(op: impl FnOnce() -> R) -> R {
        op()
    }

    pub fn join<A, B>(a: impl FnOnce() -> A, b: impl FnOnce() -> B) -> (A, B) {
        (a(), b())
    }
}

/// `a` and `b` side by side on the pool's threads where it has several, else one after the
/// other.
pub fn join<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    pool::join(a, b)
}

/// Threads the CPU kernels run on: rayon's pool natively and in the page's threaded module, 1
/// in the single-threaded one.
pub fn threads() -> usize {
    pool::threads()
}
