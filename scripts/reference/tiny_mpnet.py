"""Write tests/fixtures/tiny-mpnet: a 2-layer MPNet with random weights under Hugging Face's
MPNetModel key names (model.safetensors, config.json) and, in expected.json, the sentence
embeddings this independent numpy forward pass gives for a few token rows. The Rust port
(src/mpnet.rs) must reproduce them; the same numpy pass reproduced the real
all-mpnet-base-v2's embeddings to 5 decimals by hand (docs/training.md, Pretrained encoders).

    python3 scripts/reference/tiny_mpnet.py   # needs numpy
"""

import json
import math
import os
import struct

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "tiny-mpnet")
VOCAB, HIDDEN, LAYERS, HEADS, INNER, POSITIONS, PAD, EPS = 40, 8, 2, 2, 16, 40, 1, 1e-5
BUCKETS, MAX_DISTANCE = 32, 128

rng = np.random.default_rng(7)
weights = {}


def param(name, *shape, scale=0.5):
    weights[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return weights[name]


def norm(prefix):
    param(prefix + ".weight", HIDDEN, scale=0.1)
    weights[prefix + ".weight"] += 1.0
    param(prefix + ".bias", HIDDEN, scale=0.1)


param("embeddings.word_embeddings.weight", VOCAB, HIDDEN)
param("embeddings.position_embeddings.weight", POSITIONS, HIDDEN)
norm("embeddings.LayerNorm")
param("encoder.relative_attention_bias.weight", BUCKETS, HEADS, scale=1.0)
for i in range(LAYERS):
    p = f"encoder.layer.{i}."
    for c in "qkvo":
        param(p + f"attention.attn.{c}.weight", HIDDEN, HIDDEN)
        param(p + f"attention.attn.{c}.bias", HIDDEN, scale=0.1)
    norm(p + "attention.LayerNorm")
    param(p + "intermediate.dense.weight", INNER, HIDDEN)
    param(p + "intermediate.dense.bias", INNER, scale=0.1)
    param(p + "output.dense.weight", HIDDEN, INNER)
    param(p + "output.dense.bias", HIDDEN, scale=0.1)
    norm(p + "output.LayerNorm")
# Unused by the encoder, present in the real file: the loader must ignore them.
param("pooler.dense.weight", HIDDEN, HIDDEN)
weights["embeddings.position_ids"] = np.arange(POSITIONS, dtype=np.int64)[None, :]


def layer_norm(x, prefix):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + EPS) * weights[prefix + ".weight"] + weights[prefix + ".bias"]


def bucket(relative):
    """Hugging Face's MPNetEncoder.relative_position_bucket."""
    n = -relative
    half = BUCKETS // 2
    ret = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    exact = half // 2
    large = exact + (
        np.log(np.maximum(n, 1) / exact) / math.log(MAX_DISTANCE / exact) * (half - exact)
    ).astype(np.int64)
    return ret + np.where(n < exact, n, np.minimum(large, half - 1))


def gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def embed(ids):
    length = len(ids)
    x = weights["embeddings.word_embeddings.weight"][ids]
    x = x + weights["embeddings.position_embeddings.weight"][np.arange(length) + PAD + 1]
    x = layer_norm(x, "embeddings.LayerNorm")
    relative = np.arange(length)[None, :] - np.arange(length)[:, None]
    bias = weights["encoder.relative_attention_bias.weight"][bucket(relative)].transpose(2, 0, 1)
    d = HIDDEN // HEADS
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."

        def linear(name, t):
            return t @ weights[p + name + ".weight"].T + weights[p + name + ".bias"]

        q, k, v = (
            linear("attention.attn." + c, x).reshape(length, HEADS, d).transpose(1, 0, 2)
            for c in "qkv"
        )
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        context = (s @ v).transpose(1, 0, 2).reshape(length, HIDDEN)
        x = layer_norm(linear("attention.attn.o", context) + x, p + "attention.LayerNorm")
        h = gelu(linear("intermediate.dense", x))
        x = layer_norm(linear("output.dense", h) + x, p + "output.LayerNorm")
    mean = x.mean(0)
    return mean / np.linalg.norm(mean)


def save_safetensors(path):
    header, blobs, offset = {}, [], 0
    for name in sorted(weights):
        array = np.ascontiguousarray(weights[name])
        data = array.tobytes()
        dtype = {np.float32: "F32", np.int64: "I64"}[array.dtype.type]
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


# Token rows as a batch pads them: the second and third shorter, padded with PAD. Rows longer
# than 8 reach the logarithmic buckets; positions past the pad count from PAD + 1.
rows = [
    [0, 5, 9, 13, 22, 31, 7, 3, 11, 19, 28, 36, 4, 2],
    [0, 17, 8, 2],
    [0, 30, 21, 12, 6, 39, 2],
]
width = max(map(len, rows))
os.makedirs(OUT, exist_ok=True)
save_safetensors(os.path.join(OUT, "model.safetensors"))
config = {
    "model_type": "mpnet",
    "vocab_size": VOCAB,
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "intermediate_size": INNER,
    "max_position_embeddings": POSITIONS,
    "layer_norm_eps": EPS,
    "pad_token_id": PAD,
    "relative_attention_num_buckets": BUCKETS,
}
with open(os.path.join(OUT, "config.json"), "w") as out:
    json.dump(config, out, indent=2)
expected = {
    "ids": [r + [PAD] * (width - len(r)) for r in rows],
    "mask": [[1.0] * len(r) + [0.0] * (width - len(r)) for r in rows],
    "embeddings": [[round(float(v), 6) for v in embed(np.array(r))] for r in rows],
}
with open(os.path.join(OUT, "expected.json"), "w") as out:
    json.dump(expected, out, indent=1)
print("wrote", os.path.abspath(OUT))
