"""A run's copies in OUT, and where `start` and `resume` take a run, without a Docker engine: the records are read
from a temporary OUT, and the engine and the rented box are fixtures that say what was asked of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatlike_runner import records, runs
from chatlike_runner.core.errors import ChatlikeError
from chatlike_runner.events import Note

RUN = "20261205-080000-ab12"


def copy(out: Path, name: str, **manifest) -> Path:
    folder = out / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"run_id": RUN, **manifest}))
    return folder


def test_the_finished_copy_is_found_by_the_start_of_its_id_and_only_when_its_manifest_says_so(tmp_path):
    copy(tmp_path, f"{RUN}.partial", complete=False)
    with pytest.raises(ChatlikeError, match=f"no finished run '2026' in {tmp_path}; look elsewhere"):
        records.finished(tmp_path, "2026", "look elsewhere")
    copy(tmp_path, RUN, complete=True, flags={"gpus": "all"})
    found = records.finished(tmp_path, "2026", "")
    assert found.folder == tmp_path / RUN and found.flags == {"gpus": "all"} and not found.rented
    copy(tmp_path, "20261205-090000-cd34", run_id="20261205-090000-cd34", complete=True)
    with pytest.raises(ChatlikeError, match="several finished run '2026'"):
        records.finished(tmp_path, "2026", "")
    assert records.finished(tmp_path, "20261205-08", "").run_id == RUN


@pytest.mark.parametrize("manifest", ['{"run_id": "another-run", "complete": true}', '{"complete": true}', "[1, 2]",
                                      "{not json", '{"run_id": "%s", "complete": "yes"}' % RUN])
def test_a_folder_whose_manifest_is_not_this_run_s_finished_one_is_not_taken_for_it(tmp_path, manifest):
    (tmp_path / RUN).mkdir()
    (tmp_path / RUN / "manifest.json").write_text(manifest)
    with pytest.raises(ChatlikeError, match="no finished run"):
        records.finished(tmp_path, RUN, "")


def test_a_record_reads_its_flags_safely_and_what_the_run_trained_on(tmp_path):
    record = records.load(copy(tmp_path, RUN, flags=["not", "a", "mapping"], config_sha256="c",
                               dataset_sha256={"train.jsonl": "d"}))
    assert record.flags == {} and not record.rented
    assert record.trained_on == {"train.jsonl": "d", "config.original.yml": "c"}
    assert records.load(tmp_path / "absent") is None


class Engine:
    """A fixture engine that holds no run: `resume` falls through to the copies in OUT."""

    url = "unix:///fixture"

    def find(self, ref: str):
        return None


def test_resume_takes_a_rented_run_to_a_new_box_without_asking_the_engine(tmp_path, monkeypatch):
    partial = copy(tmp_path, f"{RUN}.partial", complete=False, flags={"on": {"provider": "runpod"}})
    asked = []

    def resume_on(record, out_dir, stop_timeout):
        asked.append((record.folder, out_dir, stop_timeout))
        yield Note("resumed on a fixture box")

    monkeypatch.setattr(runs.rented, "resume_on", resume_on)
    monkeypatch.setattr(runs.Engine, "connect", lambda host: pytest.fail("the engine was asked"))
    assert [e.text for e in runs.resume(None, RUN[:10], tmp_path, 7)] == ["resumed on a fixture box"]
    assert asked == [(partial, tmp_path, 7)]


def test_resume_refuses_a_run_already_copied_home_finished(tmp_path, monkeypatch):
    copy(tmp_path, f"{RUN}.partial", complete=False, flags={"on": {"provider": "runpod"}})
    copy(tmp_path, RUN, complete=True)
    monkeypatch.setattr(runs.rented, "resume_on", lambda *a: pytest.fail("resumed a finished run"))
    with pytest.raises(ChatlikeError, match=f"run {RUN} already ended and was copied to"):
        list(runs.resume(None, RUN, tmp_path))


@pytest.mark.parametrize(("partials", "message"), [
    ([], f"no stopped run '{RUN}' on the engine or in"),
    (["{not json"], "manifest.json is unreadable or not a run's manifest; cannot resume from it"),
    (['{"run_id": "%s", "flags": {}}' % RUN], "is not a whole manifest of a run; cannot resume from it"),
])
def test_resume_with_nothing_to_resume_from_says_which(tmp_path, monkeypatch, partials, message):
    for text in partials:
        (tmp_path / f"{RUN}.partial").mkdir()
        (tmp_path / f"{RUN}.partial" / "manifest.json").write_text(text)
    monkeypatch.setattr(runs.Engine, "connect", lambda host: Engine())
    with pytest.raises(ChatlikeError, match=message):
        list(runs.resume(None, RUN, tmp_path))


def test_a_run_with_a_rented_box_goes_there_and_never_to_the_engine(tmp_path, monkeypatch):
    from chatlike_runner.plan import build_plan
    from chatlike_runner.skytask import rented

    (tmp_path / "train.jsonl").write_text("{}\n")
    (tmp_path / "config.yml").write_text("base_model: m\ndatasets:\n  - path: train.jsonl\n    type: chat_template\n")
    plan = build_plan(tmp_path / "config.yml", image="ghcr.io/you/t@sha256:" + "0" * 64, environ={})
    where, asked = rented("runpod"), []

    def start_on(plan, where, **options):
        asked.append((where.provider, plan.image, options))
        yield Note("on a fixture box")

    monkeypatch.setattr(runs.rented, "start_on", start_on)
    monkeypatch.setattr(runs.preflight, "engine_check", lambda host: pytest.fail("the engine was asked"))
    assert [e.text for e in runs.start(plan, 9, {"a": "b"}, where=where, dry_run=True)] == ["on a fixture box"]
    assert asked == [("runpod", plan.image, {"dry_run": True, "stop_timeout": 9, "expected": {"a": "b"}})]
