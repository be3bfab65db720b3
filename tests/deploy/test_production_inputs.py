"""Production renders only from what its user writes: the image by digest (overlays/production/
release.env) and, with the mesh, the external backends' hosts (overlays/production-istio/
backends.env). Without them — or with a tag, which can be moved under running Pods — `kubectl
kustomize` refuses, and its message names what to set."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.cluster import Tools
from tests.deploy.render import APP, K8S, TEST_DIGEST, TEST_INPUTS, Rendering, copy_tree, kustomize, pod_spec

RELEASE = "overlays/production/release.env"
BACKENDS = "overlays/production-istio/backends.env"


@pytest.mark.parametrize("overlay", ["production", "production-istio"])
def test_production_runs_the_released_digest(renderings: dict[str, Rendering], overlay: str) -> None:
    rendering = renderings[overlay]
    for name in APP:
        (c,) = pod_spec(rendering.named("Deployment", name))["containers"]
        assert c["image"] == f"sagascope/service@{TEST_DIGEST}", f"{overlay}: {name}"
    # The inputs are read at render time and applied nowhere.
    names = {o["metadata"]["name"] for o in rendering.of_kind("ConfigMap")}
    assert not names & {"sagascope-release", "sagascope-backends"}, names


def refusal(tools: Tools, tmp_path: Path, overlay: str, **changes: str | None) -> str:
    """Render ``overlay`` from a copy whose inputs are the test's with ``changes`` (None: no file)."""
    inputs = {**TEST_INPUTS, **{path: text for path, text in changes.items() if text is not None}}
    for path in [p for p, text in changes.items() if text is None]:
        del inputs[path]
    proc = kustomize(tools.kubectl, overlay, copy_tree(tmp_path, inputs))
    assert proc.returncode != 0, f"overlays/{overlay} rendered:\n{proc.stdout[:2000]}"
    print(f"kubectl kustomize overlays/{overlay} refused: {proc.stderr.strip()}")
    return proc.stderr


@pytest.mark.parametrize(
    ("release", "named"),
    [
        (None, "release.env"),  # the user wrote nothing
        ((K8S / f"{RELEASE}.example").read_text(), "data.SERVICE_IMAGE"),  # copied, left unset
        ("SERVICE_IMAGE=sagascope/service:dev\n", "sagascope/service:dev"),  # the mutable dev tag
        ("SERVICE_IMAGE=registry.test/sagascope/service:1.4.2\n", "registry.test/sagascope/service:1.4.2"),
    ],
    ids=["missing", "example-unset", "dev-tag", "release-tag"],
)
def test_production_refuses_an_image_without_a_digest(
    tools: Tools, tmp_path: Path, release: str | None, named: str
) -> None:
    stderr = refusal(tools, tmp_path, "production", **{RELEASE: release})
    assert named in stderr


@pytest.mark.parametrize(
    ("backends", "named"),
    [
        (None, "backends.env"),
        ((K8S / f"{BACKENDS}.example").read_text(), "data.POSTGRES_HOST"),
        (
            "\n".join(line for line in TEST_INPUTS[BACKENDS].splitlines() if not line.startswith("MONGODB_HOST")),
            "data.MONGODB_HOST",
        ),
    ],
    ids=["missing", "example-unset", "one-host-unset"],
)
def test_production_istio_refuses_without_its_backends(
    tools: Tools, tmp_path: Path, backends: str | None, named: str
) -> None:
    stderr = refusal(tools, tmp_path, "production-istio", **{BACKENDS: backends})
    assert named in stderr
