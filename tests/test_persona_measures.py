"""The persona eval's measures one by one, in the training venv's Python (scikit-learn and scipy as the image has
them): verbatim recitation, repetition, script, the blind test's draw and its exact interval, the classifier's
caveats, the verdict, and the report's escaping. No model: the replies are given."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import need

REPO = Path(__file__).resolve().parents[1]
TRAIN_PYTHON = Path(os.environ.get("CHATLIKE_TRAIN_PYTHON", REPO / ".venv-train" / "bin" / "python"))


def in_train(code: str) -> object:
    """Run `code` in the training venv; what it prints last, as JSON."""
    if not TRAIN_PYTHON.exists():
        need(f"the training venv {TRAIN_PYTHON} is missing (make train-venv)")
    done = subprocess.run([str(TRAIN_PYTHON), "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_recitation_needs_eight_words_in_a_row_of_one_training_reply():
    found = in_train("""
        import json
        from chatlike_runner.train.failures import Verbatim
        v = Verbatim(["he said the plumber comes on tuesday between nine and noon", "ok see you at eight then"])
        print(json.dumps([v.find(t) for t in [
            "He said: the plumber comes on Tuesday, between!",   # 8 words, other case and punctuation
            "he said the plumber comes on tuesday",                  # 7
            "well he said the plumber comes on tuesday between nine and noon ok",  # 11, inside more
            "ok see you at eight then the plumber comes on tuesday",  # two replies joined: 6 + 5 words
        ]]))
    """)
    assert found[0] == {"words": 8, "span": "he said the plumber comes on tuesday between",
                        "training_reply": "he said the plumber comes on tuesday between nine and noon"}
    assert found[1] is None and found[2]["words"] == 11 and found[3] is None


def test_repetition_distinct_2_script_and_length_distance():
    found = in_train("""
        import json
        from chatlike_runner.train.failures import distinct_2, length_distance, repeats_itself, script
        print(json.dumps({
            "loop": repeats_itself("i am so tired i am so tired"), "once": repeats_itself("i am so tired of it all"),
            "distinct": distinct_2(["a b a b", "a b"]), "none": distinct_2(["one"]),
            "scripts": [script("привет, как дела?"), script("ciao! 🌿"), script("🌿 123"), script("東京へ行く")],
            "same": length_distance(["ab", "abcd"], ["ab", "abcd"]), "apart": length_distance(["a"], ["abcdef"]),
        }))
    """)
    assert found["loop"] is True and found["once"] is False
    assert found["distinct"] == pytest.approx(2 / 4) and found["none"] is None
    assert found["scripts"] == ["cyrillic", "latin", None, "cjk"]
    assert found["same"] == 0.0 and found["apart"] == 1.0


PAIRS = """
pairs = [{"id": f"c{i}", "context": [{"role": "user", "content": f"q{i}"}], "real": f"mine {i}",
          "tuned": "mine 0" if i == 0 else f"tuned {i}", "base": f"base {i}"} for i in range(10)]
pairs.append({**pairs[3], "real": "other"})  # the same context again (another conversation)
"""


def test_the_blind_draw_never_repeats_a_context_and_skips_pairs_that_read_the_same():
    found = in_train(PAIRS + """
import json
from chatlike_runner.train.blind import ask, questions, result
asked = questions(pairs, {"c1", "c2"}, 4, True, 7)
again = questions(pairs, {"c1", "c2"}, 4, True, 7)
answered = ask(asked, iter(["1", "2", "s"]), lambda event: None)
print(json.dumps({"asked": asked, "same": asked == again, "answered": answered,
                  "result": result(asked, answered, 7, 2)}))
""")
    asked = found["asked"]
    ids = [q["id"] for q in asked]
    assert found["same"] and len(ids) == len(set(ids)) == 8, "8 fresh contexts: 4 a round"
    assert not {"c0", "c1", "c2"} & {q["id"] for q in asked if q["round"] == "you"}, "c0's tuned reply is yours"
    assert [q["round"] for q in asked] == ["you"] * 4 + ["base"] * 4 and "c0" in ids
    for question, answer in zip(asked, found["answered"]):
        assert sorted(question["order"]) == sorted(["real", "tuned"] if question["round"] == "you" else ["tuned", "base"])
        assert answer["chose"] == {"1": question["order"][0], "2": question["order"][1], "s": "skip"}[answer["answer"]]
    result = found["result"]
    assert result["complete"] is False and result["judged"] == ids[:3] and result["not_shown_again"] == 2
    assert result["rounds"]["you"]["answered"] == 3 and result["rounds"]["you"]["skipped"] == 1
    assert result["rounds"]["base"] == {"asked": 4, "answered": 0, "skipped": 0, "hits": 0, "trials": 0, "share": None,
                                        "ci95": None, "p_value": None}


def test_the_blind_score_is_an_exact_binomial_against_a_coin():
    found = in_train("""
        import json
        from chatlike_runner.train.blind import exact
        print(json.dumps([exact(2, 5), exact(0, 20), exact(10, 20)]))
    """)
    # Clopper–Pearson, as tabulated (e.g. R's binom.test(2, 5)$conf.int: 0.05274495 0.85336720).
    assert found[0]["ci95"] == pytest.approx([0.05274495, 0.85336720], abs=1e-7) and found[0]["p_value"] == 1.0
    assert found[1]["ci95"] == pytest.approx([0.0, 0.1684335], abs=1e-6)
    assert found[1]["p_value"] == pytest.approx(2 * 0.5**20)
    assert found[2]["share"] == 0.5 and found[2]["p_value"] == 1.0


def test_a_classifier_that_cannot_tell_you_apart_says_its_scores_mean_nothing():
    found = in_train("""
        import json, random
        from chatlike_runner.train.authorship import authorship
        rng = random.Random(0)
        words = "the a of and to in is it you that was for on are with as be at this have".split()
        def text(): return " ".join(rng.choice(words) for _ in range(8))
        def rows(n): return [{"messages": [{"role": "user", "content": text()},
                                           {"role": "assistant", "content": text()}]} for _ in range(n)]
        same = authorship(rows(40), rows(12), {"tuned": [text()], "base": [text()]}, 0)
        none = authorship(rows(1), rows(3), {"tuned": [], "base": []}, 0)
        unique = [{"messages": [{"role": "user", "content": a}, {"role": "assistant", "content": b}]}
                  for a, b in (("x", "y"), ("q", "z"))]
        print(json.dumps({"same": same, "none": none, "unique": authorship(unique, unique, {"tuned": ["a"]}, 0)}))
    """)
    same = found["same"]
    assert same["recognises_you"] is False and same["training"] == {"yours": 40, "theirs": 40}
    assert any("small export" in c for c in same["caveats"])
    assert any("does not tell your held-out replies from the others'" in c for c in same["caveats"])
    for few in (found["none"], found["unique"]):
        assert few["scores"] == {} and few["recognises_you"] is False and "too few messages" in few["caveats"][0]


REPORT = """
report = {"run_id": "20261205-000000-abcd", "heldout": {"scored": 2, "conversations": 2, "too_long": 0, "replies": 2,
          "tokens": 9, "sha256": "0"},
          "nll": {"tuned": {"nll": 1.5, "ci95": [1.4, 1.6]}, "base": {"nll": 2.5, "ci95": [2.4, 2.6]},
                  "improvement": {"nll": 1.0, "ci95": [0.9, 1.1]}},
          "side_by_side": [{"id": "c1", "context": [{"role": "user", "content": "<b>hi</b>"}], "real": "yo",
                            "tuned": "<script>alert(1)</script>", "base": "Hello!", "tuned_ended": False,
                            "base_ended": True}],
          "authorship": None, "failures": failures(pairs, None), "style": {}, "training_curve": [],
          "settings": {"seed": 0}}
"""


def test_the_verdict_names_the_strongest_and_weakest_signal_and_the_report_escapes_replies():
    found = in_train("""
import json
from chatlike_runner.train.failures import failures
from chatlike_runner.train.report import html, verdict
pairs = [{"real": "yo", "tuned": "<script>alert(1)</script>", "base": "Hello!", "tuned_ended": False,
          "base_ended": True}]
""" + REPORT + """
report["verdict"] = verdict(report)
print(json.dumps({"verdict": report["verdict"], "html": html(report)}))
""")
    verdict, page = found["verdict"], found["html"]
    assert verdict.startswith("Run 20261205-000000-abcd: held-out loss 1.50 per token against the base's 2.50; "
                              "never stops in 100% of replies")
    # The base ends its replies, does not repeat itself and writes in your script: those rank nothing.
    assert "Strongest signal: held-out loss (40% of the way from the base to you); weakest: reply length (0%)." in verdict
    assert "Authorship and memorization were not measured" in verdict
    assert "<title>chatlike eval 20261205-000000-abcd</title>" in page and "Evaluation of run 20261205-000000-abcd" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "(cut at the token limit)" in page and "Not measured: the run's training data" in page


def test_the_verdict_ranks_signals_by_how_far_the_model_moved_toward_you_where_the_base_differs():
    """The case that filed it: a real small model, 20 steps. Held-out NLL fell from 6.32 to 2.14 and authorship
    rose from 5% to 80%, but the verdict said "strongest: script" (no reply switched alphabets, base or tuned) and
    "weakest: held-out loss" (scored a fixed 0.75 whenever it improved)."""
    found = in_train("""
import json
from chatlike_runner.train.report import verdict
def side(never, repeats, other, length):
    return {"replies": 16, "never_ends": never, "repeats_itself": repeats, "other_script": other,
            "length_distance": length}
report = {"run_id": "r", "nll": {"tuned": {"nll": 2.14, "ci95": [2.0, 2.3]}, "base": {"nll": 6.32, "ci95": [6.1, 6.5]},
                                  "improvement": {"nll": 4.18, "ci95": [3.9, 4.4]}},
          "authorship": {"recognises_you": True, "caveats": [], "scores": {"tuned": {"share": 0.80},
                         "base": {"share": 0.05}, "yours": {"share": 0.95}, "theirs": {"share": 0.1}}},
          "failures": {"real": {"replies": 16, "repeats_itself": 0.0}, "tuned": side(0.25, 0.38, 0.0, 0.30),
                       "base": side(0.31, 0.44, 0.0, 0.50)}}
print(json.dumps(verdict(report)))
""")
    # authorship (0.80 - 0.05) / (0.95 - 0.05) = 83%; loss (6.32 - 2.14) / 6.32 = 66%; reply length 40%; ending its
    # replies (0.31 - 0.25) / 0.31 = 19%; repetition (0.44 - 0.38) / 0.44 = 14%; script: the base never switched.
    assert found.endswith("Strongest signal: authorship (83% of the way from the base to you); weakest: repetition "
                          "(14%).")
    assert "0% of replies in another script" not in found and "held-out loss 2.14 per token" in found


def test_the_blind_options_refuse_what_means_nothing(cli):
    alone = cli("eval", "20261205", "--versus-base")
    assert alone.returncode == 2 and "--versus-base is a round of the blind test: add --blind" in alone.stderr
    zero = cli("eval", "20261205", "--blind", "0")
    assert zero.returncode == 2 and "0 is not in the range x>=1" in zero.stderr
