"""Shapes: a run's exact parameter counts without its weights or a GPU.

The base model is built from its config.json on the meta device (no memory, no download of weights), and the
adapter is added by Axolotl itself (`axolotl.loaders.adapter.load_lora`, as training does), so every count is
exact for any model Axolotl can train. The counts are split the way memory is spent on them: the weights of
linear layers (quantized with load_in_4bit/8bit), their biases, the input and output embeddings, the rest
(norms); and the trainable parameters: LoRA matrices, DoRA magnitudes, modules_to_save copies, anything else.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from typing import Any

from .errors import TrainError


def model_config(raw: Mapping[str, Any]) -> Any:
    """The base model's transformers config (base_model_config, else base_model: a folder or a hub name, read from
    the model cache or, when allowed, the hub: config.json only)."""
    from transformers import AutoConfig

    name = str(raw.get("base_model_config") or raw.get("base_model") or "")
    if not name:
        raise TrainError("the config names no base_model")
    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=bool(raw.get("trust_remote_code")))
    except (OSError, ValueError) as exc:
        raise TrainError(f"base model {name}: its config.json is not in the model cache and could not be fetched "
                         f"({' '.join(str(exc).split())[:160]}); check base_model, HF_TOKEN and the network") from None


def counts(raw: Mapping[str, Any], config: Any) -> dict[str, int]:
    """Exact parameter counts of the base model (`config`) with the adapter the Axolotl config `raw` adds."""
    import torch
    from axolotl.loaders.adapter import load_lora
    from axolotl.utils.dict import DictDefault
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
            model, _ = load_lora(model, DictDefault(dict(raw)))
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            kind = ("dora" if "lora_magnitude_vector" in name else "lora" if ".lora_" in name
                    else "saved" if ".modules_to_save." in name else "trainable_other")
            found[kind] += parameter.numel()
    found["trainable"] = found["lora"] + found["dora"] + found["saved"] + found["trainable_other"]
    return found


# What the memory and time formulas read of a model's shape besides the counts.
FACTS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
         "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings", "torch_dtype")


def shapes(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The model's shape facts and exact parameter counts for the Axolotl config `raw`."""
    config = model_config(raw)
    text = getattr(config, "get_text_config", lambda: config)()  # a multimodal model's language part
    facts = {name: getattr(text, name, None) for name in FACTS}
    facts["torch_dtype"] = str(facts["torch_dtype"]).removeprefix("torch.") if facts["torch_dtype"] else None
    return {"model": facts, "parameters": counts(raw, config)}
