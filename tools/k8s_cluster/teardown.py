"""Remove everything the cluster made, and list what is left (``leftovers``), so `down` can prove
it. Works after a clean stop and after a crash alike: nothing here needs a running component.

What a cluster leaves on a host: processes (its own, containerd's shims and the Pods' in the
kubepods cgroups), mounts (the kubelet root bind-mounted on itself, overlay snapshots, sandbox
/dev/shm, network namespace handles), kubepods cgroups in every v1 hierarchy, network namespaces
with veth pairs to the bridge, the bridge, host-local allocations and libcni's result cache,
iptables/ip6tables chains (kubelet's KUBE-FIREWALL/-KUBELET-CANARY/-IPTABLES-HINT, kube-proxy's
KUBE-SERVICES..., kube-router's KUBE-ROUTER-*/KUBE-POD-FW-*/KUBE-NWPLCY-*, portmap's CNI-*) and the
rules in built-in chains that jump to them, kube-router's ipsets, conntrack entries of the Pods'
addresses, and the sysctls the bridge plugin changed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tools.k8s_cluster.layout import Layout

TABLES = ("filter", "nat", "mangle", "raw")
OUR_CHAIN = re.compile(r"^(KUBE-|CNI-|SAGASCOPE-K8S)")
OUR_IPSET = re.compile(r"^(inet6:)?(KUBE-|kube-router)", re.IGNORECASE)
CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/run/netns")
CNI_RESULTS = Path("/var/lib/cni/results")
PROGRAM = re.compile(r"^(containerd|containerd-shim.*|runc|etcd|kube-.*|kubelet|coredns|pause)$")
# Directories a cluster creates outside its own whatever it is told: the kubelet's Pod logs, its
# device-plugin socket (/var/lib/kubelet/device-plugins is fixed), libcni's result cache, and
# containerd 1.6's shim sockets (/run/containerd/s is fixed). Removed by `down` unless they existed.
HOST_DIRS = tuple(Path(d) for d in ("/var/log/pods", "/var/log/containers", "/var/lib/kubelet", "/var/lib/cni",
                                    "/run/containerd", "/usr/libexec/kubernetes"))


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True)


# --- processes -----------------------------------------------------------------------------------


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]


def _kubepods_cgroups() -> list[Path]:
    """Every kubepods cgroup directory, deepest first, in every hierarchy (v1 and the unified one)."""
    found: list[Path] = []
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.exists() else []:
        for top in (hierarchy / "kubepods", hierarchy / "kubepods.slice"):
            if top.is_dir():
                found.extend(sorted((Path(d) for d, _, _ in os.walk(top)), key=lambda p: -len(p.parts)))
    return found


def _pod_pids() -> set[int]:
    pids: set[int] = set()
    for cgroup in _kubepods_cgroups():
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (cgroup / "cgroup.procs").read_text().split())
    return pids


def _program(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return ""


def our_processes(layout: Layout) -> dict[int, str]:
    """Processes of this cluster: in a kubepods cgroup, or one of its programs naming the state/run
    directory (every component's command line does, and containerd's shims name its socket). A
    shell or editor that mentions the directory is not ours."""
    marks = (str(layout.state), str(layout.run))
    found = {pid: _cmdline(pid) for pid in _pod_pids()}
    for pid in _pids():
        line = _cmdline(pid)
        if any(mark in line for mark in marks) and PROGRAM.match(_program(pid)):
            found[pid] = line
    return found


def kill_processes(layout: Layout) -> None:
    for _ in range(3):
        procs = our_processes(layout)
        if not procs:
            return
        for pid in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(1)


def stop_daemon(layout: Layout, timeout: float = 180.0) -> bool:
    """SIGTERM the daemon (it stops the components in reverse order) and wait; True if one ran."""
    try:
        pid = int(layout.pid_file.read_text())
    except (OSError, ValueError):
        return False
    if "tools.k8s_cluster" not in _cmdline(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _cmdline(pid):
        time.sleep(0.5)
    if _cmdline(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return True


# --- mounts, namespaces, cgroups -----------------------------------------------------------------


def _mounts() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        points.append(line.split()[4].replace("\\040", " "))
    return points


def our_netns(layout: Layout) -> list[str]:
    """Network namespaces whose interfaces carry a Pod address (containerd names them cni-*)."""
    if not NETNS_DIR.is_dir():
        return []
    pods = ipaddress.ip_network(layout.network.cluster_cidr)
    found = []
    for ns in sorted(NETNS_DIR.iterdir()):
        if not ns.name.startswith("cni-"):
            continue
        out = _run("ip", "-n", ns.name, "-j", "-4", "addr").stdout
        addrs = [a["local"] for link in json.loads(out or "[]") for a in link.get("addr_info", [])]
        # An emptied namespace (its veth already gone) cannot be attributed; one with an
        # interface but no address is a sandbox half made.
        if any(ipaddress.ip_address(a) in pods for a in addrs):
            found.append(ns.name)
    return found


def our_mounts(layout: Layout) -> list[str]:
    marks = (str(layout.state) + "/", str(layout.run) + "/")
    netns = {str(NETNS_DIR / n) for n in our_netns(layout)} | {f"/var/run/netns/{n}" for n in our_netns(layout)}
    return [m for m in _mounts() if m.startswith(marks) or m in (str(layout.state), str(layout.run)) or m in netns]


def unmount(layout: Layout) -> None:
    for _ in range(3):
        points = sorted(set(our_mounts(layout)), key=lambda p: -len(p))
        if not points:
            return
        for point in points:
            _run("umount", "-l", point)


def remove_netns(layout: Layout) -> None:
    for ns in our_netns(layout):
        _run("ip", "netns", "delete", ns)


def remove_cgroups() -> None:
    for _ in range(3):
        for cgroup in _kubepods_cgroups():
            with contextlib.suppress(OSError):
                cgroup.rmdir()
        if not _kubepods_cgroups():
            return
        time.sleep(1)


# --- links ---------------------------------------------------------------------------------------


def our_links(layout: Layout) -> list[str]:
    """The bridge and any interface still enslaved to it."""
    bridge = layout.network.bridge
    links = json.loads(_run("ip", "-j", "link", "show").stdout or "[]")
    return [link["ifname"] for link in links if link["ifname"] == bridge or link.get("master") == bridge]


def remove_links(layout: Layout) -> None:
    for name in sorted(our_links(layout), key=lambda n: n == layout.network.bridge):  # the bridge last
        _run("ip", "link", "delete", name)


# --- iptables, ipsets, conntrack -----------------------------------------------------------------


def _save(tool: str, table: str) -> list[str]:
    proc = _run(f"{tool}-save", "-t", table)
    return proc.stdout.splitlines() if proc.returncode == 0 else []


def our_chains(tool: str = "iptables") -> list[tuple[str, str]]:
    """(table, chain) of every chain this cluster's components make."""
    found = []
    for table in TABLES:
        for line in _save(tool, table):
            if line.startswith(":") and OUR_CHAIN.match(line[1:]):
                found.append((table, line[1:].split()[0]))
    return found


def _jumps_to_ours(rule: list[str]) -> bool:
    for flag in ("-j", "-g"):
        if flag in rule:
            i = rule.index(flag)
            if i + 1 < len(rule) and OUR_CHAIN.match(rule[i + 1]):
                return True
    return False


def _kube_router_accept(rule: list[str]) -> bool:
    """kube-router's ACCEPT of policy-marked packets, which it puts straight into built-in chains."""
    text = " ".join(rule)
    return "kube-router" in text or ("--mark 0x20000/0x20000" in text and "ACCEPT" in rule)


def remove_chains() -> None:
    for tool in ("iptables", "ip6tables"):
        for table in TABLES:
            lines = _save(tool, table)
            ours = {line[1:].split()[0] for line in lines if line.startswith(":") and OUR_CHAIN.match(line[1:])}
            for line in lines:
                if not line.startswith("-A "):
                    continue
                rule = shlex.split(line)
                if rule[1] not in ours and (_jumps_to_ours(rule) or _kube_router_accept(rule)):
                    _run(tool, "-t", table, "-D", *rule[1:])
            for chain in ours:
                _run(tool, "-t", table, "-F", chain)
            for chain in ours:
                _run(tool, "-t", table, "-X", chain)


def our_ipsets() -> list[str]:
    return [s for s in _run("ipset", "list", "-n").stdout.split() if OUR_IPSET.match(s)]


def remove_ipsets() -> None:
    for name in our_ipsets():
        _run("ipset", "destroy", name)


def conntrack_entries(layout: Layout) -> int:
    count = 0
    for flag in ("-s", "-d"):
        for cidr in (layout.network.cluster_cidr, layout.network.service_cidr):
            out = _run("conntrack", "-L", flag, cidr).stdout
            count += sum(1 for line in out.splitlines() if line.strip())
    return count


def flush_conntrack(layout: Layout) -> None:
    for flag in ("-s", "-d"):
        for cidr in (layout.network.cluster_cidr, layout.network.service_cidr):
            _run("conntrack", "-D", flag, cidr)


# --- files and host settings ---------------------------------------------------------------------


def _cni_results(layout: Layout) -> list[Path]:
    if not CNI_RESULTS.is_dir():
        return []
    # Ours: the bridge network's results and containerd's loopback ones (its network "cni-loopback").
    prefixes = (layout.network.cni_name + "-", "cni-loopback-")
    return [p for p in CNI_RESULTS.iterdir() if p.name.startswith(prefixes)]


def host_settings() -> dict[str, object]:
    """What `up` changes on the host, as found before: restored by `down`."""
    return {
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
        "existing_dirs": [str(d) for d in HOST_DIRS if d.exists()],
    }


def read_host(layout: Layout) -> dict[str, object]:
    """What `up` recorded about the host before it changed anything ({} if nothing was recorded)."""
    try:
        data: dict[str, object] = json.loads(layout.host_file.read_text())
    except (OSError, ValueError):
        return {}
    return data


def our_files(layout: Layout, host: dict[str, object]) -> list[Path]:
    # Without the record (no `up` ran), those directories are not ours to judge.
    existed = set(host.get("existing_dirs", [])) if host else {str(d) for d in HOST_DIRS}  # type: ignore[call-overload]
    made = [d for d in HOST_DIRS if d.exists() and str(d) not in existed]
    return [p for p in (layout.state, layout.run) if p.exists()] + _cni_results(layout) + made


def remove_files(layout: Layout, host: dict[str, object]) -> None:
    if "ip_forward" in host:
        Path("/proc/sys/net/ipv4/ip_forward").write_text(str(host["ip_forward"]))
    for path in our_files(layout, host):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


# --- all of it -----------------------------------------------------------------------------------


def clean(layout: Layout, host: dict[str, object]) -> None:
    """Everything, in the order that lets each step succeed: processes before mounts and
    cgroups, namespaces before links, rules before the chains and sets they name, files last.
    ``host`` is what `up` recorded (`read_host`), read before the state directory goes."""
    kill_processes(layout)
    unmount(layout)
    remove_netns(layout)
    remove_cgroups()
    remove_links(layout)
    remove_chains()
    remove_ipsets()
    flush_conntrack(layout)
    unmount(layout)
    remove_files(layout, host)


def leftovers(layout: Layout, host: dict[str, object] | None = None) -> list[str]:
    """One line per thing this cluster made that is still there; [] after a complete `down`.
    ``host``: what `up` recorded (default: read it from the state directory)."""
    host = read_host(layout) if host is None else host
    found = [f"process {pid}: {line[:160]}" for pid, line in sorted(our_processes(layout).items())]
    found += [f"mount {m}" for m in our_mounts(layout)]
    found += [f"cgroup {c}" for c in _kubepods_cgroups()]
    found += [f"network namespace {n}" for n in our_netns(layout)]
    found += [f"link {link}" for link in our_links(layout)]
    for tool in ("iptables", "ip6tables"):
        found += [f"{tool} chain {t}/{c}" for t, c in our_chains(tool)]
    found += [f"ipset {s}" for s in our_ipsets()]
    entries = conntrack_entries(layout)
    if entries:
        found.append(f"{entries} conntrack entries of {layout.network.cluster_cidr} / {layout.network.service_cidr}")
    found += [f"file {p}" for p in our_files(layout, host)]
    return found
