//! How the model folder stores the weights: f32, f16 (half the download) or int8 (Burn's
//! symmetric Q8S with an f16 scale per block of up to 32 values, for the weight matrices —
//! MiniLM's embeddings and linear layers, the heads; convolution kernels, biases and norms in
//! f16). Loading turns them back into f32 once ([`SentimentModel::dequantized`]); the model
//! computes in f32.
//!
//! Why not the kernels too: on the default model's validation split, int8 matrices cost 0.2
//! point of accuracy (28.8 MB instead of 50.2 in f16), int8 MobileNetV2 kernels another 0.4
//! (26.8 MB); blocks of 16 or 8 values did not win it back.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::quantization::{
    Calibration, QuantScheme, QuantStore, QuantValue, ScaleDtype, compute_q_params, compute_range,
};
use burn::tensor::{DType, FloatDType};
use serde::{Deserialize, Serialize};

use super::SentimentModel;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use burn::store::ModuleRecord;
use burn::tensor::Bytes;

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
    /// may be stored in f16 or int8; they are loaded and turned into f32 on the CPU, where
    /// every storage format has a kernel (WebGPU has none for 8-bit values).
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

    /// The same model with its parameters in `format`, for writing the folder.
    pub fn stored_as(self, format: WeightFormat) -> Self {
        match format {
            WeightFormat::F32 => self,
            WeightFormat::F16 => self.map(&mut Half),
            WeightFormat::Int8 => self.map(&mut Int8).map(&mut Half),
        }
    }

    /// Quantized parameters back to f32, after loading (f16 ones the record casts itself).
    pub fn dequantized(self) -> Self {
        self.map(&mut Dequantize)
    }
}

/// The block a parameter of `shape` is quantized in (a run of consecutive values along its
/// last dimension), or `None` where it stays f16: vectors, kernels, small matrices, or no
/// block divides it.
pub fn int8_block(shape: &[usize]) -> Option<Vec<usize>> {
    let divisor = |n: usize| [32, 16, 8].into_iter().find(|b| n.is_multiple_of(*b));
    match *shape {
        // A weight matrix [inputs, outputs] (linear layers, embeddings): along the outputs.
        [inputs, outputs] if inputs * outputs >= 1024 => Some(vec![divisor(outputs)?]),
        _ => None,
    }
}

/// Burn's symmetric 8-bit scheme with an f16 scale per [`int8_block`].
fn int8_scheme(shape: &[usize]) -> Option<QuantScheme> {
    let block: Vec<u8> = int8_block(shape)?.into_iter().map(|b| b as u8).collect();
    Some(
        QuantScheme::default()
            .with_value(QuantValue::Q8S)
            .with_store(QuantStore::Native)
            .per_block(block, ScaleDtype::F16),
    )
}

/// Quantizes every parameter [`int8_scheme`] has a scheme for.
struct Int8;

impl ModuleMapper for Int8 {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|tensor| match int8_scheme(&tensor.dims()) {
            Some(scheme) => {
                let range = compute_range(&scheme, &tensor, &Calibration::MinMax);
                let qparams = compute_q_params(&scheme, range);
                tensor.quantize(&scheme, qparams)
            }
            None => tensor,
        })
    }
}

/// Casts every float parameter not already quantized to half precision.
struct Half;

impl ModuleMapper for Half {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| match t.dtype() {
            DType::QFloat(_) => t,
            _ => t.cast(FloatDType::F16),
        })
    }
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
    use burn::store::ModuleRecord;
    use burn::tensor::Bytes;

    #[test]
    fn matrices_get_blocks_and_the_rest_stays_f16() {
        for shape in [vec![384, 1536], vec![30522, 384], vec![1664, 128]] {
            assert_eq!(int8_block(&shape), Some(vec![32]), "{shape:?}");
        }
        assert_eq!(int8_block(&[1280, 24]), Some(vec![8]));
        assert!(int8_block(&[384]).is_none(), "vectors stay f16");
        assert!(int8_block(&[24, 144, 1, 1]).is_none(), "kernels stay f16");
        assert!(int8_block(&[128, 3]).is_none(), "too small to bother");
    }

    /// Each block's values come back within half a step of its scale (plus the scale's own
    /// f16 rounding), and the file is under a third of f32's.
    #[test]
    fn int8_weights_come_back_within_the_per_block_bound() {
        let device = Device::flex();
        let config = crate::ModelConfig::new(
            Some(ImageBranchConfig::scratch(32)),
            Some(TextBranchConfig::scratch(20000, 8)),
        );
        let model = config.init(&device);
        let bytes = |m: SentimentModel| m.into_record().into_bytes().unwrap().to_vec();
        let f32_bytes = bytes(model.clone()).len();
        let stored = bytes(model.clone().stored_as(WeightFormat::Int8));
        assert!(
            stored.len() * 3 < f32_bytes,
            "{} of {f32_bytes} bytes",
            stored.len()
        );
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(stored))
            .unwrap()
            .cast_to_module_dtype();
        let loaded = config
            .init(&device)
            .try_load_record(record)
            .unwrap()
            .dequantized();
        let mut checked = 0;
        for ((shape, a), (_, b)) in weights(&model).iter().zip(&weights(&loaded)) {
            let Some(block) = int8_block(shape) else {
                continue;
            };
            for (x, y) in a
                .chunks(block.iter().product())
                .zip(b.chunks(block.iter().product()))
            {
                let step = x.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
                let worst = x
                    .iter()
                    .zip(y)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0, f32::max);
                assert!(
                    worst <= 0.57 * step + 1e-12,
                    "{shape:?}: {worst} > 0.57 × {step}"
                );
            }
            checked += 1;
        }
        assert!(checked >= 4, "only {checked} tensors checked");
    }

    /// Every float parameter's shape and values, in module order.
    fn weights(model: &SentimentModel) -> Vec<(Vec<usize>, Vec<f32>)> {
        struct Collect(Vec<(Vec<usize>, Vec<f32>)>);
        impl burn::module::ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let t = param.val();
                let values = t
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .unwrap();
                self.0.push((t.dims().to_vec(), values));
            }
        }
        let mut collect = Collect(Vec::new());
        model.visit(&mut collect);
        collect.0
    }
}
