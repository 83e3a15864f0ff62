"""Shapes: a run's exact parameter counts without its weights or a GPU.

The base model is built from its config.json on the meta device (no memory, no download of weights), and the
adapter is added by Axolotl itself (`axolotl.loaders.adapter.load_lora`, as training does), so every count is
exact for any model Axolotl can train. The counts are split the way memory is spent on them: the weights of
linear layers (quantized with load_in_4bit/8bit), their biases, the input and output embeddings, the rest
(norms); and the trainable parameters: LoRA matrices, DoRA magnitudes, modules_to_save copies, anything else.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import TrainError

# The shape values of the seed's base model's config.json as published (NousResearch/Meta-Llama-3.1-8B, the same as
# meta-llama/Llama-3.1-8B's): an estimate of the seed's config needs neither the network nor the model cache.
LLAMA_31_8B = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
               "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
               "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False, "rope_theta": 500000.0,
               "max_position_embeddings": 131072, "torch_dtype": "bfloat16", "rms_norm_eps": 1e-05,
               "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 8192}}
KNOWN = {name: LLAMA_31_8B for name in ("NousResearch/Meta-Llama-3.1-8B", "meta-llama/Llama-3.1-8B",
                                        "meta-llama/Meta-Llama-3.1-8B")}


def model_config(raw: Mapping[str, Any]) -> tuple[Any, str]:
    """The base model's transformers config (base_model_config, else base_model: a folder or a hub name, read from
    the model cache or, when allowed, the hub: config.json only), and where it came from."""
    from transformers import AutoConfig

    name = str(raw.get("base_model_config") or raw.get("base_model") or "")
    if not name:
        raise TrainError("the config names no base_model")
    remote = bool(raw.get("trust_remote_code"))
    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=remote, local_files_only=name in KNOWN), name
    except (OSError, ValueError) as exc:
        if name in KNOWN:  # not in the model cache: the published values, without asking the hub
            known = dict(KNOWN[name])
            return AutoConfig.for_model(known.pop("model_type"), **known), f"{name} (chatlike's copy of its config.json)"
        raise TrainError(f"base model {name}: its config.json is not in the model cache and could not be fetched "
                         f"({' '.join(str(exc).split())[:160]}); check base_model, HF_TOKEN and the network") from None


def counts(raw: Mapping[str, Any], config: Any) -> dict[str, int]:
    """Exact parameter counts of the base model (`config`) with the adapter the Axolotl config `raw` adds."""
    import torch
    from axolotl.loaders.adapter import load_lora
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=bool(raw.get("trust_remote_code")))
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is not None and head.weight is embed.weight
    found = {"total": sum(p.numel() for p in model.parameters()), "embed": embed.weight.numel(),
             "lm_head": 0 if tied or head is None else head.weight.numel(), "linear": 0, "linear_bias": 0}
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            found["linear"] += module.weight.numel()
            found["linear_bias"] += module.bias.numel() if module.bias is not None else 0
    found["other"] = found["total"] - found["embed"] - found["lm_head"] - found["linear"] - found["linear_bias"]
    found.update(lora=0, dora=0, saved=0, trainable_other=0 if raw.get("adapter") else found["total"])
    if raw.get("adapter") in ("lora", "qlora"):
        with contextlib.redirect_stdout(io.StringIO()):  # PEFT prints its own count
            model, _ = load_lora(model, _with_defaults(raw))
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            kind = ("dora" if "lora_magnitude_vector" in name else "lora" if ".lora_" in name
                    else "saved" if ".modules_to_save." in name else "trainable_other")
            found[kind] += parameter.numel()
    found["trainable"] = found["lora"] + found["dora"] + found["saved"] + found["trainable_other"]
    return found


def _with_defaults(raw: Mapping[str, Any]) -> Any:
    """The config as Axolotl's schema completes it (lora_dropout and the like), as training reads it; as written
    where the schema refuses it (`validate` says why before a run)."""
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    try:
        return validate_config(DictDefault(copy.deepcopy(dict(raw))))
    except Exception:
        return DictDefault({"lora_dropout": 0.0, **raw})


# What the memory and time formulas read of a model's shape besides the counts.
FACTS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
         "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings", "torch_dtype")


def shapes(raw: Mapping[str, Any], data: Path | None = None) -> dict[str, Any]:
    """The model's shape facts and exact parameter counts for the Axolotl config `raw`; with `data` (a chat_template
    JSON Lines dataset), its token counts too."""
    config, source = model_config(raw)
    text = getattr(config, "get_text_config", lambda: config)()  # a multimodal model's language part
    facts = {name: getattr(text, name, None) for name in FACTS}
    facts["torch_dtype"] = str(facts["torch_dtype"]).removeprefix("torch.") if facts["torch_dtype"] else None
    facts["config_json"] = source
    found = {"model": facts, "parameters": counts(raw, config)}
    if data is not None:
        found["tokens"] = tokens(raw, data)
    return found


def tokens(raw: Mapping[str, Any], data: Path) -> dict[str, Any]:
    """Conversations, tokens and the sum of squared lengths of a chat_template dataset, each conversation rendered
    with the run's chat template and counted with its tokenizer (from the model cache or the hub: tokenizer files
    only); without the tokenizer, approximated at one token per 4 bytes of UTF-8 and 5 per turn, and said so."""
    from .validate import DatasetFormat, conversation, tokenizer_and_template

    entry = next((e for e in raw.get("datasets") or [] if isinstance(e, Mapping)), {})
    fmt = DatasetFormat.from_entry(entry)
    try:
        tokenizer, template = tokenizer_and_template(raw, cached_only=True)
        counted = f"counted with {raw.get('tokenizer_config') or raw.get('base_model')}'s tokenizer and chat template"
    except TrainError:
        tokenizer = template = None
        counted = ("approximated, no tokenizer in the model cache: 1 token per 4 bytes of UTF-8 text + 5 per turn; "
                   "English runs near this, other scripts up to twice as many tokens")
    found = {"conversations": 0, "tokens": 0, "squares": 0, "counted": counted}
    try:
        lines = data.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainError(f"dataset {data} cannot be read ({exc}); check the path") from None
    for line in lines:
        messages, problem = conversation(line, fmt) if line.strip() else (None, "blank")
        if messages is None:
            continue
        if tokenizer is None:
            length = sum(len(m["content"].encode("utf-8")) // 4 + 5 for m in messages)
        else:
            ids = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=True)
            length = len(ids["input_ids"] if isinstance(ids, Mapping) else ids)
        found["conversations"] += 1
        found["tokens"] += length
        found["squares"] += length * length
    if not found["conversations"]:
        raise TrainError(f"dataset {data} has no conversations to count; run prepare on your export first")
    return found
