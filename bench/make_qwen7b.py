#!/usr/bin/env python3
"""Writes a Qwen2-7B-shaped checkpoint of random bf16 weights (hidden 3584, 28
layers, 28 heads, 4 kv heads, intermediate 18944, vocab 152064; 15.2 GB in 4
shards + index + config.json) for bench/model_gpu.sh. Weights ~ N(0, 0.02),
norms 1, made on the GPU when there is one (fast), else on the CPU.

  python3 bench/make_qwen7b.py OUTDIR [--layers N]
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file


def main(out, layers):
    H, I, V, NH, KV, D = 3584, 18944, 152064, 28, 4, 128
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device=dev).manual_seed(7)
    os.makedirs(out, exist_ok=True)
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": H, "intermediate_size": I,
           "num_hidden_layers": layers, "num_attention_heads": NH, "num_key_value_heads": KV, "vocab_size": V,
           "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "hidden_act": "silu",
           "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_sliding_window": False,
           "sliding_window": None, "max_window_layers": layers, "attention_dropout": 0.0, "bos_token_id": None,
           "eos_token_id": None}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)

    def rnd(*shape):
        return (torch.randn(*shape, generator=g, device=dev, dtype=torch.float32) * 0.02).to(torch.bfloat16).cpu()

    def ones(n):
        return torch.ones(n, dtype=torch.bfloat16)

    shards = [[] for _ in range(4)]
    shards[0].append("model.embed_tokens.weight")
    per = (layers + 2) // 3
    for i in range(layers):
        shards[1 + min(i // per, 2)].append(i)
    shards[3] += ["model.norm.weight", "lm_head.weight"]
    index = {"metadata": {"total_size": 0}, "weight_map": {}}
    total = 0
    for s, items in enumerate(shards):
        name = f"model-{s + 1:05d}-of-00004.safetensors"
        t = {}
        for it in items:
            if it == "model.embed_tokens.weight" or it == "lm_head.weight":
                t[it] = rnd(V, H)
            elif it == "model.norm.weight":
                t[it] = ones(H)
            else:
                p = f"model.layers.{it}."
                t[p + "self_attn.q_proj.weight"] = rnd(NH * D, H)
                t[p + "self_attn.q_proj.bias"] = rnd(NH * D)
                t[p + "self_attn.k_proj.weight"] = rnd(KV * D, H)
                t[p + "self_attn.k_proj.bias"] = rnd(KV * D)
                t[p + "self_attn.v_proj.weight"] = rnd(KV * D, H)
                t[p + "self_attn.v_proj.bias"] = rnd(KV * D)
                t[p + "self_attn.o_proj.weight"] = rnd(H, NH * D)
                t[p + "mlp.gate_proj.weight"] = rnd(I, H)
                t[p + "mlp.up_proj.weight"] = rnd(I, H)
                t[p + "mlp.down_proj.weight"] = rnd(H, I)
                t[p + "input_layernorm.weight"] = ones(H)
                t[p + "post_attention_layernorm.weight"] = ones(H)
        save_file(t, os.path.join(out, name), metadata={"format": "pt"})
        for k, v in t.items():
            index["weight_map"][k] = name
            total += v.numel() * v.element_size()
        print(name, len(t), "tensors", flush=True)
    index["metadata"]["total_size"] = total
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=1)
    print(f"{out}: {total / 1e9:.2f} GB")


if __name__ == "__main__":
    layers = 28
    if "--layers" in sys.argv:
        layers = int(sys.argv[sys.argv.index("--layers") + 1])
    main(sys.argv[1], layers)
