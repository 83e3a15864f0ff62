"""Estimate: the memory, time and cost of a run, from its config, its model's exact shape and its dataset's token
counts (train/shapes.py measures those), before any GPU is touched.

Plain functions of plain data: no engine, no torch. Every term is a formula stated here with where it comes from;
docs/estimate.md compares the result with published measurements. Sizes are bytes; the memory is per GPU.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .core.errors import ChatlikeError

GIB = 2**30
# Model FLOPs utilisation of QLoRA training, low to high, for every GPU type alike until one is measured (bench/gpu.py):
# LLaMA-Factory's Llama-2-7B in 4 bits at 4,096 tokens on an A100 runs at 41% by this file's FLOP count (48% with
# Unsloth's kernels); 4-bit weights are dequantized on every use, which keeps it under dense bf16 training's.
MFU = (0.25, 0.45)


@dataclass(frozen=True)
class Gpu:
    """A GPU type: its memory as nvidia-smi reports it, its peak dense bf16 tensor throughput (fp16 where it has no
    bf16) and the vendor document both come from."""

    name: str
    memory_gib: float
    tflops: float | None
    source: str = ""
    mfu: tuple[float, float] = MFU  # the MFU range its time is given in


_AMPERE = "https://images.nvidia.com/aem-dam/en-zz/Solutions/geforce/ampere/pdf/NVIDIA-ampere-GA102-GPU-Architecture-Whitepaper-V1.pdf"
_ADA = "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf"
# GeForce cards run bf16 with fp32 accumulation at half their fp16-accumulate rate: these are the fp32-accumulate
# figures, which training uses. Data-centre figures are dense (the datasheets' "with sparsity" halved).
GPUS = {gpu.name.lower(): gpu for gpu in (
    Gpu("RTX3090", 24, 71, _AMPERE),
    Gpu("RTX4090", 24, 165.2, _ADA),
    Gpu("RTXA5000", 24, 111.1, "https://www.nvidia.com/content/dam/en-zz/Solutions/design-visualization/quadro-product-literature/nvidia-rtx-a5000-datasheet.pdf"),
    Gpu("A6000", 48, 154.8, "https://www.nvidia.com/content/dam/en-zz/Solutions/design-visualization/quadro-product-literature/proviz-print-nvidia-rtx-a6000-datasheet-us-nvidia-1454980-r9-web%20(1).pdf"),
    Gpu("A40", 48, 149.7, "https://images.nvidia.com/content/Solutions/data-center/a40/nvidia-a40-datasheet.pdf"),
    Gpu("A10", 24, 125, "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a10/pdf/a10-datasheet.pdf"),
    Gpu("L4", 24, 121, "https://resources.nvidia.com/en-us-data-center-overview/l4-gpu-datasheet"),
    Gpu("L40S", 48, 362, "https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413"),
    Gpu("A100", 40, 312, "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"),
    Gpu("A100-80GB", 80, 312, "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"),
    Gpu("H100", 80, 989, "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"),
    Gpu("H200", 141, 989, "https://nvdam.widen.net/s/nb5zzzsjdf/hpc-datasheet-sc23-h200-datasheet-3002446"),
    Gpu("V100", 16, 125, "https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf"),
)}


# bitsandbytes NF4 (Axolotl's qlora: blocksize 64, double quantization): half a byte per weight, an 8-bit absmax per
# block of 64, and an fp32 scale per 256 blocks of those (bitsandbytes functional.quantize_4bit).
NF4_BYTES = 0.5 + (1 + 4 / 256) / 64
CUDA_CONTEXT = 0.75 * GIB  # the CUDA context, cuBLAS and NCCL workspaces and loaded kernels: 0.5-1 GiB measured
MARGIN = 0.10  # the caching allocator reserves more than is allocated (fragmentation): 5-15% observed
BUCKET = 500_000_000  # DeepSpeed's default reduce_bucket_size (elements), runtime/zero/config.py
PACKING_EFFICIENCY = 0.97  # first-fit bins are full to this share on chat data (Axolotl's multipack prints it)
EIGHT_BIT = ("adamw_bnb_8bit", "paged_adamw_8bit", "adamw_8bit", "ademamix_8bit", "paged_ademamix_8bit")


@dataclass(frozen=True)
class Recipe:
    """What of an Axolotl config the estimate reads, for `gpus` GPUs (DeepSpeed only with more than one)."""

    micro_batch: int
    sequence_len: int
    accumulation: int
    epochs: float
    max_steps: int | None
    packing: bool
    padded: bool
    quant_bits: int  # 4, 8 or 16
    checkpointing: bool
    optimizer: str
    zero: int  # 0: no DeepSpeed
    overlap_comm: bool
    bucket: int
    liger_flce: bool
    val_share: float
    adapter: bool
    logit_bytes: int = 10  # transformers >= 4.46; before, 16 (the fp32 logits and a shifted copy stayed alive)
    frozen_bytes: int = 2  # embeddings and norms in bf16, as Axolotl keeps them; 4 after PEFT's
    # prepare_model_for_kbit_training, which plain Hugging Face QLoRA scripts call (it upcasts them to fp32)

    @classmethod
    def of(cls, raw: Mapping[str, Any], gpus: int, config_dir: Path | None = None) -> Recipe:
        zero = deepspeed_zero(raw.get("deepspeed"), config_dir) if gpus > 1 else {}
        val = _number(raw, "val_set_size", 0, float)
        max_steps = _number(raw, "max_steps", 0)
        return cls(
            micro_batch=_number(raw, "micro_batch_size", 1), sequence_len=_number(raw, "sequence_len", 2048),
            accumulation=_number(raw, "gradient_accumulation_steps", 1), epochs=_number(raw, "num_epochs", 1, float),
            max_steps=max_steps or None, packing=bool(raw.get("sample_packing")),
            padded=bool(raw.get("pad_to_sequence_len")),
            quant_bits=4 if raw.get("load_in_4bit") else 8 if raw.get("load_in_8bit") else 16,
            checkpointing=bool(raw.get("gradient_checkpointing")), optimizer=str(raw.get("optimizer") or "adamw_torch"),
            zero=_number(zero, "stage", 0), overlap_comm=bool(zero.get("overlap_comm", False)),
            bucket=zero["reduce_bucket_size"] if isinstance(zero.get("reduce_bucket_size"), int) else BUCKET,
            liger_flce=bool(raw.get("liger_fused_linear_cross_entropy") or raw.get("cut_cross_entropy")),
            val_share=val if val < 1 else 0.0, adapter=raw.get("adapter") in ("lora", "qlora"))


def _number(raw: Mapping[str, Any], key: str, default: float, kind: type = int) -> Any:
    """raw[key] as a positive number of `kind` (`default` when unset), or one line naming the key."""
    value = raw.get(key)
    if value is None or value == "":
        return kind(default)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = -1
    if isinstance(value, bool) or number < 0:
        raise ChatlikeError(f"the config's {key}: {value!r} is not a {'whole ' if kind is int else ''}number of 0 or "
                            "more; fix it in the config")
    return number


def deepspeed_zero(name: Any, config_dir: Path | None) -> dict[str, Any]:
    """The zero_optimization block of the config's DeepSpeed JSON, found as chatlike-train finds it (beside the
    config, in the working directory, in the image's configs) or in this checkout; empty without one."""
    from .train.config import BUNDLED_CONFIGS

    if not name:
        return {}
    roots = [root for root in (config_dir, Path.cwd(), BUNDLED_CONFIGS, BUNDLED_CONFIGS.parent, Path(__file__).parents[2])
             if root is not None]
    for root in roots:
        path = root / str(name)
        if path.is_file():
            try:
                return dict(json.loads(path.read_text(encoding="utf-8")).get("zero_optimization") or {})
            except (OSError, ValueError, AttributeError):
                return {}
    return {"stage": 2} if "zero2" in str(name) else {"stage": 1} if "zero1" in str(name) else {}


@dataclass(frozen=True)
class Item:
    """One term of the memory: its bytes, what it is, and the formula with its source. `phase`: held the whole
    run (None); through forward and backward ("kept"); or only at the loss ("logits"), in a layer's backward
    ("backward") or at the optimizer step ("step"), three moments that never coexist."""

    name: str
    bytes: float
    formula: str
    phase: str | None = None


@dataclass(frozen=True)
class Memory:
    gpu: Gpu
    count: int
    items: list[Item]
    total: float

    @property
    def fits(self) -> bool:
        """Under the GPU's memory, the allocator's margin included."""
        return self.total <= self.gpu.memory_gib * GIB

    @property
    def over(self) -> bool:
        """Over the GPU's memory even without the allocator's margin: a run that cannot fit (the fit check refuses
        it). Between the two, a run is tight: whether it fits depends on fragmentation."""
        return self.total / (1 + MARGIN) > self.gpu.memory_gib * GIB

    @property
    def verdict(self) -> str:
        return "fits" if self.fits else "does not fit" if self.over else "tight"

    def biggest(self, n: int = 2) -> list[Item]:
        return sorted(self.items, key=lambda item: item.bytes, reverse=True)[:n]


def _layer_bytes_per_token(model: Mapping[str, Any], lora: bool, dora: bool) -> float:
    """Bytes one decoder layer keeps for its backward pass per token (bf16 unless said), counted from the tensors
    that transformers' Llama-style layer and PEFT's LoRA/DoRA forward save: attention (norm input in fp32 and its
    output, q, k, v, their rotated copies, the attention output) 12h + 6kv; MLP (norm, gate, up, act, product)
    6h + 8i; LoRA dropout's output and mask on each adapted input 18h + 3i; DoRA's base and LoRA outputs 12h + 8kv
    + 8i (h hidden, i intermediate, kv the width of k and v). Flash attention keeps no s x s scores."""
    h, i, kv = _width(model)
    found = 12 * h + 6 * kv + 6 * h + 8 * i
    if lora:
        found += 18 * h + 3 * i
    if dora:
        found += 12 * h + 8 * kv + 8 * i
    return found


def _width(model: Mapping[str, Any]) -> tuple[int, int, int]:
    h, i = int(model["hidden_size"]), int(model.get("intermediate_size") or 4 * model["hidden_size"])
    heads = int(model.get("num_attention_heads") or 1)
    head_dim = int(model.get("head_dim") or h // heads)
    kv = int(model.get("num_key_value_heads") or heads) * head_dim
    return h, i, kv


def memory(facts: Mapping[str, Any], recipe: Recipe, gpu: Gpu, count: int) -> Memory:
    """The peak memory of one of `count` GPUs of type `gpu`, term by term."""
    model, p = facts["model"], facts["parameters"]
    h, i, _ = _width(model)
    layers, vocab = int(model["num_hidden_layers"]), int(model["vocab_size"])
    b, s = recipe.micro_batch, recipe.sequence_len
    tokens = b * s
    n = count if recipe.zero else 1
    ds = recipe.zero > 0
    adapter = p["lora"] + p["dora"] + p["trainable_other"]
    trainable = p["trainable"]
    items: list[Item] = []

    quant = {4: NF4_BYTES, 8: 1.0, 16: 2.0}[recipe.quant_bits]
    label = {4: "4-bit NF4", 8: "8-bit", 16: "bf16"}[recipe.quant_bits]
    items.append(Item(f"base weights, {label}", p["linear"] * quant + p["linear_bias"] * 2,
                      f"{p['linear']:,} linear weights x {quant:.4f} B" + (" (bitsandbytes NF4, blocksize 64, double "
                      "quantization)" if recipe.quant_bits == 4 else "") + " + biases x 2 B"
                      + ("; ZeRO-3 would partition weights too: counted whole here, an upper bound" if recipe.zero == 3
                         else "")))
    if recipe.adapter:
        frozen = p["embed"] + p["lm_head"] + p["other"]
        items.append(Item("base weights, unquantized", frozen * recipe.frozen_bytes,
                          f"{frozen:,} embedding, lm_head and norm weights x {recipe.frozen_bytes} B"
                          + (" (bf16: Axolotl keeps them so)" if recipe.frozen_bytes == 2 else "")))
        adapter_bytes = 2 if ds else 4
        items.append(Item("adapter: LoRA + DoRA", adapter * adapter_bytes,
                          f"{p['lora']:,} LoRA + {p['dora']:,} DoRA magnitudes x {adapter_bytes} B ("
                          + ("DeepSpeed casts the model to bf16: engine._configure_distributed_model)" if ds else
                             "PEFT keeps adapter weights in fp32: autocast_adapter_dtype)")))
        if p["saved"]:
            items.append(Item("modules_to_save copies", p["saved"] * 2,
                              f"{p['saved']:,} trainable copies (lora_modules_to_save) x 2 B (bf16)"))
    else:
        items.append(Item("base weights, unquantized", (p["embed"] + p["lm_head"] + p["other"]) * 2,
                          "embeddings, lm_head and norms x 2 B (bf16)"))

    if ds:
        full = trainable * 2 if recipe.zero == 1 else trainable * 2 / n
        buckets = (2 if recipe.overlap_comm else 1) * min(recipe.bucket, trainable) * 2
        items.append(Item(f"gradients (ZeRO-{recipe.zero})", full + buckets,
                          f"{trainable:,} trainable x 2 B (bf16){' / ' + str(n) if recipe.zero >= 2 else ''} "
                          f"+ {'two' if recipe.overlap_comm else 'one'} reduce bucket(s) of {min(recipe.bucket, trainable):,}"
                          " x 2 B (DeepSpeed stage_1_and_2.py setup_buckets; ZeRO paper, Rajbhandari et al. 2020)"))
        items.append(Item("gradients, fp32 partition at the step", trainable * 4 / n,
                          f"{trainable:,} x 4 B / {n} (DeepSpeed converts its partition for the optimizer)", "step"))
        items.append(Item("master weights (fp32)", trainable * 4 / n,
                          f"{trainable:,} x 4 B / {n} (DeepSpeed's bf16 mixed precision keeps fp32 masters)"))
    else:
        grads = adapter * 4 + (p["saved"]) * 2 if recipe.adapter else trainable * 2
        items.append(Item("gradients", grads, "each trainable parameter's gradient in its own dtype (fp32 adapter, "
                                              "bf16 copies); no master weights without DeepSpeed (torch autocast)"))

    state_bytes, embed_32bit = _optimizer_bytes(recipe.optimizer)
    optimizer_bytes = trainable * state_bytes
    note = f"{trainable:,} x {state_bytes} B ({recipe.optimizer})"
    if embed_32bit and not ds and p["saved"]:
        saved_embed = min(p["saved"], p["embed"])
        optimizer_bytes += saved_embed * (8 - state_bytes)
        note += (f"; the saved embedding's {saved_embed:,} get 32-bit states, 8 B (transformers' Trainer registers "
                 "nn.Embedding with bitsandbytes' override)")
    items.append(Item(f"optimizer states{f' (ZeRO-{recipe.zero}: / {n})' if ds else ''}", optimizer_bytes / n,
                      note + (f" / {n}" if ds else "")))

    per_layer = _layer_bytes_per_token(model, recipe.adapter, p["dora"] > 0)
    if recipe.checkpointing:
        items.append(Item("activations: checkpointed layer inputs", layers * tokens * h * 2,
                          f"{layers} layers x {b}x{s} tokens x {h} x 2 B (transformers' gradient checkpointing keeps "
                          "each decoder layer's input)", "kept"))
        items.append(Item("activations: one layer recomputed", tokens * per_layer,
                          f"{b * s:,} tokens x {per_layer:,.0f} B (the tensors a decoder layer with LoRA/DoRA saves "
                          "for backward)", "backward"))
    else:
        items.append(Item("activations", layers * tokens * per_layer,
                          f"{layers} layers x {b * s:,} tokens x {per_layer:,.0f} B", "kept"))
    if recipe.quant_bits < 16 or p["dora"]:
        dequant = i * h * (2 + (8 if p["dora"] else 0))
        items.append(Item("a dequantized layer", dequant, f"the largest weight ({i:,} x {h:,}) in bf16"
                          + (", and DoRA's fp32 weight + BA for its norm (peft dora.py get_weight_norm)"
                             if p["dora"] else ""), "backward"))
    if recipe.liger_flce:
        chunk = 2 ** math.ceil(math.log2(max(1, math.ceil(tokens / math.ceil(vocab / h)))))
        items.append(Item("logits and loss (fused linear cross-entropy)", 2 * chunk * vocab * 4,
                          f"two chunks of {chunk} rows x {vocab:,} x 4 B (Liger's fused_linear_cross_entropy: the "
                          "logits never exist whole; a trainable lm_head's gradient is the one under gradients)",
                          "logits"))
    else:
        items.append(Item("logits and loss", tokens * vocab * recipe.logit_bytes,
                          f"{b}x{s} tokens x {vocab:,} vocabulary x {recipe.logit_bytes} B: bf16 logits, their fp32 "
                          "log-softmax kept for backward, and its fp32 gradient (transformers' ForCausalLMLoss "
                          "upcasts)", "logits"))
    items.append(Item("CUDA context", CUDA_CONTEXT, "CUDA context, cuBLAS/NCCL workspaces, kernels (0.5-1 GiB)"))
    peak = peak_bytes(items)
    items.append(Item("allocator margin", peak * MARGIN,
                      f"{MARGIN:.0%} of the rest: PyTorch's caching allocator reserves more than it allocates"))
    return Memory(gpu, count, items, peak * (1 + MARGIN))


def peak_bytes(items: Sequence[Item]) -> float:
    """What is held throughout, plus the largest of the moments that never coexist: the loss and a layer's
    recompute in backward (each beside the activations kept for backward), and the optimizer step."""
    def phase(name: str | None) -> float:
        return sum(item.bytes for item in items if item.phase == name)

    held = phase(None)
    return held + max(phase("kept") + phase("backward"), phase("kept") + phase("logits"), phase("step"))


def _optimizer_bytes(name: str) -> tuple[int, bool]:
    """Bytes of optimizer state per trainable parameter, and whether nn.Embedding gets 32-bit states: bitsandbytes'
    8-bit Adam keeps two 8-bit states; torch's AdamW two fp32; SGD none."""
    if name in EIGHT_BIT:
        return 2, True
    if name.startswith("sgd"):
        return 0, False
    return 8, False


def fixes(facts: Mapping[str, Any], recipe: Recipe, gpu: Gpu, count: int) -> list[str]:
    """The changes that bring the run under the GPU's memory, each with the estimate it would give: every single
    change that does; where none does alone, the first ones together that do."""
    changes: list[tuple[str, Recipe, Mapping[str, Any]]] = []
    facts_now, recipe_now = facts, recipe

    def offer(text: str, changed: Recipe | None = None, changed_facts: Mapping[str, Any] | None = None) -> None:
        changes.append((text, changed or recipe, changed_facts or facts))

    if recipe.micro_batch > 1:
        offer(f"micro_batch_size: 1 with gradient_accumulation_steps: {recipe.accumulation * recipe.micro_batch} (the "
              "same batch)", replace(recipe, micro_batch=1, accumulation=recipe.accumulation * recipe.micro_batch))
    if not recipe.liger_flce:
        offer("Liger's fused linear cross-entropy (plugins: [axolotl.integrations.liger.LigerPlugin], "
              "liger_fused_linear_cross_entropy: true)", replace(recipe, liger_flce=True))
    if facts["parameters"]["saved"]:
        p = dict(facts["parameters"])
        p["trainable"] -= p["saved"]
        p["saved"] = 0
        offer("no lora_modules_to_save (needed only when tokens are added)", None, {**facts, "parameters": p})
    if count > 1 and recipe.zero < 2:
        offer("deepspeed: configs/deepspeed/zero2.json", replace(recipe, zero=2, overlap_comm=True))
    if not recipe.checkpointing:
        offer("gradient_checkpointing: true", replace(recipe, checkpointing=True))
    if recipe.sequence_len > 1024:
        offer(f"sequence_len: {recipe.sequence_len // 2}", replace(recipe, sequence_len=recipe.sequence_len // 2))
    found = []
    for text, changed, changed_facts in changes:
        after = memory(changed_facts, changed, gpu, count)
        if after.fits:
            found.append(f"{text}: {after.total / GIB:.1f} GiB")
    if found:
        return found
    together = []
    for text, changed, changed_facts in changes:  # each change's difference applied on top of the ones before
        recipe_now = replace(recipe_now, **{k: v for k, v in vars(changed).items() if v != getattr(recipe, k)})
        facts_now = changed_facts if changed_facts is not facts else facts_now
        together.append(text)
        after = memory(facts_now, recipe_now, gpu, count)
        if after.fits:
            return [f"{' and '.join(together)}: {after.total / GIB:.1f} GiB"]
    return []


def gpu(name: str, memory_gib: float | None = None) -> Gpu:
    """The GPU type `name` from the table: a SkyPilot name (RTX3090, A100-80GB) or nvidia-smi's (NVIDIA GeForce RTX
    3090), the longest table name within it. `memory_gib`, where given (SkyPilot's catalog, nvidia-smi), is the
    memory; a type the table lacks then has no peak throughput. KeyError: neither."""
    plain = name.lower().replace(" ", "").replace("-", "")
    key = GPUS.get(name.lower()) and name.lower()
    key = key or max((k for k in GPUS if k.replace("-", "") in plain), key=len, default=None)
    if key is None:
        if memory_gib:
            return Gpu(name, memory_gib, None)
        raise KeyError(name)
    known = GPUS[key]
    return known if not memory_gib else replace(known, memory_gib=memory_gib)


@dataclass(frozen=True)
class Work:
    """The dataset's work: tokens, packed sequences, optimizer steps, and the FLOPs they cost."""

    conversations: int
    tokens: int
    sequences: int
    steps: int
    epochs: float
    tokens_processed: float
    flops: float
    counted: str  # how the tokens were counted


def work(facts: Mapping[str, Any], recipe: Recipe, gpus: int) -> Work | None:
    """Tokens, sequences, steps and training FLOPs of the dataset in facts["tokens"] (None without one).

    The validation share is held out; packing fills sequences of sequence_len to PACKING_EFFICIENCY, and padding
    to sequence_len makes every sequence cost its full length (Axolotl's multipack sampler and collator)."""
    counted = facts.get("tokens")
    if not counted or not counted.get("conversations"):
        return None
    share = 1 - recipe.val_share
    tokens, squares, s = counted["tokens"] * share, counted["squares"] * share, recipe.sequence_len
    conversations = counted["conversations"] * share
    sequences = math.ceil(tokens / (s * PACKING_EFFICIENCY)) if recipe.packing else math.ceil(conversations)
    per_step = recipe.micro_batch * recipe.accumulation * gpus
    steps_per_epoch = max(1, math.ceil(sequences / per_step))
    steps = recipe.max_steps or math.ceil(steps_per_epoch * recipe.epochs)
    epochs = steps / steps_per_epoch
    processed = epochs * (sequences * s if recipe.padded else tokens)
    flops = epochs * training_flops(facts["model"], facts["parameters"], processed / epochs, squares,
                                    recipe.checkpointing)
    return Work(counted["conversations"], counted["tokens"], sequences, steps, epochs, processed, flops,
                str(counted.get("counted")))


def training_flops(model: Mapping[str, Any], p: Mapping[str, int], tokens: float, squares: float,
                   checkpointing: bool) -> float:
    """FLOPs of one epoch: `tokens` through the model, `squares` the sum over conversations of length squared.

    Each multiplied weight costs 2 FLOPs per token forward, 2 again to recompute under gradient checkpointing, and 2
    backward for the activations' gradient; frozen weights get no weight gradient, trainable ones that multiply
    (LoRA, lm_head's copy) 2 more (Kaplan et al. 2020, "Scaling laws", section 2.1; Korthikanti et al. 2022 for
    recomputation). Causal attention costs 2 x hidden x length per token and layer forward, and the same factors.
    Embedding lookups cost nothing."""
    h, layers = int(model["hidden_size"]), int(model["num_hidden_layers"])
    multiplied = p["total"] - (0 if model.get("tie_word_embeddings") else p["embed"]) + p["lora"]
    passes = 3 if checkpointing else 2  # forward, (recompute,) backward
    trained = p["lora"] + (min(p["saved"], p["lm_head"] or p["embed"]) if p["saved"] else 0)
    dense = tokens * (2 * passes * multiplied + 2 * trained)
    attention = (passes + 1) * layers * 2 * h * squares  # the backward of attention is twice its forward
    return dense + attention


def hours(flops: float, gpu: Gpu, count: int) -> tuple[float, float] | None:
    """The time range at the MFU range, over `count` GPUs of type `gpu`; None without a known peak."""
    if not gpu.tflops:
        return None
    rate = gpu.tflops * 1e12 * count
    return flops / (rate * gpu.mfu[1]) / 3600, flops / (rate * gpu.mfu[0]) / 3600
