"""`make k8s-down` leaves nothing behind — and the check that says so can see a leftover.

The leftover check (tools/k8s_cluster/teardown.py: ``leftovers``) is proven first: things of the
kinds a cluster leaves (a KUBE- chain in filter and nat, a CNI- chain, a kube-router ipset, the
Pods' bridge) are planted, must each be reported, and must be gone after the teardown's own
removal. Then a whole cluster is started and stopped and nothing may be left. Both need root; the
second needs the cluster's binaries (built by `make k8s-up`) and no cluster already running (it
would be taken down).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tools.k8s_cluster import cluster, teardown
from tools.k8s_cluster.layout import REPO, Layout

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the cluster's teardown needs root")


@pytest.fixture
def layout() -> Layout:
    layout = Layout.default()
    if cluster.running(layout):
        pytest.skip("a cluster is up (make k8s-up); this test would take it down — run it after make k8s-down")
    return layout


def _sh(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True)


def test_the_leftover_check_sees_planted_leftovers_and_the_teardown_removes_them(layout: Layout) -> None:
    planted = {
        "iptables chain filter/KUBE-PLANTED-TEST",
        "iptables chain nat/CNI-PLANTED-TEST",
        "ip6tables chain mangle/KUBE-PLANTED-TEST",
        "ipset KUBE-DST-PLANTEDTEST",
        f"link {layout.network.bridge}",
    }
    assert not planted & set(teardown.leftovers(layout))
    _sh("iptables", "-t", "filter", "-N", "KUBE-PLANTED-TEST")
    _sh("iptables", "-t", "filter", "-I", "OUTPUT", "-j", "KUBE-PLANTED-TEST")  # referenced: must be unhooked
    _sh("iptables", "-t", "nat", "-N", "CNI-PLANTED-TEST")
    _sh("ip6tables", "-t", "mangle", "-N", "KUBE-PLANTED-TEST")
    _sh("ipset", "create", "KUBE-DST-PLANTEDTEST", "hash:ip")
    _sh("ip", "link", "add", layout.network.bridge, "type", "bridge")
    try:
        assert planted <= set(teardown.leftovers(layout))
    finally:
        teardown.remove_chains()
        teardown.remove_ipsets()
        teardown.remove_links(layout)
    assert not planted & set(teardown.leftovers(layout))
    assert "KUBE-PLANTED-TEST" not in subprocess.run(
        ["iptables-save", "-t", "filter"], capture_output=True, text=True
    ).stdout


def test_up_then_down_leaves_nothing(layout: Layout) -> None:
    if os.environ.get("SAGASCOPE_K8S_UPDOWN") != "1":
        pytest.skip("a whole up/down cycle takes minutes: SAGASCOPE_K8S_UPDOWN=1 runs it (.ci/run does)")
    assert not teardown.leftovers(layout), "something was left before the test began"
    up = subprocess.run([sys.executable, "-m", "tools.k8s_cluster", "up"], cwd=REPO, capture_output=True, text=True)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        made = teardown.leftovers(layout)
        # The check is looking at a real cluster: its processes, Pod network and rules are there.
        kinds = {line.split()[0] for line in made}
        assert {"process", "mount", "cgroup", "link", "iptables", "file"} <= kinds, made
    finally:
        down = subprocess.run([sys.executable, "-m", "tools.k8s_cluster", "down"], cwd=REPO, capture_output=True,
                              text=True)
    assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
    assert teardown.leftovers(layout) == []
