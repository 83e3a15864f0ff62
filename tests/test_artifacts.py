"""Staging and collecting without an engine: tar streams in and out, atomic publishing."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from conftest import need

from chatlike_runner.core import constants as c
from chatlike_runner.artifacts import destination, publish
from chatlike_runner.core.errors import ChatlikeError
from chatlike_runner.parsing import parse_gpus
from chatlike_runner.plan import JobPlan, build_plan
from chatlike_runner.stage import input_archive, job_archive, staged_configs
from chatlike_runner.core.unpack import Unpacker, unpack


def tar_bytes(members: list[tuple[str, bytes | None]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def pieces(data: bytes, size: int):
    return iter([data[i : i + size] for i in range(0, len(data), size)])


@pytest.mark.parametrize("piece", [1, 7, 512, 32 * 1024])
@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_unpack_any_split(tmp_path, piece, fmt):
    long_name = "output/" + "deep/" * 30 + "adapter_model.safetensors"  # needs pax or GNU long names
    members = [("output", None), ("output/checkpoint-1", None), ("output/checkpoint-1/state.json", b"{}"),
               ("output/empty", b""), ("output/a.bin", bytes(range(256)) * 41)]
    if fmt != tarfile.USTAR_FORMAT:
        members.append((long_name, b"weights"))
    files = unpack(pieces(tar_bytes(members, fmt), piece), tmp_path)
    assert (tmp_path / "checkpoint-1" / "state.json").read_bytes() == b"{}"
    assert (tmp_path / "a.bin").read_bytes() == bytes(range(256)) * 41
    assert (tmp_path / "empty").read_bytes() == b""
    assert {"path": "a.bin", "size": 256 * 41} in files
    if fmt != tarfile.USTAR_FORMAT:
        assert (tmp_path / long_name.partition("/")[2]).read_bytes() == b"weights"


def test_unpack_refuses_to_leave_its_folder(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        link = tarfile.TarInfo("output/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(link)
        for name in ("output/../../escape", "/etc/evil", "output/link/evil", "output/ok"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    files = unpack(iter([buffer.getvalue()]), dest)
    assert [f["path"] for f in files] == ["link/evil", "ok"]
    assert not (dest / "link").is_symlink()
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["dest", "dest/link", "dest/link/evil", "dest/ok"]


def test_a_truncated_stream_is_an_error(tmp_path):
    data = tar_bytes([("output/big", b"z" * 5000)])
    with pytest.raises(ChatlikeError, match="middle of a file"):
        unpack(iter([data[:3000]]), tmp_path)
    with pytest.raises(ChatlikeError, match="malformed"):
        with Unpacker(tmp_path) as unpacker:
            unpacker.feed(b"\1" * 512)


def test_staged_archive_holds_config_data_and_their_sums(workdir):
    plan = build_plan(workdir / "config.yml", environ={})
    digests: dict[str, str] = {}
    data = b"".join(input_archive(plan, digests))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        sums = tar.extractfile(c.INPUT_SUMS).read().decode()
        staged = tar.extractfile("data/train.jsonl").read()
    assert names == [c.CONFIG_NAME, c.ORIGINAL_CONFIG_NAME, "data", "data/train.jsonl", c.INPUT_SUMS]
    assert staged == (workdir / "data" / "train.jsonl").read_bytes()
    expected = hashlib.sha256(staged).hexdigest()
    assert digests["data/train.jsonl"] == expected and f"{expected}  data/train.jsonl" in sums

    # What collect keeps of a run this process staged is rebuilt, not read back: the same bytes as staged...
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert staged_configs(plan, digests) == {name: tar.extractfile(name).read()
                                                 for name in (c.CONFIG_NAME, c.ORIGINAL_CONFIG_NAME, c.INPUT_SUMS)}
    # ...unless the config changed on disk since: then the engine's copy is read instead.
    (workdir / "config.yml").write_text((workdir / "config.yml").read_text() + "# edited\n")
    assert staged_configs(plan, digests) is None


def test_a_jobs_archive_holds_the_run_without_checkpoints_and_the_heldout_set(tmp_path):
    run_dir = tmp_path / "20261130-000000-abcd"
    for name in ("adapter_model.safetensors", "train-config.yml", "logs/train.log", "checkpoint-5/optimizer.pt",
                 "eval/report.json", ".eval.x.incoming/report.json"):
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text(name)
    (tmp_path / "heldout.jsonl").write_text('{"messages": []}\n')
    plan = JobPlan(run_id=run_dir.name, kind="eval", stamp="1", image="i", host=None, run_dir=run_dir,
                   heldout=tmp_path / "heldout.jsonl", gpus=parse_gpus("none"), env_names=())
    with tarfile.open(fileobj=io.BytesIO(b"".join(job_archive(plan, {})))) as tar:
        names = tar.getnames()
        assert tar.extractfile("data/heldout.jsonl").read() == b'{"messages": []}\n'
    assert names == ["run", "run/adapter_model.safetensors", "run/logs", "run/logs/train.log", "run/train-config.yml",
                     "data", "data/heldout.jsonl", c.INPUT_SUMS]


def test_an_eval_s_archive_holds_the_run_s_training_data_files_and_folders(tmp_path):
    run_dir = tmp_path / "20261130-000000-abcd"
    (run_dir / "logs").mkdir(parents=True)
    (tmp_path / "train.jsonl").write_text('{"messages": [1]}\n')
    (tmp_path / "more" / "part").mkdir(parents=True)
    (tmp_path / "more" / "part" / "b.jsonl").write_text('{"messages": [2]}\n')
    plan = JobPlan(run_id=run_dir.name, kind="eval", stamp="1", image="i", host=None, run_dir=run_dir, heldout=None,
                   gpus=parse_gpus("none"), env_names=(), training=(tmp_path / "train.jsonl", tmp_path / "more"))
    with tarfile.open(fileobj=io.BytesIO(b"".join(job_archive(plan, {})))) as tar:
        names = tar.getnames()
        assert tar.extractfile(f"{c.JOB_TRAINING}/1-more/part/b.jsonl").read() == b'{"messages": [2]}\n'
    assert names == ["run", "run/logs", "data", c.JOB_TRAINING, f"{c.JOB_TRAINING}/0-train.jsonl",
                     f"{c.JOB_TRAINING}/1-more", f"{c.JOB_TRAINING}/1-more/part", f"{c.JOB_TRAINING}/1-more/part/b.jsonl",
                     c.INPUT_SUMS]


def test_eval_uses_the_run_s_training_data_only_as_it_trained_on_it(tmp_path):
    from chatlike_runner.jobs import training_of

    data = tmp_path / "train.jsonl"
    data.write_text("{}\n")
    digest = hashlib.sha256(b"{}\n").hexdigest()
    manifest = {"flags": {"data": [str(data)]}, "dataset_sha256": {"data/train.jsonl": digest}}
    assert training_of(manifest) == ((data,), None)
    data.write_text("{}\n{}\n")
    assert training_of(manifest) == ((), f"the run's training data {data} changed since the run")
    data.unlink()
    assert training_of(manifest) == ((), f"the run's training data {data} is not there any more")
    assert training_of({"flags": {}}) == ((), "the run's manifest names no training data")


def test_staging_a_folder_keeps_its_tree(workdir):
    folder = workdir / "dataset"
    (folder / "part").mkdir(parents=True)
    (folder / "part" / "a.jsonl").write_text("{}\n")
    plan = build_plan(workdir / "config.yml", data=folder, environ={})
    digests: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(b"".join(input_archive(plan, digests)))) as tar:
        assert "data/dataset/part/a.jsonl" in tar.getnames()
    assert "data/dataset/part/a.jsonl" in digests


def _fill(files: dict[str, bytes]):
    def fill(tmp: Path) -> dict:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        return {"run_id": "r1"}

    return fill


def test_publish_is_atomic_and_never_replaces_a_finished_run(tmp_path):
    final = publish(tmp_path, "r1", True, _fill({"adapter": b"1"}))
    assert final == tmp_path / "r1" and json.loads((final / "manifest.json").read_text()) == {"run_id": "r1"}
    with pytest.raises(ChatlikeError, match="already exists"):
        publish(tmp_path, "r1", True, _fill({"adapter": b"2"}))
    assert (final / "adapter").read_bytes() == b"1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r1"]


def test_snapshots_are_replaced_then_removed_by_the_finished_run(tmp_path):
    publish(tmp_path, "r2", False, _fill({"adapter": b"old"}))
    partial = publish(tmp_path, "r2", False, _fill({"adapter": b"new"}))
    assert partial == destination(tmp_path, "r2", False) and (partial / "adapter").read_bytes() == b"new"
    publish(tmp_path, "r2", True, _fill({"adapter": b"done"}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r2"]


def test_a_full_disk_publishes_nothing(tmp_path):
    def fill(tmp: Path) -> dict:
        (tmp / "half").write_bytes(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(ChatlikeError, match="no space left .* nothing was published"):
        publish(tmp_path, "r3", True, fill)
    assert list(tmp_path.iterdir()) == []


def test_under_sudo_the_copy_belongs_to_the_invoking_user(tmp_path, monkeypatch):
    import os

    if os.geteuid() != 0:
        need("handing files to another user needs root, as under sudo")
    monkeypatch.setenv("SUDO_UID", "4321")
    monkeypatch.setenv("SUDO_GID", "4322")
    final = publish(tmp_path, "r4", True, _fill({"adapter": b"1"}))
    for path in (final, final / "adapter", final / "manifest.json"):
        assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4322)


EXPECTED_COPY = [{"path": "a.txt", "size": 3}, {"path": "sub/b.bin", "size": 1}]


@pytest.fixture
def output_with_links(docker_client, tmp_path):
    """A stopped container, as a run, whose output volume at /o holds two files, two links out and a fifo."""
    def make(image: str) -> tuple[str, str]:
        run_id = "copy-" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]
        volume = docker_client.volumes.create(f"chatlike-{run_id}-output", labels={c.LABEL_RUN: run_id})
        script = ("mkdir -p /o/sub && echo hi > /o/a.txt && printf x > /o/sub/b.bin && chmod 755 /o/sub/b.bin "
                  "&& ln -s /etc/passwd /o/leak && ln -s /etc /o/sub/etc && mkfifo /o/fifo")
        container = docker_client.containers.run(image, ["sh", "-c", script], entrypoint=[], user="0", detach=True,
                                                 labels={c.LABEL_RUN: run_id}, volumes={volume.name: {"bind": "/o"}})
        made.append((container, volume))
        assert container.wait()["StatusCode"] == 0
        return container.id, volume.name

    made: list = []
    yield make
    for container, volume in made:
        container.remove(force=True)
        volume.remove(force=True)


def _same_tree(folder: Path) -> None:
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == ["a.txt", "sub", "sub/b.bin"]
    assert stat.S_IMODE((folder / "sub" / "b.bin").stat().st_mode) == 0o755
    assert (folder / "a.txt").read_text() == "hi\n"


@pytest.mark.engine
def test_a_local_volume_copies_from_its_folder_like_the_archive_and_never_follows_links(output_with_links,
                                                                                          standin_image, tmp_path):
    """As root on a local engine the outputs are copied from the volume's folder by the kernel: the same files,
    sizes and modes as unpacking the engine's archive, and neither way follows a link or copies a fifo."""
    from chatlike_runner.collect import copy_outputs
    from chatlike_runner.engine import Engine

    if os.geteuid() != 0:
        need("reading a volume's folder needs root")
    container_id, volume = output_with_links(standin_image)
    engine = Engine.connect(None)
    run = engine.container(container_id)
    assert engine.volume_folder(volume) is not None
    fast = copy_outputs(engine, run, tmp_path / "fast")
    slow = unpack(engine.archive(run, "/o"), tmp_path / "slow")
    assert fast == EXPECTED_COPY and sorted(slow, key=lambda f: f["path"]) == EXPECTED_COPY
    _same_tree(tmp_path / "fast")
    _same_tree(tmp_path / "slow")


# As another user: the archive path must not be taken (it would give the same files, only slower).
COPY_AS_USER = """
import json, sys
from pathlib import Path
from chatlike_runner import collect
from chatlike_runner.engine import Engine
def no_archive(*args): raise AssertionError("the archive path was taken")
collect.unpack = no_archive
engine = Engine.connect(None)
assert engine.volume_folder(sys.argv[2]) is None, "this user reads the engine's volume folders"
print(json.dumps(collect.copy_outputs(engine, engine.container(sys.argv[1]), Path(sys.argv[3]))))
"""


@pytest.mark.engine
def test_an_ordinary_user_copies_through_a_container_of_the_image_as_itself(output_with_links, cpu_image, other_user,
                                                                           shared_tmp, docker_client):
    """A member of the docker group may not read the engine's volume folders: a short-lived container of the
    run's image copies the volume into the hidden folder as that user, at disk speed; links and fifos stay out."""
    import subprocess
    import sys

    from conftest import as_user

    container_id, volume = output_with_links(cpu_image)
    home = shared_tmp
    done = subprocess.run(as_user(other_user, sys.executable, "-c", COPY_AS_USER, container_id, volume,
                                  str(home / ".copy")), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == EXPECTED_COPY
    _same_tree(home / ".copy")
    assert {(p.stat().st_uid, p.stat().st_gid) for p in (home / ".copy").rglob("*")} == {other_user[:2]}
    run_id = docker_client.containers.get(container_id).labels[c.LABEL_RUN]
    assert not docker_client.containers.list(all=True, filters={"label": [f"{c.LABEL_RUN}={run_id}",
                                                                          f"{c.LABEL_ROLE}={c.ROLE_COPY}"]})
