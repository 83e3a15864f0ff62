"""llama.cpp's own HF-to-GGUF converter (convert_hf_to_gguf.py), run from the llama.cpp release in the image.

    python -m chatlike_runner.train.convert [--pre-tokenizer NAME] MODEL_DIR CONVERTER_ARGS...

The converter recognizes a tokenizer's pre-tokenizer by a hash of its output on a fixed text; for a tokenizer
it does not know (chatlike's tiny test model) `--pre-tokenizer` names it. Real Llama 3 tokenizers need none.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

LLAMA_CPP = Path(os.environ.get("CHATLIKE_LLAMA_CPP", "/opt/llama.cpp"))


def main(argv: list[str]) -> None:
    pre = None
    if argv[:1] == ["--pre-tokenizer"]:
        pre, argv = argv[1], argv[2:]
    sys.path[:0] = [str(LLAMA_CPP), str(LLAMA_CPP / "gguf-py")]
    if pre:
        from conversion import base

        known = base.TextModel.get_vocab_base_pre

        def named(self, tokenizer) -> str:
            try:
                return known(self, tokenizer)
            except NotImplementedError:
                return pre

        base.TextModel.get_vocab_base_pre = named
    sys.argv = [str(LLAMA_CPP / "convert_hf_to_gguf.py"), *argv]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
