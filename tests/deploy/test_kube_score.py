"""kube-score over every rendering: no CRITICAL finding. An exception is a `kube-score/ignore`
annotation on the object, with a comment saying why, so it is reviewed where it is made."""

from __future__ import annotations

import subprocess

import pytest

from tests.deploy.cluster import Tools
from tests.deploy.render import OVERLAYS, Rendering


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_critical_findings(tools: Tools, renderings: dict[str, Rendering], overlay: str) -> None:
    proc = subprocess.run(
        [
            str(tools.kube_score),
            "score",
            "--output-format",
            "ci",
            # Exception for every workload: images are pinned to tags (never `latest`, asserted
            # in test_manifests), and kind users side-load them (docs/kubernetes.md), which `Always` would
            # send to a registry to pull. Per-object exceptions are kube-score/ignore annotations.
            "--ignore-test",
            "container-image-pull-policy",
            "-",
        ],
        input=renderings[overlay].text,
        capture_output=True,
        text=True,
        timeout=120,
    )
    critical = [line for line in proc.stdout.splitlines() if line.startswith("[CRITICAL]")]
    print(proc.stdout)
    assert proc.stdout.strip(), proc.stderr
    assert not critical, "\n".join(critical)
