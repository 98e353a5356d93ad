"""Text in and out for a checkpoint directory: its tokenizer.json (Hugging Face
`tokenizers`), its chat template (jinja2, as transformers renders it) and an
incremental detokenizer for streaming.

Why here and not in C: tokenizers and templates are the host's business in
every peer (vLLM, SGLang and llama.cpp's server all detokenize next to HTTP);
the library stays ids in, ids out. Needs `pip install tppp[serve]` (tokenizers,
jinja2).
"""
import json
import os


class Text:
    """The tokenizer and chat template of a checkpoint directory."""

    def __init__(self, model_dir):
        try:
            from tokenizers import Tokenizer
        except ImportError as e:  # pragma: no cover - the message is the point
            raise ImportError("tppp.text needs the tokenizers package: pip install tokenizers jinja2") from e
        path = os.path.join(model_dir, "tokenizer.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{model_dir}: no tokenizer.json (text needs the model's tokenizer)")
        self.tok = Tokenizer.from_file(path)
        cfg_path = os.path.join(model_dir, "tokenizer_config.json")
        self.config = json.load(open(cfg_path)) if os.path.exists(cfg_path) else {}
        self._template = None
        tmpl = self.config.get("chat_template")
        if isinstance(tmpl, list):  # [{"name": "default", "template": ...}, ...]
            tmpl = next((t["template"] for t in tmpl if t.get("name") == "default"), tmpl[0]["template"])
        if tmpl:
            from jinja2.sandbox import ImmutableSandboxedEnvironment  # what transformers renders templates with
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

            def raise_exception(msg):
                raise ValueError(f"chat template: {msg}")
            env.globals["raise_exception"] = raise_exception
            self._template = env.from_string(tmpl)
        self.vocab_size = self.tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text):
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids):
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def token_text(self, tid):
        """One token's text as it appears in output (for logprobs' `token` fields)."""
        return self.tok.decode([tid], skip_special_tokens=False)

    def chat(self, messages, add_generation_prompt=True):
        """The chat template applied to messages ([{role, content}]), as text."""
        if self._template is None:
            raise ValueError("this model has no chat template (tokenizer_config.json's chat_template)")
        special = {k: v for k, v in self.config.items() if k.endswith("_token") and isinstance(v, str)}
        return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt, **special)


class Detokenizer:
    """Streams text from ids: emits only text that further tokens cannot change (a byte-level BPE token can end
    inside a UTF-8 character), vLLM-style prefix/read offsets over the ids."""

    def __init__(self, text, prompt_tail=()):
        self.text = text
        self.ids = list(prompt_tail)[-4:]  # context so leading spaces decode as they will in the whole text
        self.prefix = len(self.ids)
        self.read = len(self.ids)

    def add(self, tid):
        """Appends a token; returns the new text that is final."""
        self.ids.append(tid)
        before = self.text.decode(self.ids[self.prefix:self.read])
        after = self.text.decode(self.ids[self.prefix:])
        if after.endswith("\ufffd") or len(after) <= len(before):
            return ""  # inside a character (or a special token): wait
        self.prefix, self.read = self.read, len(self.ids)
        return after[len(before):]

    def flush(self):
        """What is left at the end (a dangling partial character decodes as U+FFFD)."""
        before = self.text.decode(self.ids[self.prefix:self.read])
        after = self.text.decode(self.ids[self.prefix:])
        self.prefix = self.read = len(self.ids)
        return after[len(before):]
