#!/usr/bin/env python3
"""Writes a Llama-shaped f16 checkpoint of about 2.4 GiB in 4 shards with the
`safetensors` package, for bench/loader.sh (content is cheap, not random:
throughput does not depend on it).   make_big_checkpoint.py OUTDIR"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
hidden, inter, layers, vocab, heads, kv = 4096, 11008, 6, 32000, 32, 8
hd = hidden // heads
t = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,), "lm_head.weight": (vocab, hidden)}
for i in range(layers):
    p = f"model.layers.{i}."
    t.update({p + "self_attn.q_proj.weight": (hidden, hidden), p + "self_attn.k_proj.weight": (kv * hd, hidden),
              p + "self_attn.v_proj.weight": (kv * hd, hidden), p + "self_attn.o_proj.weight": (hidden, hidden),
              p + "mlp.gate_proj.weight": (inter, hidden), p + "mlp.up_proj.weight": (inter, hidden),
              p + "mlp.down_proj.weight": (hidden, inter), p + "input_layernorm.weight": (hidden,),
              p + "post_attention_layernorm.weight": (hidden,)})
names = sorted(t)
nshards = 4
wm = {}
for s in range(nshards):
    fn = f"model-{s + 1:05d}-of-{nshards:05d}.safetensors"
    part = {n: np.full(t[n], (hash(n) % 97) / 97.0 + 0.01, dtype=np.float16) for n in names[s::nshards]}
    save_file(part, os.path.join(out, fn))
    wm.update({n: fn for n in part})
    del part
json.dump({"weight_map": wm}, open(os.path.join(out, "model.safetensors.index.json"), "w"))
json.dump({"model_type": "llama", "hidden_size": hidden, "num_attention_heads": heads, "num_key_value_heads": kv,
           "intermediate_size": inter, "num_hidden_layers": layers, "vocab_size": vocab,
           "tie_word_embeddings": False}, open(os.path.join(out, "config.json"), "w"))
