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
    Calibration, QuantScheme, QuantStore, QuantValue, ScaleDtype, compute_q_params, compute_range,
};
use burn::tensor::{Bytes, DType, FloatDType};
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

/// The block a parameter of `shape` is quantized in (the values that share one scale), or
/// `None` where it stays in the float format: vectors, small matrices, or no block divides it.
pub fn quant_block(shape: &[usize]) -> Option<Vec<usize>> {
    let divisor = |n: usize| [32, 16, 8].into_iter().find(|b| n.is_multiple_of(*b));
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
    let value = match storage {
        Storage::F32 => return tensor,
        Storage::F16 => return tensor.cast(FloatDType::F16),
        Storage::Int8 => QuantValue::Q8S,
        Storage::Int4 => QuantValue::Q4S,
    };
    let shape = tensor.dims();
    let fits = value == QuantValue::Q8S || shape.iter().product::<usize>().is_multiple_of(8);
    let Some(block) = quant_block(&shape).filter(|_| fits) else {
        return store(tensor, float, float);
    };
    let block: Vec<u8> = block.into_iter().map(|b| b as u8).collect();
    let scheme = QuantScheme::default()
        .with_value(value)
        .with_store(QuantStore::Native)
        .per_block(block, ScaleDtype::F16);
    let range = compute_range(&scheme, &tensor, &Calibration::MinMax);
    let qparams = compute_q_params(&scheme, range);
    tensor.quantize(&scheme, qparams)
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
            assert_eq!(quant_block(&shape), Some(vec![32]), "{shape:?}");
        }
        assert_eq!(quant_block(&[1280, 24]), Some(vec![8]));
        assert_eq!(quant_block(&[24, 144, 1, 1]), Some(vec![16, 1, 1]));
        assert_eq!(quant_block(&[96, 1, 3, 3]), Some(vec![1, 3, 3]));
        assert_eq!(quant_block(&[32, 3, 3, 3]), Some(vec![3, 3, 3]));
        assert!(quant_block(&[384]).is_none(), "vectors stay float");
        assert!(quant_block(&[128, 3]).is_none(), "too small to bother");
        assert!(quant_block(&[8, 12, 1, 1]).is_none(), "no block divides 12");
    }

    /// Every part in its plan's precision: each quantized block comes back within half a step
    /// of its scale (plus the scale's own f16 rounding), the rest within f16's rounding; 4-bit
    /// values cost half a byte in the file.
    #[test]
    fn each_part_comes_back_within_its_precision() {
        let config = crate::ModelConfig::new(
            Some(ImageBranchConfig::mobilenet_v2()),
            Some(TextBranchConfig::scratch(2000, 8)),
        );
        let model = config.init(&Device::flex());
        let plan: WeightPlan = "f16,word-embeddings=int4,text-layers=int8,matrices=int8,\
                                pointwise=int4,depthwise=int8,stem=int8"
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
            let (levels, block) = match (storage, quant_block(shape)) {
                (Storage::Int8, Some(block)) => (127.0, block),
                (Storage::Int4, Some(block)) => (7.0, block),
                _ => {
                    for (x, y) in a.iter().zip(b) {
                        assert!((x - y).abs() <= 1e-3 * x.abs() + 1e-7, "{path}: {x} vs {y}");
                    }
                    checked[1] += 1;
                    continue;
                }
            };
            let size: usize = block.iter().product();
            for (x, y) in a.chunks(size).zip(b.chunks(size)) {
                let step = x.iter().fold(0.0f32, |m, v| m.max(v.abs())) / levels;
                let worst = x.iter().zip(y).map(|(p, q)| (p - q).abs());
                let worst = worst.fold(0.0, f32::max);
                assert!(
                    worst <= 0.57 * step + 1e-12,
                    "{path}: {worst} > 0.57 × {step}"
                );
            }
            if storage == Storage::Int4 {
                int4_values += a.len();
            }
            checked[if storage == Storage::Int4 { 2 } else { 3 }] += 1;
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
