"""The cluster itself: `up` prepares the host and starts a detached daemon that runs every
component under sagascope's supervisor; `down` stops the daemon and removes all it made.

The daemon (`python -m tools.k8s_cluster daemon`) has its own session, a pid file and a log in the
state directory. It starts containerd, etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, the kubelet, kube-proxy and kube-router in that order (each waited for through its
health check), imports the cluster's images, deploys CoreDNS, waits for the node to be Ready and
DNS to answer, then writes `ready` to its status file — what `up` waits for. On SIGTERM it stops
them in reverse, removing the Pods' containers while containerd still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sagascope.local.supervisor import HealthCheck, ManagedProcess, Supervisor, http_health, signalled
from tools.k8s_cluster import cni, containerd, dns, images, node, teardown, volumes
from tools.k8s_cluster.control_plane import (
    apiserver_command,
    controller_manager_command,
    etcd_command,
    write_kubeconfig,
)
from tools.k8s_cluster.health import containerd_health, https_health, iptables_chain
from tools.k8s_cluster.layout import REPO, Layout
from tools.k8s_cluster.pki import Pki, make_pki
from tools.k8s_cluster.versions import Binaries, binaries

READY, STARTING = "ready", "starting"


def _say(message: str) -> None:
    print(f"[k8s {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _pki(layout: Layout) -> Pki:
    d = layout.pki
    return Pki(d / "ca.crt", d / "server.crt", d / "server.key", d / "admin.crt", d / "admin.key",
               d / "sa.pub", d / "sa.key")


def kubectl(layout: Layout, bins: Binaries, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(bins.kubectl), "--kubeconfig", str(layout.kubeconfig), *args], input=stdin,
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


# --- the processes -------------------------------------------------------------------------------


def supervisor(layout: Layout, bins: Binaries) -> Supervisor:
    """Every host process of the cluster, in start order."""
    pki, ports, net = _pki(layout), layout.ports, layout.network
    logs, env = layout.logs, dict(os.environ)
    sup = Supervisor(cwd=layout.state, say=_say)

    def add(name: str, command: list[str], health: HealthCheck) -> None:
        sup.add(ManagedProcess(name, command, env, logs / f"{name}.log", health=health))

    add("containerd", ["containerd", "--config", str(layout.containerd_config)],
        containerd_health(layout.containerd_socket))
    add("etcd", etcd_command(bins.etcd, layout.etcd_data, ports.etcd_client, ports.etcd_peer),
        http_health(f"{layout.etcd_url}/health"))
    add(
        "kube-apiserver",
        apiserver_command(
            bins.kube_apiserver,
            etcd_url=layout.etcd_url,
            address=net.node_ip,
            port=ports.apiserver,
            cert_dir=layout.state / "apiserver-certs",
            pki=pki,
            service_cidr=net.service_cidr,
            extra=(
                # logs, exec and port-forward: the API server reaches the kubelet by the node address,
                # authenticating with the admin certificate the kubelet's CA check accepts.
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={pki.admin_cert}",
                f"--kubelet-client-key={pki.admin_key}",
            ),
        ),
        https_health(f"{layout.api_server}/readyz", pki),
    )
    add(
        "kube-controller-manager",
        controller_manager_command(
            bins.kube_controller_manager,
            kubeconfig=layout.kubeconfig,
            port=ports.controller_manager,
            cert_dir=layout.state / "kcm-certs",
            pki=pki,
            extra=(
                "--allocate-node-cidrs=true",  # the node's podCIDR, which kube-router reads
                f"--cluster-cidr={net.cluster_cidr}",
                f"--node-cidr-mask-size={net.node_prefix}",
                f"--service-cluster-ip-range={net.service_cidr}",
            ),
        ),
        https_health(f"https://127.0.0.1:{ports.controller_manager}/healthz"),
    )
    add(
        "kube-scheduler",
        [
            str(bins.kube_scheduler),
            f"--kubeconfig={layout.kubeconfig}",
            f"--authentication-kubeconfig={layout.kubeconfig}",
            f"--authorization-kubeconfig={layout.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.scheduler}",
            "--leader-elect=false",
            "--v=1",
        ],
        https_health(f"https://127.0.0.1:{ports.scheduler}/healthz"),
    )
    add("kubelet", node.kubelet_command(layout, bins.kubelet),
        http_health(f"http://127.0.0.1:{ports.kubelet_healthz}/healthz"))
    add("kube-proxy", node.kube_proxy_command(layout, bins.kube_proxy),
        http_health(f"http://127.0.0.1:{ports.kube_proxy_healthz}/healthz"))
    add(
        "kube-router",
        [
            str(bins.kube_router),
            f"--kubeconfig={layout.kubeconfig}",
            f"--hostname-override={layout.node_name}",
            "--run-firewall=true",
            "--run-router=false",
            "--run-service-proxy=false",
            "--enable-cni=false",
            f"--service-cluster-ip-range={net.service_cidr}",
            "--health-port=0",  # it would listen on every interface; its chain says it is up
            "--metrics-port=0",
            "--v=1",
        ],
        iptables_chain("filter", "KUBE-ROUTER-INPUT"),
    )
    return sup


# --- the daemon ----------------------------------------------------------------------------------


def _status(layout: Layout, text: str) -> None:
    layout.status_file.write_text(text + "\n")
    _say(f"status: {text}")


def _record_children(layout: Layout, sup: Supervisor) -> None:
    children = {name: p.pid for name, p in sup.processes.items() if p.pid}
    layout.children_file.write_text(json.dumps(children))


def _remove_pod_containers(layout: Layout) -> None:
    """Kill and delete every task and container in the CRI namespace (the kubelet is stopped, so
    nothing recreates them); containerd's shims exit with their last container."""
    with contextlib.suppress(RuntimeError):
        for line in images.ctr(layout, "tasks", "list", "-q").split():
            with contextlib.suppress(RuntimeError):
                images.ctr(layout, "tasks", "kill", "-s", "SIGKILL", line)
        time.sleep(1)
        for line in images.ctr(layout, "tasks", "list", "-q").split():
            with contextlib.suppress(RuntimeError):
                images.ctr(layout, "tasks", "delete", "-f", line)
        for line in images.ctr(layout, "containers", "list", "-q").split():
            with contextlib.suppress(RuntimeError):
                images.ctr(layout, "containers", "delete", line)


def _node_ready(layout: Layout, bins: Binaries) -> bool:
    proc = kubectl(layout, bins, "get", "node", layout.node_name, "-o",
                   "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
    return proc.stdout.strip() == "True"


async def _wait(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(1)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


async def _bring_up(layout: Layout, bins: Binaries, sup: Supervisor) -> None:
    await sup.start(["containerd"], timeout=60)
    pause = images.pause_image(layout)
    coredns = images.coredns_image(layout, bins.coredns)
    await asyncio.to_thread(images.import_images, layout, [pause, coredns])
    _say(f"images in containerd: {pause.name}, {coredns.name}")
    await sup.start(["etcd"], timeout=60)
    await sup.start(["kube-apiserver"], timeout=180)
    await sup.start(["kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"], timeout=120)
    _record_children(layout, sup)
    await _wait(f"node {layout.node_name} Ready", lambda: _node_ready(layout, bins), 180)
    await sup.start(["kube-router"], timeout=120)
    _record_children(layout, sup)
    kubectl(layout, bins, "apply", "-f", "-", stdin=volumes.storage_class())
    kubectl(layout, bins, "apply", "-f", "-", stdin=dns.manifests(layout, coredns.name))
    await _wait("CoreDNS Available", lambda: kubectl(
        layout, bins, "-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=5s",
        check=False).returncode == 0, 240)
    name = f"kubernetes.default.svc.{layout.network.cluster_domain}"
    await _wait(f"CoreDNS answering {name}",
                lambda: dns.resolve(layout.network.dns_service_ip, name) == [layout.network.kubernetes_service_ip], 60)


async def _daemon(layout: Layout) -> int:
    bins = binaries()
    sup = supervisor(layout, bins)
    stop = signalled()
    try:
        _status(layout, STARTING)
        bring_up = asyncio.create_task(_bring_up(layout, bins, sup))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({bring_up, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not bring_up.done():  # `down` while starting: stop where it got to
            bring_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await bring_up
            return 0
        bring_up.result()
        _status(layout, READY)

        def run_kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return kubectl(layout, bins, *args, stdin=stdin)

        while not stop.is_set():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                for claim in await asyncio.to_thread(volumes.provision, layout, run_kubectl):
                    _say(f"provisioned a hostPath volume for {claim}")
            dead = [name for name, p in sup.processes.items() if p.process is not None and not p.running]
            if dead:
                _status(layout, f"failed: {', '.join(dead)} exited (logs in {layout.logs})")
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5)  # each round runs kubectl once: CPU is scarce
        await stop.wait()
        return 0
    except BaseException as exc:
        _status(layout, f"failed: {exc}")
        raise
    finally:
        _say("stopping")
        await sup.stop([n for n in sup.processes if n != "containerd"])
        if sup.processes["containerd"].running:
            await asyncio.to_thread(_remove_pod_containers, layout)
        await sup.stop(["containerd"])
        _status(layout, "stopped")


def daemon(layout: Layout) -> int:
    layout.pid_file.write_text(str(os.getpid()))
    try:
        return asyncio.run(_daemon(layout))
    finally:
        layout.pid_file.unlink(missing_ok=True)


# --- the commands --------------------------------------------------------------------------------


def running(layout: Layout) -> int | None:
    """The daemon's pid if it runs."""
    try:
        pid = int(layout.pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"tools.k8s_cluster" in cmdline else None


def status_text(layout: Layout) -> str:
    try:
        return layout.status_file.read_text().strip()
    except OSError:
        return "down"


def _prepare(layout: Layout) -> None:
    """Host and files before the daemon starts: certificates, configs, the bridge, the images."""
    for d in (layout.state, layout.run, layout.logs):
        d.mkdir(parents=True, exist_ok=True)
    if not layout.host_file.exists():
        layout.host_file.write_text(json.dumps(teardown.host_settings()))
    net = layout.network
    pki = make_pki(layout.pki, server_ips=(net.node_ip, net.kubernetes_service_ip), days=30)
    write_kubeconfig(layout.kubeconfig, layout.api_server, pki)
    pause = images.pause_image(layout)  # built here (foreground) so a build failure is seen at once
    containerd.write(layout, pause.name)
    cni.write(layout)
    cni.create_bridge(layout)
    node.write(layout, pki.ca_cert)


def up(layout: Layout, timeout: float = 900.0) -> int:
    if running(layout):
        if status_text(layout) == READY:
            print(f"the cluster is already up\nexport KUBECONFIG={layout.kubeconfig}")
            return 0
    elif teardown.leftovers(layout):
        _say("a previous cluster did not stop cleanly; removing what it left")
        teardown.clean(layout, teardown.read_host(layout))
    started = time.monotonic()
    if not running(layout):
        _say("building or finding the binaries (cached by version in $SAGASCOPE_CACHE)")
        bins = binaries()
        images.coredns_image(layout, bins.coredns)
        _prepare(layout)
        layout.status_file.write_text(STARTING + "\n")
        log = (layout.logs / "daemon.log").open("ab")
        subprocess.Popen([sys.executable, "-m", "tools.k8s_cluster", "daemon"], cwd=REPO, stdin=subprocess.DEVNULL,
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    shown = 0
    daemon_log = layout.logs / "daemon.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = daemon_log.read_text(errors="replace") if daemon_log.exists() else ""
        print(text[shown:], end="", flush=True)
        shown = len(text)
        state = status_text(layout)
        if state == READY:
            print(f"[k8s] up in {time.monotonic() - started:.0f}s; kubeconfig {layout.kubeconfig}\n"
                  f"export KUBECONFIG={layout.kubeconfig}")
            return 0
        if state.startswith("failed") or (state != STARTING and not running(layout)):
            print(f"[k8s] the cluster did not come up: {state}; `make k8s-down` removes what it made",
                  file=sys.stderr)
            return 1
        time.sleep(1)
    print(f"[k8s] not ready within {timeout:.0f}s (status {status_text(layout)})", file=sys.stderr)
    return 1


def down(layout: Layout) -> int:
    started = time.monotonic()
    host = teardown.read_host(layout)
    if teardown.stop_daemon(layout):
        _say("the daemon stopped its components")
    teardown.clean(layout, host)
    left = teardown.leftovers(layout, host)
    if left:
        print("[k8s] left behind after down:\n  " + "\n  ".join(left), file=sys.stderr)
        return 1
    _say(f"down in {time.monotonic() - started:.0f}s; nothing left behind")
    return 0


def status(layout: Layout) -> int:
    pid = running(layout)
    print(f"daemon: {'pid ' + str(pid) if pid else 'not running'}; status: {status_text(layout)}")
    if not pid:
        return 1
    bins = binaries()
    for args in (("get", "nodes", "-o", "wide"), ("get", "pods", "-A", "-o", "wide")):
        proc = kubectl(layout, bins, *args, check=False)
        print(proc.stdout or proc.stderr, end="")
    print(f"export KUBECONFIG={layout.kubeconfig}")
    return 0 if status_text(layout) == READY else 1
