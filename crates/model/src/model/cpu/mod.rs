//! The pretrained encoders' inference on the CPU, with kernels written for them: what the
//! page's one-thread wasm spends an answer in. Burn's flex backend runs every operation as its
//! own pass over memory, and calls its matrix multiply through layers of dispatch that cost
//! more than the multiply itself for a 13-token caption (the profile: docs/benchmarks.md).
//! These take their weights from the Burn modules once, after loading, and compute the same
//! (the tests hold them to Burn's forward passes within 1e-4); `forward` picks them on the
//! flex device, the Burn modules run everywhere else (WebGPU, training).

pub mod minilm;
pub mod mobile;

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

/// `out[m, n] = lhs[m, k] · rhs[k, n]` (row-major; `rhs` and `out` rows `stride` apart, `n`
/// columns of them used).
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    lhs: &[f32],
    rhs: &[f32],
    out: &mut [f32],
    stride: usize,
) {
    assert!(lhs.len() >= m * k);
    assert!(k == 0 || rhs.len() >= (k - 1) * stride + n);
    assert!(m == 0 || out.len() >= (m - 1) * stride + n);
    // SAFETY: the asserts keep every element gemm reads or writes inside the slices: `lhs` is
    // m x k with row stride k, `rhs` k x n and `out` m x n with row stride `stride`, column
    // stride 1; `out` is borrowed mutably, so nothing else aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            stride as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `f` on each item of a batch, the results one after the other: natively on every core when
/// there are several (a batch's pictures or captions are independent), else in turn, naming
/// its steps to `step` (the bench profiles one pair). In wasm this module has no threads.
pub fn each<T: Sync>(
    items: &[T],
    step: &mut dyn FnMut(&'static str),
    f: impl Fn(&T, &mut dyn FnMut(&'static str)) -> Vec<f32> + Sync,
) -> Vec<f32> {
    #[cfg(not(target_family = "wasm"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = cores.min(items.len());
        if threads > 1 {
            let chunk = items.len().div_ceil(threads);
            return std::thread::scope(|scope| {
                let f = &f;
                let handles: Vec<_> = (items.chunks(chunk))
                    .map(|part| {
                        let run = move || -> Vec<f32> {
                            part.iter().flat_map(|x| f(x, &mut |_| {})).collect()
                        };
                        scope.spawn(run)
                    })
                    .collect();
                (handles.into_iter())
                    .flat_map(|h| h.join().expect("a kernel thread panicked"))
                    .collect()
            });
        }
    }
    items.iter().flat_map(|x| f(x, step)).collect()
}
