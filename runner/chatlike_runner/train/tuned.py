"""The tuned model, for eval and chat: a run's own config read by Axolotl, its tokenizer and chat template as
training used them, and the base model with the run's adapter on top (4-bit on a GPU, as QLoRA trained it;
full precision on a CPU, where bitsandbytes' 4-bit path does not run inference)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config as cfg_file
from . import template as turns
from .errors import TrainError

RUN_CONFIG = "train-config.yml"  # the config a run actually trained with, in its outputs


@dataclass
class Tuned:
    """A run's model, ready to score and to talk."""

    cfg: Any  # Axolotl's DictDefault, validated and normalized as for training
    tokenizer: Any
    model: Any  # a peft PeftModel: the adapter on, or off inside `model.disable_adapter()`
    template: str  # the chat template training rendered conversations with
    end_of_turn: list[str]  # the tokens training taught the model to end a reply with (template.end_of_turn)
    stop_ids: list[int]  # theirs, and the end-of-text token's
    device: str

    def prompt(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of `messages` as training rendered them, followed by the assistant's header."""
        ids = self.tokenizer.apply_chat_template(messages, chat_template=self.template, add_generation_prompt=True,
                                                 tokenize=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def axolotl_config(path: Path, base_model: str | None = None) -> Any:
    """A config as Axolotl reads it for training (validated and normalized; without chatlike's plugin)."""
    from axolotl.utils.config import normalize_config, validate_config
    from axolotl.utils.dict import DictDefault

    raw = cfg_file.load(path)
    raw["plugins"] = [p for p in raw.get("plugins") or [] if p != cfg_file.PLUGIN]
    if base_model:
        raw["base_model"] = base_model
    cfg = validate_config(DictDefault(copy.deepcopy(raw)))
    try:
        normalize_config(cfg)  # reads the base model's config
    except (OSError, ValueError) as exc:
        raise _missing_base(str(raw.get("base_model")), exc) from None
    return cfg


def load(run_dir: Path, base_model: str | None = None, merging: bool = False) -> Tuned:
    """The run's adapter on its base model (TrainError when either is missing). For `merging` (export), the base
    in its own precision on the CPU, never in 4-bit: an adapter merges into full weights only."""
    import torch
    from axolotl.loaders import load_tokenizer
    from axolotl.prompt_strategies import chat_template
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if not (run_dir / "adapter_config.json").is_file():
        raise TrainError(f"{run_dir} has no adapter (adapter_config.json): the run did not finish training")
    if not (run_dir / RUN_CONFIG).is_file():
        raise TrainError(f"{run_dir} has no {RUN_CONFIG}: it is not the output folder of a chatlike run")
    cfg = axolotl_config(run_dir / RUN_CONFIG, base_model)
    try:
        tokenizer = load_tokenizer(cfg)
    except (OSError, ValueError) as exc:
        raise _missing_base(cfg.base_model, exc) from None
    datasets = cfg.datasets or [{}]
    template = chat_template.load(tokenizer, cfg, datasets[0]).prompter.chat_template
    cuda = torch.cuda.is_available() and not merging
    options: dict[str, Any] = {"dtype": "auto" if merging else torch.float32}
    if cuda:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        options = {"dtype": dtype, "device_map": {"": 0}}
        if cfg.load_in_4bit:
            options["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_storage=dtype,
            )
    try:
        base = AutoModelForCausalLM.from_pretrained(cfg.base_model, **options)
    except (OSError, ValueError) as exc:
        raise _missing_base(cfg.base_model, exc) from None
    if len(tokenizer) > base.get_input_embeddings().num_embeddings:  # as Axolotl resized it for training
        base.resize_token_embeddings(len(tokenizer))
    model = PeftModel.from_pretrained(base, str(run_dir))
    model.eval()
    ends = turns.end_of_turn(cfg.eot_tokens, tokenizer, template)
    return Tuned(cfg, tokenizer, model, template, ends, turns.stop_ids(ends, tokenizer), "cuda" if cuda else "cpu")


def _missing_base(name: str, exc: Exception) -> TrainError:
    return TrainError(f"cannot load the base model {name} ({' '.join(str(exc).split())[:200]}); export HF_TOKEN "
                      "for a gated model (passed by name), or check the network and the model cache")


def tokenized(cfg: Any, tokenizer: Any, rows: list[dict]) -> tuple[list[tuple[list[int], list[int]]], int]:
    """(input_ids, labels) of each conversation exactly as Axolotl tokenized the training set (its own chat
    template strategy: same template, same mask, your turns only), and how many were left out as longer than
    sequence_len. Conversations without a reply of yours have nothing to score and are left out too."""
    from axolotl.prompt_strategies import chat_template

    strategy = chat_template.load(tokenizer, cfg, (cfg.datasets or [{}])[0])
    kept, too_long = [], 0
    for row in rows:
        sample = strategy.tokenize_prompt(row)
        ids, labels = list(sample["input_ids"]), list(sample["labels"])
        if len(ids) > cfg.sequence_len:
            too_long += 1
        elif any(label != -100 for label in labels):
            kept.append((ids, labels))
    return kept, too_long
