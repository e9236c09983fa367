//! How the model folder stores the weights: a [`WeightPlan`] names a precision per part of the
//! model: f32, f16, int8 (Burn's symmetric Q8S with an f16 scale per block of values) or int4
//! (Q4S, the same blocks, packed eight to a word: [`pack_q4`]). Vectors (biases, norms) stay in
//! the plan's float format. Loading turns everything back into f32 once
//! ([`SentimentModel::dequantized`]); the model computes in f32.
//!
//! Which parts the shipped models store in which precision is measured, not guessed: the
//! trainer's `--weights-try` keeps a choice only where the cross-validated folds, written and
//! classified end to end, lose no more than its tolerance against f32 (`metrics.json`'s
//! `precision`).

mod pack;
mod plan;

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::quantization::{
    CalibrationRange, QuantScheme, QuantStore, QuantValue, ScaleDtype, compute_q_params,
};
use burn::tensor::{Bytes, DType, FloatDType, TensorData};
use serde::{Deserialize, Serialize};

pub use pack::pack_q4;
pub use plan::{Choice, Part, Storage, WeightPlan};

use super::SentimentModel;
use crate::config::ModelConfig;
use crate::error::{Error, Result};

/// A uniform storage format: f32, f16, or int8 for the caption encoder's matrices and the
/// heads' with f16 for the rest (a [`WeightPlan`]'s starting point).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightFormat {
    #[default]
    F32,
    F16,
    Int8,
}

impl SentimentModel {
    /// The model a folder's `config` and weights file describe, in f32 on the CPU. Weights
    /// may be stored in f16, int8 or int4; they are loaded and turned into f32 on the CPU,
    /// where every storage format has a kernel (WebGPU has none for 8-bit values).
    pub fn from_stored(config: &ModelConfig, weights: Vec<u8>) -> Result<Self> {
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(weights))
            .map_err(|e| Error::Weights(e.to_string()))?
            .cast_to_module_dtype();
        Ok(config
            .init(&Device::flex())
            .try_load_record(record)
            .map_err(|e| Error::Weights(e.to_string()))?
            .dequantized())
    }

    /// The same model with each parameter in the precision `plan` gives its part.
    pub fn stored_as(self, plan: &WeightPlan) -> Self {
        self.map(&mut Store {
            plan,
            path: Vec::new(),
        })
    }

    /// The weights file of the model stored as `plan` says.
    pub fn stored_bytes(self, plan: &WeightPlan) -> Result<Vec<u8>> {
        let bytes = (self.stored_as(plan).into_record().into_bytes())
            .map_err(|e| Error::Weights(e.to_string()))?
            .to_vec();
        match plan.has_int4() {
            true => pack_q4(bytes),
            false => Ok(bytes),
        }
    }

    /// Quantized parameters back to f32, after loading (f16 ones the record casts itself).
    pub fn dequantized(self) -> Self {
        self.map(&mut Dequantize)
    }
}

/// The block a parameter of `shape` is quantized in (the values that share one scale: the
/// largest power of two up to `size` that divides its side), or `None` where it stays in the
/// float format: vectors, small matrices, or no block divides it. A block's values are
/// contiguous in memory.
pub fn quant_block(shape: &[usize], size: u8) -> Option<Vec<usize>> {
    let sizes = [128, 64, 32, 16, 8]
        .into_iter()
        .filter(|b| *b <= size as usize);
    let divisor = |n: usize| sizes.clone().find(|b| n.is_multiple_of(*b));
    match *shape {
        // A weight matrix [inputs, outputs] (linear layers, embeddings): along the outputs.
        [inputs, outputs] if inputs * outputs >= 1024 => Some(vec![divisor(outputs)?]),
        // A 1×1 convolution [outputs, inputs, 1, 1]: along the inputs.
        [_, inputs, 1, 1] => Some(vec![divisor(inputs)?, 1, 1]),
        // Any other convolution: each output channel's kernel (a block's sides fit a byte).
        [_, inputs, h, w] if inputs.max(h).max(w) <= 255 => Some(vec![inputs, h, w]),
        _ => None,
    }
}

/// Stores each float parameter as the plan says of its part, tracking the module path.
struct Store<'a> {
    plan: &'a WeightPlan,
    path: Vec<String>,
}

impl ModuleMapper for Store<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        let plan = self.plan;
        param.map(|tensor| {
            let part = Part::of(&path, &tensor.dims());
            store(tensor, plan.storage(part), plan.storage(None))
        })
    }
}

/// `tensor` in `storage`; in `float` where it has no block for it (4 bits also need whole
/// 32-bit words of values).
fn store<const D: usize>(tensor: Tensor<D>, storage: Storage, float: Storage) -> Tensor<D> {
    if matches!(tensor.dtype(), DType::QFloat(_)) {
        return tensor;
    }
    let (value, size) = match storage {
        Storage::F32 => return tensor,
        Storage::F16 => return tensor.cast(FloatDType::F16),
        Storage::Int8(size) => (QuantValue::Q8S, size),
        Storage::Int4(size) => (QuantValue::Q4S, size),
    };
    let shape = tensor.dims();
    let fits = value == QuantValue::Q8S || shape.iter().product::<usize>().is_multiple_of(8);
    let Some(block) = quant_block(&shape, size).filter(|_| fits) else {
        return store(tensor, float, float);
    };
    let range = fitted_range(&tensor, block.iter().product(), value.range().1);
    let block: Vec<u8> = block.into_iter().map(|b| b as u8).collect();
    let scheme = QuantScheme::default()
        .with_value(value)
        .with_store(QuantStore::Native)
        .per_block(block, ScaleDtype::F16);
    let qparams = compute_q_params(&scheme, range);
    tensor.quantize(&scheme, qparams)
}

/// Each block's range (blocks of `block` contiguous values, in order), clipped to where the
/// block's squared rounding error is least: one large value otherwise widens the step of all
/// the others (4 bits have 15 levels). What Burn's MinMax calibration gives, where clipping
/// does not help.
fn fitted_range<const D: usize>(tensor: &Tensor<D>, block: usize, levels: f32) -> CalibrationRange {
    let values = tensor.to_data().convert::<f32>();
    let values = values.as_slice::<f32>().expect("float values");
    let clips: Vec<f32> = values
        .chunks(block)
        .map(|b| least_error_clip(b, levels))
        .collect();
    let count = clips.len();
    let max = Tensor::<1>::from_data(TensorData::new(clips, [count]), &tensor.device());
    CalibrationRange {
        min: -max.clone(),
        max,
    }
}

/// Of the block's largest magnitude and 25 clips below it (down to half of it), the one whose
/// rounding to `levels` steps each side of zero loses least (ties: the widest).
fn least_error_clip(block: &[f32], levels: f32) -> f32 {
    let largest = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if largest == 0.0 {
        return largest;
    }
    let clips = (50..=100)
        .rev()
        .step_by(2)
        .map(|p| largest * p as f32 / 100.0);
    (clips.map(|clip| (clip, rounding_error(block, levels, clip))))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(largest, |(clip, _)| clip)
}

/// The squared error of rounding `block` to `levels` steps each side of zero up to `clip`.
fn rounding_error(block: &[f32], levels: f32, clip: f32) -> f32 {
    let step = clip / levels;
    let rounded = |x: f32| (x / step).round().clamp(-levels, levels) * step;
    block.iter().map(|x| (rounded(*x) - x).powi(2)).sum()
}

struct Dequantize;

impl ModuleMapper for Dequantize {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| match t.dtype() {
            DType::QFloat(_) => t.dequantize(),
            _ => t,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ImageBranchConfig, TextBranchConfig};

    #[test]
    fn blocks_follow_each_kind_of_parameter() {
        for shape in [vec![384, 1536], vec![30522, 384], vec![1664, 128]] {
            assert_eq!(quant_block(&shape, 32), Some(vec![32]), "{shape:?}");
            assert_eq!(quant_block(&shape, 128), Some(vec![128]), "{shape:?}");
        }
        assert_eq!(quant_block(&[1280, 24], 32), Some(vec![8]));
        assert_eq!(quant_block(&[24, 144, 1, 1], 32), Some(vec![16, 1, 1]));
        assert_eq!(quant_block(&[24, 960, 1, 1], 128), Some(vec![64, 1, 1]));
        assert_eq!(quant_block(&[96, 1, 3, 3], 128), Some(vec![1, 3, 3]));
        assert_eq!(quant_block(&[32, 3, 3, 3], 32), Some(vec![3, 3, 3]));
        assert!(quant_block(&[384], 32).is_none(), "vectors stay float");
        assert!(quant_block(&[128, 3], 32).is_none(), "too small to bother");
        assert!(
            quant_block(&[8, 12, 1, 1], 32).is_none(),
            "no block divides 12"
        );
    }

    /// Every part in its plan's precision: each quantized block comes back with about the
    /// error of rounding to its largest value's step, or less (a scale on the wrong block would
    /// be orders of magnitude off), the rest within f16's rounding; 4-bit values cost half a byte in the file.
    #[test]
    fn each_part_comes_back_within_its_precision() {
        let config = crate::ModelConfig::new(
            Some(ImageBranchConfig::mobilenet_v2()),
            Some(TextBranchConfig::scratch(2000, 8)),
        );
        let model = config.init(&Device::flex());
        let plan: WeightPlan = "f16,word-embeddings=int4,text-layers=int8/64,matrices=int8,\
                                pointwise=int4/128,depthwise=int8,stem=int8"
            .parse()
            .unwrap();
        let stored = model.clone().stored_bytes(&plan).unwrap();
        let loaded = SentimentModel::from_stored(&config, stored.clone()).unwrap();
        let mut checked = [0usize; 4];
        let mut int4_values = 0;
        let mut parts = std::collections::BTreeSet::new();
        for ((path, shape, a), (_, _, b)) in weights(&model).iter().zip(&weights(&loaded)) {
            parts.extend(Part::of(path, shape));
            let storage = plan.storage(Part::of(path, shape));
            let (levels, block) = match storage {
                Storage::Int8(size) => (127.0, quant_block(shape, size)),
                Storage::Int4(size) => (7.0, quant_block(shape, size)),
                _ => (0.0, None),
            };
            let Some(block) = block else {
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y).abs() <= 1e-3 * x.abs() + 1e-7, "{path}: {x} vs {y}");
                }
                checked[1] += 1;
                continue;
            };
            let size: usize = block.iter().product();
            for (x, y) in a.chunks(size).zip(b.chunks(size)) {
                let error: f32 = x.iter().zip(y).map(|(p, q)| (p - q).powi(2)).sum();
                let largest = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let widest = rounding_error(x, levels, largest);
                // The f16 scale may be off by up to 2^-10 of itself, for every value alike.
                let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt();
                let bound = 1.05 * widest.sqrt() + 1.2e-3 * norm + 1e-9;
                assert!(error.sqrt() <= bound, "{path}: {error} against {widest}");
            }
            let int4 = matches!(storage, Storage::Int4(_));
            if int4 {
                int4_values += a.len();
            }
            checked[if int4 { 2 } else { 3 }] += 1;
        }
        assert_eq!(parts.len(), 6, "{parts:?}");
        assert!(
            checked[1] > 10 && checked[2] > 30 && checked[3] > 20,
            "{checked:?}"
        );
        // The same plan with 8 bits where it said 4: half a byte more per 4-bit value, give or
        // take each tensor's alignment in the file.
        let int8 = plan.to_string().replace("int4", "int8").parse().unwrap();
        let int8 = model.stored_bytes(&int8).unwrap();
        let saved = int8.len() - stored.len();
        assert!(
            saved.abs_diff(int4_values / 2) < 16 * 1024,
            "saved {saved} bytes of {int4_values} 4-bit values"
        );
    }

    #[test]
    fn a_block_is_clipped_only_where_that_loses_less() {
        // One large value among small ones: 4 bits spend their steps on the small ones.
        let mut block: Vec<f32> = (0..32)
            .map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.5)
            .collect();
        block[5] = 2.0;
        let clip = least_error_clip(&block, 7.0);
        assert!((1.0..2.0).contains(&clip), "{clip}");
        let error = rounding_error(&block, 7.0, clip);
        let widest = rounding_error(&block, 7.0, 2.0);
        assert!(error < 0.9 * widest, "{error} against {widest}");
        // Values on the widest range's steps already: nothing to gain, the range is kept.
        let exact: Vec<f32> = (-7..=7).map(|i| i as f32 * 0.1).collect();
        assert_eq!(least_error_clip(&exact, 7.0), exact[14]);
        assert_eq!(least_error_clip(&[0.0; 8], 7.0), 0.0);
    }

    #[test]
    fn uniform_formats_store_as_before() {
        let config = crate::ModelConfig::new(
            Some(ImageBranchConfig::scratch(32)),
            Some(TextBranchConfig::scratch(20000, 8)),
        );
        let model = config.init(&Device::flex());
        let size = |plan: &str| {
            model
                .clone()
                .stored_bytes(&plan.parse().unwrap())
                .unwrap()
                .len()
        };
        let (f32, f16, int8) = (size("f32"), size("f16"), size("int8"));
        assert!(f16 * 2 <= f32 + 64 * 1024, "f16 {f16} of f32 {f32}");
        assert!(int8 * 3 < f32, "int8 {int8} of f32 {f32}");
        let stored = model.stored_as(&"int8".parse().unwrap());
        let mut dtypes = Vec::new();
        stored.visit(&mut Dtypes(&mut dtypes));
        assert!(dtypes.iter().any(|d| matches!(d, DType::QFloat(_))));
        assert!(
            dtypes.contains(&DType::F16),
            "convolutions stay f16: {dtypes:?}"
        );
    }

    struct Dtypes<'a>(&'a mut Vec<DType>);

    impl burn::module::ModuleVisitor for Dtypes<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().dtype());
        }
    }

    /// Every float parameter's path, shape and values, in module order.
    fn weights(model: &SentimentModel) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        #[derive(Default)]
        struct Collect(Vec<String>, Vec<(String, Vec<usize>, Vec<f32>)>);
        impl burn::module::ModuleVisitor for Collect {
            fn enter_module(&mut self, name: &str, _container_type: &str) {
                self.0.push(name.to_string());
            }
            fn exit_module(&mut self, _name: &str, _container_type: &str) {
                self.0.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let t = param.val();
                let values = t.clone().into_data().convert::<f32>();
                let values = values.try_to_vec::<f32>().unwrap();
                self.1.push((self.0.join("."), t.dims().to_vec(), values));
            }
        }
        let mut collect = Collect::default();
        model.visit(&mut collect);
        collect.1
    }
}
