"""Trainer log lines become step/total, loss, learning rate and ETA."""

from __future__ import annotations

import io

from rich.console import Console

from chatlike_runner.core.trainlog import TrainingState, lines
from chatlike_runner.progress import Display
from chatlike_runner.redact import Redactor


def test_state_from_trainer_lines():
    state = TrainingState()
    assert state.update("  45%|████▌     | 45/100 [00:12<00:15,  3.60it/s]")
    assert not state.update("{'loss': 1.2345, 'grad_norm': 0.5, 'learning_rate': 0.0002, 'epoch': 0.45}")
    assert (state.step, state.total, state.eta) == (45, 100, "00:15")
    assert state.metrics == {"loss": 1.2345, "learning_rate": 0.0002, "epoch": 0.45}
    # An evaluation bar with another total does not move the training step.
    assert state.update(" 50%|#####     | 3/6 [00:01<00:01,  2.00it/s]")
    assert (state.step, state.total) == (45, 100)
    # Quoted values, as some versions log them.
    state.update("{'loss': '0.5', 'learning_rate': '1e-05', 'eval_loss': '0.75'}")
    assert state.metrics["loss"] == 0.5 and state.metrics["eval_loss"] == 0.75
    assert state.summary() == "step 45/100  loss 0.5  eval loss 0.75  lr 1e-05  eta 00:15"


def test_dataset_bars_are_not_training():
    state = TrainingState()
    assert not state.update("Tokenizing Prompts (num_proc=2): 100%|██████████| 500/500 [00:01<00:00, 400 examples/s]")
    assert state.step is None


def test_lines_split_across_chunks_and_carriage_returns():
    chunks = [b"first li", b"ne\n 1/3 [00:01<00:02]\r 2/3", b" [00:02<00:01]\r\nlast"]
    assert list(lines(chunks)) == ["first line", " 1/3 [00:01<00:02]", " 2/3 [00:02<00:01]", "last"]


def test_multibyte_characters_split_between_chunks():
    data = "привет 👋\n".encode()
    for cut in range(1, len(data)):
        assert list(lines([data[:cut], data[cut:]])) == ["привет 👋"]


def test_redactor_hides_secrets():
    redact = Redactor(["hf_abcdef123", "abc"])
    assert redact("token hf_abcdef123 and abc") == "token *** and abc"


def test_redactor_stream_hides_secrets_split_between_chunks():
    redact = Redactor(["hf_abcdef123"])
    data = "a hf_abcdef123 b\r hf_abcdef123\n".encode()
    for cut in range(1, len(data)):
        assert "".join(redact.stream([data[:cut], data[cut:]])) == "a *** b\r ***\n"
    assert "".join(Redactor([]).stream([b"plain"])) == "plain"


def test_plain_display_prints_progress_lines():
    out = io.StringIO()
    display = Display(Console(file=out, force_terminal=False, width=200), "run1")
    with display:
        for line in ["loading", " 10%|#    | 1/10 [00:01<00:09,  1.00it/s]", "{'loss': 2.5, 'learning_rate': 0.0001}"]:
            display.show(line)
    text = out.getvalue()
    assert "loading" in text
    assert "1/10 [00:01" not in text  # bar updates are folded into the progress line
    assert "[progress] step 1/10  loss 2.5  lr 0.0001  eta 00:09" in text


def test_the_last_step_shows_when_the_bar_reaches_it():
    """The Trainer logs a step's loss before its bar moves on, and tqdm skips bar updates: the last loss may come
    while the bar still says 9/10. The step the run ends at is shown when the bar gets there, once."""
    out = io.StringIO()
    display = Display(Console(file=out, force_terminal=False, width=200), "run1")
    with display:
        for line in [" 90%|#########  | 9/10 [00:09<00:01,  1.00it/s]", "{'loss': 1.5, 'learning_rate': 0.0001}",
                     "100%|##########| 10/10 [00:10<00:00,  1.00it/s]", "100%|##########| 10/10 [00:10<00:00,  1.00it/s]"]:
            display.show(line)
    progress = [line for line in out.getvalue().splitlines() if line.startswith("[progress]")]
    assert progress == ["[progress] step 9/10  loss 1.5  lr 0.0001  eta 00:01", "[progress] step 10/10  loss 1.5  lr 0.0001  eta 00:00"]
