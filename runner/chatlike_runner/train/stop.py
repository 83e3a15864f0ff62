"""Save a checkpoint and stop cleanly on SIGTERM: a Trainer callback (added by plugin.ChatlikePlugin).

Neither Axolotl nor the Trainer does this by default: SIGTERM kills the process and the steps since the last
save are lost. transformers' `enable_jit_checkpoint` is not exposed by Axolotl and lets each rank of a
multi-GPU run stop at its own step, which deadlocks the save. Here every rank agrees on the step to stop at.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from transformers import TrainerCallback

from . import manifest

STOP_SIGNALS = (signal.SIGTERM,)


class StopOnSignalCallback(TrainerCallback):
    """After SIGTERM, the next optimizer step ends with a checkpoint and the end of training."""

    def __init__(self) -> None:
        self.requested = False

    def _request(self, signum, frame) -> None:
        self.requested = True
        # os.write, not print: the signal may arrive inside a print to the same stream.
        os.write(1, f"\nchatlike-train: got {signal.Signals(signum).name}; saving a checkpoint after this step\n".encode())

    def on_train_begin(self, args, state, control, **kwargs):
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._request)

    def on_step_end(self, args, state, control, **kwargs):
        if _any_rank(self.requested, args.device):
            control.should_save = True
            control.should_training_stop = True
            if state.is_world_process_zero and state.global_step < state.max_steps:
                manifest.record_runtime(Path(args.output_dir), {"stopped_at_step": state.global_step})


def _any_rank(flag: bool, device) -> bool:
    """True when the flag is set on any rank (one tiny all-reduce per step in a distributed run)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
