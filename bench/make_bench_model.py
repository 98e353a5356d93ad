"""Writes the bench/model checkpoint: a random Qwen2ForCausalLM of 4 layers,
hidden 1024 (16 heads, 4 kv heads, head_dim 64, intermediate 2816, vocab
8192), f32, saved by transformers (save_pretrained), about 210 MB.
Usage: make_bench_model.py OUT_DIR   (needs torch and transformers)"""
import sys

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

out = sys.argv[1]
torch.manual_seed(0)
cfg = Qwen2Config(vocab_size=8192, hidden_size=1024, intermediate_size=2816, num_hidden_layers=4,
                  num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=4096,
                  tie_word_embeddings=False, torch_dtype="float32")
model = Qwen2ForCausalLM(cfg).eval()
with torch.no_grad():  # init's std 0.02 leaves logits flat; a wider spread exercises the same math
    for p in model.parameters():
        if p.dim() > 1:
            p.normal_(0, 0.05)
model.save_pretrained(out, safe_serialization=True)
print(out)
