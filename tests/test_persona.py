"""Is it you? The persona eval on a CPU smoke run of the bundled example export (real Axolotl, the tiny model, in
the CPU image), with one training reply planted many times: authorship, a blind test judged by a script that
knows the real replies, memorization of the planted reply, and the report in a headless browser."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import need, runner_cmd
from test_use import overfit, run_cli

pytestmark = pytest.mark.engine
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PLANTED = [{"role": "user", "content": "what did the landlord say about the boiler?"},
           {"role": "assistant", "content": "he said the plumber comes on tuesday between nine and noon so keep the "
                                            "hallway clear"}]
VERBATIM = 8


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def recites(reply: str, training: list[str]) -> bool:
    """Whether `reply` has VERBATIM words in a row of one training reply (the test's own check)."""
    grams = {tuple(w[i:i + VERBATIM]) for text in training for w in [words(text)] for i in range(len(w) - VERBATIM + 1)}
    mine = words(reply)
    return any(tuple(mine[i:i + VERBATIM]) in grams for i in range(len(mine) - VERBATIM + 1))


def clopper_pearson(hits: int, trials: int) -> tuple[float, float]:
    """The exact 95% interval, by bisection on the binomial distribution (independent of scipy)."""
    def tail(p: float, upper: bool) -> float:
        ks = range(hits, trials + 1) if upper else range(0, hits + 1)
        return sum(math.comb(trials, k) * p**k * (1 - p) ** (trials - k) for k in ks)

    def solve(upper: bool) -> float:
        low, high = 0.0, 1.0
        for _ in range(100):
            mid = (low + high) / 2
            if (tail(mid, upper) < 0.025) == upper:
                low = mid
            else:
                high = mid
        return (low + high) / 2

    return (0.0 if hits == 0 else solve(True), 1.0 if hits == trials else solve(False))


@pytest.fixture(scope="module")
def example_run(cpu_image, tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """The bundled example as `prepare` writes it, the planted conversation 30 times in training and once at the
    top of the held-out set, trained to overfit: the smoke config for 400 steps at a high rate (about 90 s)."""
    from chatlike_runner.trial import write_example

    project = tmp_path_factory.mktemp("persona")
    (project / "data").mkdir()
    write_example(project / "data")
    planted = json.dumps({"messages": PLANTED})
    with (project / "data" / "train.jsonl").open("a") as train:
        train.write("".join(f"{planted}\n" for _ in range(30)))
    heldout = project / "data" / "heldout.jsonl"
    heldout.write_text(f"{planted}\n{heldout.read_text()}")
    run_id = overfit(project, 400)
    yield project, run_id
    run_cli(project, "rm", run_id)


def real_replies(project: Path) -> dict[tuple[str, ...], set[str]]:
    """Your last reply of each held-out conversation, by its context as a piped question shows it (the last six
    messages but the system prompt, "them:" and "you:", newlines written as \\n)."""
    found: dict[tuple[str, ...], set[str]] = {}
    for line in (project / "data" / "heldout.jsonl").read_text().splitlines():
        messages = json.loads(line)["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        shown = tuple(f"{'them' if m['role'] == 'user' else 'you'}: {m['content']}".replace("\n", "\\n").strip()
                      for m in messages[:last][-6:] if m["role"] != "system")
        found.setdefault(shown, set()).add(messages[last]["content"].replace("\n", "\\n"))
    return found


def judge(project: Path, run_id: str, plan: list[str]) -> tuple[int, str, list[dict]]:
    """Run a blind test answered by a judge who knows your real replies: in round "you", question i is answered
    by plan[i] ("real": picks yours, "model": picks the model's, "skip"); in round "base" it always answers 1.
    Returns the exit code, stdout, and the questions as seen."""
    process = subprocess.Popen(runner_cmd("eval", run_id, "--blind", str(len(plan)), "--versus-base", "--samples", "16"),
                               cwd=project, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=(project / "judge.err").open("w"), text=True, bufsize=1,
                               env={**os.environ, "HOME": str(project)})
    mine, seen, out, current = real_replies(project), [], [], None
    for line in process.stdout:
        out.append(line)
        if line.startswith("["):
            current = {"head": line.strip(), "context": [], "replies": []}
        elif current is not None and line.startswith("  "):
            current["context"].append(line.strip())
        elif current is not None and line.startswith(("1) ", "2) ")):
            current["replies"].append(line[3:].rstrip("\n"))
            if len(current["replies"]) == 2:
                seen.append(current)
                if current["head"].startswith("[you or the model"):
                    want = plan[sum(q["head"].startswith("[you") for q in seen) - 1]
                    real = [i for i, reply in enumerate(current["replies"], 1) if reply in mine[tuple(current["context"])]]
                    assert len(real) == 1, current
                    answer = {"real": real[0], "model": 3 - real[0], "skip": "s"}[want]
                else:
                    answer = 1
                process.stdin.write(f"{answer}\n")
                process.stdin.flush()
                current = None
    process.stdin.close()
    return process.wait(timeout=60), "".join(out), seen


@pytest.fixture(scope="module")
def judged(example_run):
    project, run_id = example_run
    code, out, seen = judge(project, run_id, ["real", "real", "real", "model", "model", "skip"])
    return project, run_id, code, out, seen


def test_the_classifier_recognises_you_well_above_chance_on_held_out_text(judged):
    project, run_id, code, out, _ = judged
    assert code == 0, out[-3000:] + (project / "judge.err").read_text()[-3000:]
    report = json.loads((project / "outputs" / run_id / "eval" / "report.json").read_text())
    authorship = report["authorship"]
    yours, theirs = authorship["scores"]["yours"], authorship["scores"]["theirs"]
    # Chance is 50%: the example's Robin (lowercase, "ngl", "..", 🌿) is told from her friends on text never seen.
    assert yours["share"] >= 0.9, f"your held-out replies: {yours['share']:.0%} attributed to you (chance: 50%)"
    assert theirs["share"] <= 0.1, f"the others' held-out messages: {theirs['share']:.0%} attributed to you"
    assert yours["ci95"][0] - 0.5 >= 0.3, f"the ceiling's lower bound is {yours['ci95'][0] - 0.5:+.0%} above chance"
    assert authorship["recognises_you"] and authorship["training"]["yours"] > 300
    assert yours["texts"] == sum(1 for line in (project / "data" / "heldout.jsonl").read_text().splitlines()
                                 for m in json.loads(line)["messages"] if m["role"] == "assistant")
    for name in ("tuned", "base"):
        score = authorship["scores"][name]
        assert score["texts"] == len(report["side_by_side"]) == 16
        assert score["ci95"][0] <= score["share"] <= score["ci95"][1]
    assert report["run_id"] == run_id and report["verdict"].startswith(f"Run {run_id}: ")


def test_a_piped_blind_test_scores_exactly_what_the_judge_answered(judged):
    project, run_id, code, out, seen = judged
    assert code == 0, out[-3000:]
    blind = json.loads((project / "outputs" / run_id / "eval" / "blind.json").read_text())
    you, base = blind["rounds"]["you"], blind["rounds"]["base"]
    # Three right, two taken in by the model, one skipped: it passed for you in 2 of 5.
    assert (you["asked"], you["answered"], you["skipped"], you["hits"], you["trials"]) == (6, 6, 1, 2, 5)
    low, high = clopper_pearson(2, 5)
    assert you["share"] == 0.4 and you["ci95"] == pytest.approx([low, high], abs=1e-6) and you["p_value"] == 1.0
    firsts = [a["order"][0] for a in blind["answers"] if a["round"] == "base"]
    assert base["trials"] == base["asked"] == len(firsts) == 6 and base["hits"] == firsts.count("tuned")
    ids = [a["id"] for a in blind["answers"]]
    assert len(ids) == len(set(ids)) == 12, "no context is shown twice, in one round or across the two"
    assert len({tuple(q["context"]) for q in seen}) == 12 and len(seen) == 12
    assert "passes for you in 2 of 5 blind pairs" in out and "a coin: 50%" in out
    report = json.loads((project / "outputs" / run_id / "eval" / "report.json").read_text())
    assert report["blind"] == blind and "passes for you in 2 of 5 blind pairs" in report["verdict"]
    manifest = json.loads((project / "outputs" / run_id / "manifest.json").read_text())
    assert manifest["evals"][-1]["blind"] == blind and isinstance(blind["seed"], int) and blind["replies_seed"] == 0


def test_memorization_counts_the_planted_training_reply(judged):
    project, run_id, code, out, _ = judged
    assert code == 0, out[-3000:]
    report = json.loads((project / "outputs" / run_id / "eval" / "report.json").read_text())
    training = [m["content"] for line in (project / "data" / "train.jsonl").read_text().splitlines()
                for m in json.loads(line)["messages"] if m["role"] == "assistant"]
    memorized = report["failures"]["tuned"]["memorized"]
    tuned = [pair["tuned"] for pair in report["side_by_side"]]
    assert len(memorized) == sum(recites(reply, training) for reply in tuned)
    planted = [m for m in memorized if m["training_reply"] == PLANTED[1]["content"]]
    assert planted and planted[0]["words"] >= VERBATIM, ("the planted reply, trained 30 times, is recited", tuned[:3])
    assert report["side_by_side"][0]["context"] == PLANTED[:1]
    assert f"{len(memorized)} of its 16 replies recite a training reply of yours verbatim" in report["verdict"]
    manifest = json.loads((project / "outputs" / run_id / "manifest.json").read_text())
    assert manifest["evals"][-1]["memorized"] == len(memorized)
    result = run_cli(project, "export", run_id, "--gguf", "q8_0")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert f"memorization: {len(memorized)} of 16 replies to held-out contexts repeat a training reply" in result.stdout


def test_the_failures_are_measured_on_every_reply(judged):
    project, run_id, code, out, _ = judged
    report = json.loads((project / "outputs" / run_id / "eval" / "report.json").read_text())
    failures, pairs = report["failures"], report["side_by_side"]
    for who in ("tuned", "base"):
        assert failures[who]["never_ends"] == pytest.approx(sum(not p[f"{who}_ended"] for p in pairs) / len(pairs))
        assert 0 <= failures[who]["length_distance"] <= 1 and 0 < failures[who]["distinct_2"] <= 1
    assert failures["real"]["replies"] == 16 and failures["memorization_checked"]


def test_the_report_opens_with_its_verdict_and_plots_and_no_console_error(judged, tmp_path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        need("Debian's chromium and chromium-driver are not installed")
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    project, run_id, *_ = judged
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,1800",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        driver.get((project / "outputs" / run_id / "eval" / "report.html").as_uri())
        assert driver.title == f"chatlike eval {run_id}"
        assert driver.find_element(By.TAG_NAME, "h1").text == f"Is it you? Evaluation of run {run_id}"
        first = driver.find_element(By.CSS_SELECTOR, "h1 + p")
        assert first.get_attribute("class") == "verdict" and first.text.startswith(f"Run {run_id}: ")
        assert "Strongest signal:" in first.text
        assert driver.find_element(By.ID, "blind").is_displayed() and driver.find_element(By.ID, "memorized")
        assert driver.find_elements(By.TAG_NAME, "script") == []
        assert [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"] == []
        for plot in ("authorship-plot", "nll-plot", "curve-plot"):
            shot = tmp_path / f"{plot}.png"
            driver.find_element(By.CSS_SELECTOR, f"#{plot} svg").screenshot(str(shot))
            pixels = Image.open(shot).convert("L").tobytes()
            drawn = sum(1 for value in pixels if value < 200)
            assert drawn > 0.01 * len(pixels), f"{plot} looks blank ({drawn} of {len(pixels)} pixels drawn)"
        requests = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
        urls = [m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"]
        assert not [url for url in urls if url.startswith(("http:", "https:", "ws:", "wss:", "ftp:"))]
    finally:
        driver.quit()


def test_a_blind_test_at_a_terminal_asks_again_on_a_wrong_answer_and_ctrl_c_keeps_what_was_answered(judged, leftovers):
    import pexpect  # a test dependency ([test] extra): missing, the test fails rather than skips
    project, run_id, *_ = judged
    command = runner_cmd("eval", run_id, "--force", "--blind", "1", "--versus-base")
    # A terminal's foreground program gets Ctrl-C as SIGINT; a test run started in the background of a script
    # (`.ci/run &`) passes SIGINT on ignored, and Python then keeps ignoring it: the child starts as at a terminal.
    child = pexpect.spawn(command[0], command[1:], cwd=str(project), env={**os.environ, "HOME": str(project)},
                          encoding="utf-8", timeout=300,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        child.expect(r"\[you or the model 1/1\] Which one did you write\?")
        child.expect(r"which\? \[1/2/s\] ")
        child.sendline("maybe")
        child.expect("answer 1, 2 or s")
        child.expect(r"which\? \[1/2/s\] ")
        child.sendline("2")
        child.expect(r"\[tuned or base 1/1\]")
        child.expect(r"which\? \[1/2/s\] ")
        # A moment after the prompt, as a person does: input() notices a SIGINT that interrupts its read; one that
        # landed between the prompt and the read would wait for a key.
        time.sleep(0.5)
        child.sendintr()
        child.expect("passes for you in [01] of 1 blind pairs")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    blind = json.loads((project / "outputs" / run_id / "eval" / "blind.json").read_text())
    assert [a["answer"] for a in blind["answers"]] == ["2"] and blind["rounds"]["base"]["asked"] == 1
    assert leftovers() == []


def test_a_second_blind_test_never_shows_a_judged_context_again_and_a_bad_answer_publishes_nothing(judged, leftovers):
    project, run_id, code, *_ = judged
    eval_dir = project / "outputs" / run_id / "eval"
    first = json.loads((eval_dir / "blind.json").read_text())
    before = json.loads((project / "outputs" / run_id / "manifest.json").read_text())["evals"]
    judged = {i for entry in before for i in (entry.get("blind") or {}).get("judged", [])}
    bad = run_cli(project, "eval", run_id, "--force", "--blind", "2", stdin="maybe\n")
    assert bad.returncode == 2, bad.stdout[-2000:] + bad.stderr
    assert bad.stderr.strip().splitlines()[-1] == ("chatlike-runner: line 1 of the answers is 'maybe': answer 1, 2 or s "
                                                  "(skip), one a line")
    assert json.loads((eval_dir / "blind.json").read_text()) == first, "the earlier eval is untouched"
    again = run_cli(project, "eval", run_id, "--force", "--blind", "3", stdin="s\n1\n")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    second = json.loads((eval_dir / "blind.json").read_text())
    assert second["not_shown_again"] == len(judged) >= 12 and not set(second["judged"]) & judged
    assert [a["answer"] for a in second["answers"]] == ["s", "1"]
    assert second["complete"] == (second["rounds"]["you"]["asked"] == 2)
    manifest = json.loads((project / "outputs" / run_id / "manifest.json").read_text())
    assert [entry["blind"]["seed"] for entry in manifest["evals"]] == [*(e["blind"]["seed"] for e in before),
                                                                       second["seed"]]
    assert leftovers() == []
