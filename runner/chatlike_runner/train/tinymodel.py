"""A tiny random Llama with a locally trained Llama-3-style tokenizer: for smoke runs and tests, no downloads."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Marks a folder as this tiny model. llama.cpp's converter knows real tokenizers' pre-tokenizers by a hash of
# their output; this one, trained here, is the GPT-2 byte-level kind, and export says so for it alone.
MARKER = "chatlike-tiny-model"
PRE_TOKENIZER = "gpt-2"

# The Llama 3 special tokens that the llama3 chat template and Axolotl's eot_tokens refer to, plus its pad token.
BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>"
SPECIAL_TOKENS = [BOS, EOS, "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", PAD]

_CORPUS = """\
hi how are you? fine thanks, and you? not bad, just got home from work.
are we still on for dinner tomorrow? yes, 8pm at the usual place. perfect, see you there!
did you see the match last night? what a goal in the last minute. i can't believe it.
can you send me the photos from the trip? sure, give me a minute. thanks a lot :)
ciao! come stai? tutto bene, grazie. ci vediamo domani? certo, a domani.
i'm running late, sorry. no worries, take your time. ok, ten minutes.
the meeting moved to monday. good to know, thanks for the heads up.
"""


def make_tiny_model(out_dir: Path, seed: int = 0, shape: Mapping[str, Any] | None = None, device: str = "cpu") -> Path:
    """Write a random-init LlamaForCausalLM (hidden 64, 2 layers; or `shape`, config values such as an 8B's, in
    bf16, made on `device`) and its tokenizer to out_dir; return out_dir."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_CORPUS.splitlines() * 4, trainer=trainer)
    # Like Llama 3's: encoding text starts with <|begin_of_text|> (so llama.cpp's GGUF says add_bos too).
    bpe.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bpe.token_to_id(BOS))]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in (BOS, EOS, PAD)}

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=ids[BOS],
        eos_token_id=ids[EOS],
        pad_token_id=ids[PAD],
        tie_word_embeddings=False,
    )
    config.update(dict(shape or {}))
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.device(device):  # an 8B shape is made in bf16 directly: 16 GB, where fp32 would need 32
        model = LlamaForCausalLM(config) if shape is None else LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out_dir)
    del model
    tokenizer.save_pretrained(out_dir)
    if shape is None:
        (out_dir / MARKER).write_text("a tiny random model for smoke runs and tests; see chatlike-train tiny-model\n")
    return out_dir


def is_tiny(folder: str | Path) -> bool:
    """Whether `folder` holds the tiny model made by make_tiny_model."""
    return (Path(folder) / MARKER).is_file()
