"""chatlike-train export: the run as one GGUF file for llama.cpp and Ollama, made with llama.cpp's own tools.

The adapter is merged into the base and saved with training's chat template (merging alone drops it);
llama.cpp's converter writes an f16 GGUF of it, llama.cpp's quantizer makes q8_0 or q4_k_m of that, and
gguf-py's gguf_new_metadata marks the run's end-of-turn token as the EOT token (<|eot_id|> for Llama 3,
<|im_end|> for ChatML; all from the llama.cpp release vendored in the pinned llama-cpp-python). An Ollama
Modelfile goes beside it, its TEMPLATE, SYSTEM and stop lines read from the run's template (template.py). Then
llama.cpp itself checks the file: it loads and generates; its metadata holds the chat template and the EOT token;
the prompt llama.cpp builds from that template is, token for token, the prompt training used, on the held-out
conversations; its logits are compared with the merged model's, and its greedy replies with the merged model's.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .chatting import training_system
from .convert import LLAMA_CPP
from .errors import TrainError
from .evaluate import read_heldout, replies
from . import smallmodel
from . import template as turns
from .tinymodel import PRE_TOKENIZER, is_tiny
from .tuned import Tuned, tokenized

QUANTS = {"f16": 1, "q8_0": 7, "q4_k_m": 15}  # llama.cpp's llama_ftype of each
LOGITS_TOLERANCE = {"f16": 0.01}  # max |logit difference| against the merged model, where it is checked strictly
PROMPTS_CHECKED = 20
GREEDY_CHECKED, GREEDY_TOKENS = 8, 16  # held-out contexts whose greedy replies are compared, and their length
REFERENCE_FP32_PARAMS = 2e9  # the merged model is compared in fp32 up to this size (8 GB), else in its own precision


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-1:])[:300]
        raise TrainError(f"{what} failed: {tail}")


def need_space(tuned: Tuned, folder: Path, quant: str) -> None:
    """Refuse early when the volume cannot hold the merged model, its f16 GGUF and the result."""
    params = sum(p.numel() for p in tuned.model.parameters())
    saved = next(tuned.model.parameters()).element_size()
    need = params * (saved + 2 + (2 if quant == "f16" else 1)) * 1.1
    free = shutil.disk_usage(folder).free
    if free < need:
        raise TrainError(f"exporting needs about {_size(need)} free where the Docker host keeps its volumes "
                         f"(the merged model, its f16 GGUF and the {quant} file); {_size(free)} are: "
                         "free some space there")


def _size(count: float) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e9 else f"{count / 1e6:.1f} MB"


def merge(tuned: Tuned, folder: Path) -> Any:
    """The adapter merged into the base, saved as safetensors with the tokenizer and training's chat template."""
    merged = tuned.model.merge_and_unload()
    merged.save_pretrained(folder, safe_serialization=True)
    tuned.tokenizer.chat_template = tuned.template
    tuned.tokenizer.save_pretrained(folder)
    return merged


def pre_tokenizer(base_model: str) -> str | None:
    """The pre-tokenizer llama.cpp is told for a base chatlike made (the tiny model's, or the one the small real
    model's own GGUF named); None for any other model, which llama.cpp recognizes itself."""
    if is_tiny(base_model):
        return PRE_TOKENIZER
    return (smallmodel.source(base_model) or {}).get("pre_tokenizer")


def convert(merged: Path, out: Path, pre_tokenizer_name: str | None) -> None:
    pre = ["--pre-tokenizer", pre_tokenizer_name] if pre_tokenizer_name else []
    _run([sys.executable, "-m", "chatlike_runner.train.convert", *pre, str(merged), "--outfile", str(out),
          "--outtype", "f16"], "llama.cpp's converter (convert_hf_to_gguf.py)")


def quantize(source: Path, out: Path, quant: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANTS[quant]
    params.nthread = os.cpu_count() or 1
    if llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params)) != 0:
        raise TrainError(f"llama.cpp's quantizer could not make {quant} of {source.name}")


def mark_eot(source: Path, out: Path, eot: str) -> None:
    script = LLAMA_CPP / "gguf-py" / "gguf" / "scripts" / "gguf_new_metadata.py"
    env_path = f"{LLAMA_CPP / 'gguf-py'}"
    done = subprocess.run([sys.executable, str(script), str(source), str(out), "--special-token", "eot", eot,
                           "--force"], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": env_path})
    if done.returncode != 0:
        raise TrainError(f"gguf_new_metadata could not mark {eot}: {done.stderr.strip()[-300:]}")


def modelfile(gguf: Path, tuned: Tuned, system: str | None) -> str:
    """An Ollama Modelfile: the run's template in Ollama's form, training's system prompt (else the one the template
    writes by itself), and a stop line per end-of-turn token. A template that does not wrap each message alike
    gets no TEMPLATE line: Ollama then reads the GGUF's own."""
    lines = [f"FROM ./{gguf.name}"]
    found = turns.turn_format(lambda messages, generation: turns.render(tuned.tokenizer, tuned.template, messages,
                                                                        generation))
    if found is not None:
        lines.append(f'TEMPLATE """{found.ollama(tuned.tokenizer.bos_token)}"""')
        system = system or found.default_system
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{token}"' for token in tuned.end_of_turn]
    return "\n".join(lines) + "\n"


def _prompts(tuned: Tuned, rows: list[dict]) -> list[tuple[list[dict], list[int]]]:
    """Held-out contexts and the token ids training put before your last reply in each."""
    found = []
    for row in rows:
        kept, _ = tokenized(tuned.cfg, tuned.tokenizer, [row])
        messages = row.get("messages") or []
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
        if kept and last:
            ids, labels = kept[0]
            start = replies(labels)[-1][0]
            found.append((messages[:last], ids[:start + 1]))
        if len(found) == PROMPTS_CHECKED:
            break
    return found


def builtin_prompt(llm: Any, template: str, messages: list[dict]) -> list[int]:
    """The prompt llama.cpp's own C template code builds for `messages` (what llama-cli gives without --jinja: it
    recognizes a template's family, and knows nothing of a default system prompt), as llama.cpp tokenizes it."""
    import llama_cpp

    chat = (llama_cpp.llama_chat_message * len(messages))(
        *(llama_cpp.llama_chat_message(m["role"].encode(), m["content"].encode()) for m in messages))
    size = llama_cpp.llama_chat_apply_template(template.encode(), chat, len(messages), True, None, 0)
    if size < 0:
        return []
    buffer = ctypes.create_string_buffer(size + 1)
    llama_cpp.llama_chat_apply_template(template.encode(), chat, len(messages), True, buffer, size + 1)
    return llm.tokenize(buffer.value, add_bos=True, special=True)


def jinja_prompt(llm: Any, template: str, messages: list[dict]) -> list[int]:
    """The prompt the GGUF's own chat template renders for `messages`, as llama-cpp-python's chat completions (and
    its server) render and tokenize it, like llama.cpp with --jinja."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    text = {which: llm.detokenize([token], special=True).decode() if token >= 0 else ""
            for which, token in (("eos", llm.token_eos()), ("bos", llm.token_bos()))}
    rendered = Jinja2ChatFormatter(template, eos_token=text["eos"], bos_token=text["bos"])(messages=messages)
    return llm.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special, special=True)


def greedy_llama(llm: Any, ids: list[int], stops: list[int]) -> list[int]:
    """llama.cpp's greedy reply to `ids`: its first GREEDY_TOKENS tokens, to its stop token."""
    reply = []
    for token in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
        reply.append(int(token))
        if token in stops or len(reply) == GREEDY_TOKENS:
            break
    return reply


def greedy_merged(model: Any, ids: list[int], stops: list[int], pad: int | None) -> list[int]:
    """The merged model's greedy reply to `ids` in transformers, as greedy_llama counts it."""
    import torch

    prompt = torch.tensor([ids])
    with torch.inference_mode():
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                             max_new_tokens=GREEDY_TOKENS, eos_token_id=stops, pad_token_id=pad)
    return out[0, len(ids):].tolist()


def reference(merged: Any) -> Any:
    """The merged model in fp32 where it is small enough to hold so (the GGUF's f16 weights hold its bf16 or f16
    ones exactly; compared in their own low precision, rounding alone would part greedy replies), else as it is."""
    params = sum(p.numel() for p in merged.parameters())
    return merged.float() if params <= REFERENCE_FP32_PARAMS else merged


def check(gguf: Path, tuned: Tuned, merged: Any, rows: list[dict], quant: str) -> dict[str, Any]:
    """llama.cpp's view of the file: loads, generates, template and EOT in its metadata, the prompts, the logits and
    the greedy replies against the merged model's."""
    import numpy as np
    import torch
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=int(tuned.cfg.sequence_len) + 64, logits_all=True, verbose=False,
                n_threads=os.cpu_count() or 1)
    template = llm.metadata.get("tokenizer.chat_template")
    eot = llm.metadata.get("tokenizer.ggml.eot_token_id")
    eot_text = llm.detokenize([int(eot)], special=True).decode() if eot is not None else None
    eot_wanted = tuned.end_of_turn[0]
    if not template or eot_text != eot_wanted:
        raise TrainError(f"the GGUF lacks {'its chat template' if not template else f'{eot_wanted} as its EOT token'}")
    prompts = _prompts(tuned, rows)
    differ = [i for i, (messages, ids) in enumerate(prompts) if jinja_prompt(llm, template, messages) != ids]
    if not prompts or differ:
        raise TrainError(f"llama.cpp's prompt differs from training's on {len(differ)} of {len(prompts)} held-out "
                         "conversations: the GGUF's template does not render as training did")
    builtin = sum(builtin_prompt(llm, template, messages) == ids for messages, ids in prompts)
    model = reference(merged)
    ids = prompts[0][1]
    llm.reset()
    llm.eval(ids)
    ours = np.asarray(llm.scores[: len(ids)], dtype=np.float32)
    with torch.inference_mode():
        theirs = model(input_ids=torch.tensor([ids])).logits[0].float().numpy()
    diff = float(np.abs(ours - theirs).max())
    pairs = [(greedy_llama(llm, ids, tuned.stop_ids), greedy_merged(model, ids, tuned.stop_ids,
                                                                    tuned.tokenizer.pad_token_id))
             for _, ids in prompts[:GREEDY_CHECKED]]
    reply = llm.create_completion(prompt=ids, max_tokens=32, temperature=0.0)
    tolerance = LOGITS_TOLERANCE.get(quant)
    return {
        "loads": True,
        "chat_template": template,
        "eot_token": {"id": int(eot), "text": eot_text},
        "prompts": {"compared": len(prompts), "equal": len(prompts) - len(differ), "builtin_equal": builtin},
        "logits": {"tokens": len(ids), "max_abs_difference": diff, "reference": str(model.dtype).removeprefix("torch."),
                   "top1_agreement": float((ours.argmax(-1) == theirs.argmax(-1)).mean()),
                   "tolerance": tolerance, "within": None if tolerance is None else diff <= tolerance},
        "greedy": {"tokens": GREEDY_TOKENS, "compared": len(pairs), "same": sum(a == b for a, b in pairs),
                   "replies": [{"llama_cpp": tuned.tokenizer.decode(a), "merged": tuned.tokenizer.decode(b)}
                               for a, b in pairs]},
        "generated": {"text": reply["choices"][0]["text"], "finish_reason": reply["choices"][0]["finish_reason"]},
    }


def export(tuned: Tuned, heldout: Path, out_dir: Path, quant: str, name: str, say: Callable[[str], None]) -> dict:
    """Write NAME.QUANT.gguf, Modelfile and README.md to out_dir; returns the checks."""
    rows = read_heldout(heldout)
    work = out_dir / ".work"
    work.mkdir(parents=True, exist_ok=True)
    need_space(tuned, out_dir, quant)
    say("merging the adapter into the base model")
    merged = merge(tuned, work / "merged")
    say("converting to GGUF with llama.cpp's converter")
    f16 = work / "model-f16.gguf"
    convert(work / "merged", f16, pre_tokenizer(tuned.cfg.base_model))
    shutil.rmtree(work / "merged")
    source = f16
    if quant != "f16":
        say(f"quantizing to {quant} with llama.cpp's quantizer")
        source = work / f"model-{quant}.gguf"
        quantize(f16, source, quant)
        f16.unlink()
    final = out_dir / f"{name}.{quant}.gguf"
    if not tuned.end_of_turn:
        raise TrainError("the run's template writes none of its eot_tokens: nothing marks the end of a reply; "
                         "set eot_tokens to the token its chat template ends a turn with")
    mark_eot(source, final, tuned.end_of_turn[0])
    shutil.rmtree(work)
    say("checking the GGUF with llama.cpp")
    checks = check(final, tuned, merged, rows, quant)
    (out_dir / "Modelfile").write_text(modelfile(final, tuned, training_system(heldout)), encoding="utf-8")
    (out_dir / "README.md").write_text(
        f"# {name}\n\n{final.name}: the run's adapter merged into its base, {quant}, for llama.cpp and Ollama.\n\n"
        f"    ollama create {name} -f Modelfile\n    ollama run {name}\n\n"
        f"    llama-cli -m {final.name} -cnv\n", encoding="utf-8")
    return checks
