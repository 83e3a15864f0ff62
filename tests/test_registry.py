"""`push` to a real registry running on loopback, and a run started from it by digest."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine


def registry_digest(host: str, repository: str, tag: str) -> str:
    request = urllib.request.Request(f"http://{host}/v2/{repository}/manifests/{tag}", method="HEAD", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Docker-Content-Digest"]


def test_push_records_the_digest_and_a_run_pulls_the_image_by_it(cli, workdir, standin_image, registry_host,
                                                                   docker_client, leftovers):
    target = f"{registry_host}/chatlike-test/standin:t1"
    pushed = cli("push", target, "--image", standin_image)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    digest = registry_digest(registry_host, "chatlike-test/standin", "t1")
    ref = f"{registry_host}/chatlike-test/standin@{digest}"
    assert f"pushed {ref}" in pushed.stdout
    state = json.loads((Path(workdir / "home" / ".local" / "state" / "chatlike" / "pushed.json")).read_text())
    assert state["last"]["ref"] == ref and state["last"]["image_id"] == docker_client.images.get(standin_image).id
    docker_client.images.remove(target)  # the engine forgets the registry's name and digest: a run must pull it
    assert ref not in docker_client.images.get(standin_image).attrs["RepoDigests"]

    started = cli("start", "config.yml", "--image", ref)
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"image {ref} is not on" in started.stdout and "pulling it" in started.stdout
    (out,) = (workdir / "outputs").iterdir()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["image"]["ref"] == ref and ref in manifest["image"]["digests"]


@pytest.mark.parametrize(("args", "message"), [
    (["chatlike-test-no-registry:1"], "name the registry and repository"),
    (["localhost:5999/x/y:1", "--image", "chatlike-test/absent:1"], "is not on"),
])
def test_push_bad_input_is_one_line(cli, standin_image, args, message):
    result = cli("push", *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_push_to_an_unreachable_registry_is_one_line(cli, standin_image):
    result = cli("push", "localhost:1/chatlike-test/standin:x", "--image", standin_image)
    assert result.returncode == 2 and "pushing localhost:1/chatlike-test/standin:x" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
