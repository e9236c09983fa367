//! Burn's 4-bit tensors packed eight values to a word in the weights file: flex quantizes to
//! 4 bits but stores a byte per value, so the file it writes would be no smaller than int8's.
//! Burn's loader reads the packed layout (`QuantStore::PackedU32(0)`) as it is.

use burn::tensor::quantization::{QuantStore, QuantValue, ScaleDtype};
use burn::tensor::{Bytes, DType};

use crate::error::{Error, Result};

/// A weights file with its 4-bit (Q4S) tensors packed eight values to a little-endian `u32`;
/// other tensors, the metadata and the order are kept. Loading needs nothing new
/// ([`crate::model::SentimentModel::from_stored`]).
pub fn pack_q4(weights: Vec<u8>) -> Result<Vec<u8>> {
    use burn_pack::{Reader, Tensor as Stored, Writer};
    let error = |e: burn_pack::Error| Error::Weights(e.to_string());
    let reader = Reader::from_bytes(Bytes::from_bytes_vec(weights)).map_err(error)?;
    let (metadata, scalars) = (reader.metadata().clone(), reader.scalars().clone());
    let mut tensors = Vec::new();
    for tensor in reader.into_tensors().map_err(error)? {
        let (name, dtype, shape, id, bytes) = tensor.into_parts().map_err(error)?;
        let (dtype, bytes) = match dtype {
            DType::QFloat(scheme)
                if scheme.value == QuantValue::Q4S && scheme.store == QuantStore::Native =>
            {
                let count = shape.num_elements();
                // f16 scales (what the plan's blocks use), one per block.
                let blocks = scheme.block_size().map_or(1, |b| count / b.num_elements());
                let packed = (scheme.scale_dtype() == ScaleDtype::F16)
                    .then(|| pack_nibbles(&bytes, count, blocks * 2))
                    .flatten()
                    .ok_or_else(|| Error::Weights(format!("{name}: not packable as 4-bit")))?;
                let scheme = scheme.with_store(QuantStore::PackedU32(0));
                (DType::QFloat(scheme), Bytes::from_bytes_vec(packed))
            }
            other => (other, bytes),
        };
        tensors.push(Stored::new(name, dtype, shape, id, bytes));
    }
    let mut writer = Writer::new(tensors);
    for (key, value) in &metadata {
        writer = writer.with_metadata(key, value);
    }
    for (key, value) in scalars {
        writer = writer.with_scalar(&key, value);
    }
    Ok(writer.into_bytes().map_err(error)?.to_vec())
}

/// A byte-per-value Q4S tensor's bytes (`count` values, then alignment padding, then
/// `scale_bytes` of scales) → the values eight to a little-endian `u32`, value `k` of a word
/// in bits `4k..4k + 4` (two's complement), the scales right after. `None` unless `count` is
/// a multiple of 8 and every value fits 4 bits.
fn pack_nibbles(bytes: &[u8], count: usize, scale_bytes: usize) -> Option<Vec<u8>> {
    if !count.is_multiple_of(8) || bytes.len() < count + scale_bytes {
        return None;
    }
    let values = &bytes[..count];
    let scales = &bytes[bytes.len() - scale_bytes..];
    let mut out = Vec::with_capacity(count / 2 + scales.len());
    for eight in values.chunks_exact(8) {
        let mut word = 0u32;
        for (k, &v) in eight.iter().enumerate() {
            let v = v as i8;
            if !(-8..=7).contains(&v) {
                return None;
            }
            word |= ((v as u8 & 0xf) as u32) << (4 * k);
        }
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(scales);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_packing_refuses_what_is_not_4_bit() {
        assert!(pack_nibbles(&[0; 7], 7, 0).is_none(), "not whole words");
        assert!(
            pack_nibbles(&[8, 0, 0, 0, 0, 0, 0, 0], 8, 0).is_none(),
            "8 needs 5 bits"
        );
        let packed = pack_nibbles(&[1, 0xff, 7, 0xf8, 0, 0, 0, 0, 0xaa, 0xbb], 8, 2).unwrap();
        assert_eq!(packed, vec![0xf1, 0x87, 0, 0, 0xaa, 0xbb]);
    }
}
