"""The estimator (runner/chatlike_runner/estimate.py) against every published measurement of a comparable set-up
that we found, with the error of each: docs/estimate.md's table is this script's output.

Each set-up's model and adapter are counted exactly (train/shapes.py: the model from its published config.json
values on the meta device, the adapter by Axolotl's load_lora), so it needs the training stack:

    .venv-train/bin/python bench/estimate_calibration.py
"""

from __future__ import annotations

from dataclasses import replace

from chatlike_runner import estimate as est
from chatlike_runner.train.shapes import LLAMA_31_8B, counts

LLAMA_2_7B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000, "tie_word_embeddings": False}
SEED = {"load_in_4bit": True, "adapter": "qlora", "lora_r": 64, "lora_alpha": 32, "lora_target_linear": True,
        "lora_modules_to_save": ["embed_tokens", "lm_head"], "peft_use_dora": True, "micro_batch_size": 1,
        "gradient_accumulation_steps": 2, "sequence_len": 4096, "sample_packing": True, "pad_to_sequence_len": True,
        "optimizer": "adamw_bnb_8bit", "gradient_checkpointing": True, "deepspeed": "configs/deepspeed/zero2.json"}


def facts(model: dict, raw: dict) -> dict:
    """The model's shape and exact counts with the set-up's adapter (a config Axolotl's schema accepts)."""
    from transformers import AutoConfig

    values = dict(model)
    config = AutoConfig.for_model(values.pop("model_type"), **values)
    complete = {"base_model": "published", "datasets": [{"path": "chats.jsonl", "type": "chat_template"}],
                "lora_alpha": 16, "lora_dropout": 0.05, **raw}
    return {"model": {**model, "head_dim": None}, "parameters": counts(complete, config)}


def gib(memory: est.Memory) -> float:
    return memory.total / est.GIB


def longest(shape: dict, raw: dict, memory_gib: float, **recipe_changes) -> int:
    """The longest padded sequence that fits `memory_gib`, by bisection."""
    low, high = 1, 1 << 20
    while low < high:
        middle = (low + high + 1) // 2
        recipe = replace(est.Recipe.of({**raw, "sequence_len": middle}, 1), **recipe_changes)
        if est.memory(shape, recipe, est.Gpu("x", memory_gib, None), 1).fits:
            low = middle
        else:
            high = middle - 1
    return low


def main() -> None:
    rows = []
    # 1. Unsloth's README, "Hugging Face + FA2" column: Llama 3.1 8B, 4-bit QLoRA r=32 on every linear layer, batch 1,
    #    sequences padded to the length; the longest that fits each card.
    unsloth = {"load_in_4bit": True, "adapter": "qlora", "lora_r": 32, "lora_target_linear": True, "micro_batch_size": 1,
               "pad_to_sequence_len": True, "optimizer": "adamw_8bit", "gradient_checkpointing": True}
    shape = facts(LLAMA_31_8B, unsloth)
    for card, published in ((12, 932), (16, 2551), (24, 5789), (40, 12264), (48, 15502), (80, 28454)):
        ours = longest(shape, unsloth, card)
        then = longest(shape, unsloth, card, logit_bytes=16, frozen_bytes=4)
        rows.append((f"Unsloth, HF + FA2, {card} GB: longest sequence", f"{published:,}", f"{ours:,}",
                     f"{ours / published - 1:+.0%}", f"as that stack ran in 2024: {then:,} ({then / published - 1:+.0%})"))
    # 2. torchtune's README: Llama2-7B QLoRA on one RTX 4090, batch 4, sequence 2048 (compiled): 12.3 GB peak.
    tune = {"load_in_4bit": True, "adapter": "qlora", "lora_r": 8, "lora_target_linear": True, "micro_batch_size": 4,
            "sequence_len": 2048, "pad_to_sequence_len": True, "optimizer": "adamw_torch", "gradient_checkpointing": True}
    ours = gib(est.memory(facts(LLAMA_2_7B, tune), est.Recipe.of(tune, 1), est.gpu("RTX4090"), 1))
    rows.append(("torchtune, Llama2-7B QLoRA, 1x RTX 4090, batch 4 x 2048", "12.3 GB", f"{ours * 1.0737:.1f} GB",
                 f"{ours * 1.0737 / 12.3 - 1:+.0%}", "its own loss (chunked, fp32 per chunk) and torch.compile"))
    # 3. Axolotl's examples/llama-3/README.md: lora-8b.yml, "Single GPU @ 11GB VRAM".
    axolotl = {"load_in_8bit": True, "adapter": "lora", "lora_r": 32, "lora_target_linear": True,
               "lora_modules_to_save": ["embed_tokens", "lm_head"], "micro_batch_size": 2, "sequence_len": 4096,
               "sample_packing": True, "pad_to_sequence_len": True, "optimizer": "adamw_bnb_8bit",
               "gradient_checkpointing": True}
    shape = facts(LLAMA_31_8B, axolotl)
    memory = est.memory(shape, est.Recipe.of(axolotl, 1), est.gpu("A100-80GB"), 1)
    weights = sum(i.bytes for i in memory.items if i.name.startswith(("base", "modules_to_save"))) / 1e9
    rows.append(("Axolotl, Llama-3 8B lora-8b.yml, one GPU", "11 GB", f"{gib(memory) * 1.0737:.1f} GB",
                 f"{gib(memory) * 1.0737 / 11 - 1:+.0%}", f"its weights and saved copies alone are {weights:.1f} GB"))
    # 4. The seed's author: 2x RTX 3090, ZeRO-1 ran out of memory, ZeRO-2 fit.
    shape = facts(LLAMA_31_8B, SEED)
    for stage, published in ((1, "out of memory"), (2, "fit")):
        recipe = replace(est.Recipe.of(SEED, 2), zero=stage)
        m = est.memory(shape, recipe, est.gpu("RTX3090"), 2)
        rows.append((f"the seed, 2x RTX 3090, ZeRO-{stage}", published, f"{gib(m):.1f} of 24 GiB: {m.verdict}", "", ""))
    print("| set-up | published | estimate | error | note |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


if __name__ == "__main__":
    main()
