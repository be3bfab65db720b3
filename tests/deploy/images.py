"""Running an image built by `make k8s-images` without a cluster: runc on its root filesystem.

The image comes from its cached OCI archive (the list scripts/k8s/build_images.sh writes),
mounted through buildah's storage; runc starts its entrypoint the way the kubelet would under
the manifest's security context — the user, a read-only root, no capabilities, emptyDir-like
tmpfs mounts — in a network namespace of its own (loopback and one unrouted address, POD_IP), so nothing on the host's
fixed ports is touched. Commands (the manifest's probes) run inside it with `runc exec`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("SAGASCOPE_CACHE", Path.home() / ".cache" / "sagascope"))
IMAGES_DIR = CACHE / "images"
INDEX = IMAGES_DIR / "sagascope-images.txt"
BUILDAH_DIR = CACHE / "buildah-images"
# The container's one non-loopback address (TEST-NET-1: documentation only, routed nowhere).
POD_IP = "192.0.2.10"
RUNROOT = os.environ.get("SAGASCOPE_BUILDAH_RUNROOT", "/run/sagascope-images-buildah")


class ImagesUnavailable(Exception):
    """The images (or the tools to run them) are not here; the message says which."""


def archives() -> dict[str, Path]:
    """REF -> archive of the current set, as build_images.sh listed it."""
    if not INDEX.is_file():
        raise ImagesUnavailable(f"{INDEX} is missing: run `make k8s-images`")
    found = dict(line.split(" ", 1) for line in INDEX.read_text().splitlines() if " " in line)
    return {ref: Path(path) for ref, path in found.items() if Path(path).is_file()}


def _buildah(*args: str) -> str:
    cmd = ["buildah", "--root", str(BUILDAH_DIR / "storage"), "--runroot", RUNROOT, "--storage-driver", "vfs", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600).stdout.strip()


@dataclass
class Spec:
    """How a manifest runs the container: user, arguments, environment, writable paths."""

    uid: int
    gid: int
    args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    writable: Sequence[str] = ("/tmp",)
    read_only_root: bool = True
    entrypoint: Sequence[str] | None = None  # the manifest's `command`, when it sets one
    binds: dict[str, Path] = field(default_factory=dict)  # container path -> repo file or folder (read-only)


@dataclass
class Running:
    name: str
    log: Path

    def exec(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runc", "exec", self.name, *cmd], capture_output=True, text=True, timeout=timeout)

    def wait_for(self, *cmd: str, timeout: float = 120, expect: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run cmd until it succeeds (and prints expect), as a readiness probe would."""
        deadline = time.monotonic() + timeout
        while True:
            proc = self.exec(*cmd)
            if proc.returncode == 0 and (expect is None or expect in proc.stdout):
                return proc
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{' '.join(cmd)} never succeeded in {timeout}s: {proc.stdout}{proc.stderr}\n"
                    f"--- container log ---\n{self.output()[-3000:]}"
                )
            time.sleep(1)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def image_config(ref: str) -> dict[str, Any]:
    """The image's OCI config (User, Entrypoint, Cmd, Env, WorkingDir) from its archive."""
    with _container(ref) as (container, _):
        return _config(container)


def _config(container: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(_buildah("inspect", "--type", "container", container))["OCIv1"]["config"]
    return config


@contextmanager
def _container(ref: str) -> Iterator[tuple[str, str]]:
    """A buildah working container of the archived image: (its id, its mounted root filesystem)."""
    for tool in ("buildah", "runc", "ip"):
        if shutil.which(tool) is None:
            raise ImagesUnavailable(f"{tool} is not installed")
    if os.geteuid() != 0:
        raise ImagesUnavailable("running images with runc needs root")
    archive = archives().get(ref)
    if archive is None:
        raise ImagesUnavailable(f"{ref} is not built: run `make k8s-images`")
    container = _buildah(
        "from", "--pull-never", "--name", f"sagascope-img-{uuid.uuid4().hex[:8]}", f"oci-archive:{archive}"
    )
    try:
        yield container, _buildah("mount", container)
    finally:
        _buildah("rm", container)


@contextmanager
def _bundle(ref: str, spec: Spec, workdir: Path) -> Iterator[tuple[str, Path]]:
    """An OCI bundle for runc running ref as the manifest would, in a fresh network namespace."""
    name = f"sagascope-img-{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        container, rootfs = stack.enter_context(_container(ref))
        config = _config(container)
        subprocess.run(["ip", "netns", "add", name], check=True)
        stack.callback(subprocess.run, ["ip", "netns", "delete", name], check=False)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        # and one address that is not loopback, as a Pod has (clients from it are "remote")
        subprocess.run(["ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", f"{POD_IP}/32", "dev", "eth0"], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "eth0", "up"], check=True)

        bundle = workdir / name
        bundle.mkdir()
        subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
        oci = json.loads((bundle / "config.json").read_text())
        env = dict(e.split("=", 1) for e in config.get("Env") or [])
        env.update(spec.env)
        entrypoint = list(spec.entrypoint if spec.entrypoint is not None else config.get("Entrypoint") or [])
        oci["root"] = {"path": rootfs, "readonly": spec.read_only_root}
        oci["process"].update(
            terminal=False,
            args=[*entrypoint, *(spec.args or ([] if spec.entrypoint is not None else config.get("Cmd") or []))],
            env=[f"{k}={v}" for k, v in env.items()],
            cwd=config.get("WorkingDir") or "/",
            user={"uid": spec.uid, "gid": spec.gid, "additionalGids": [spec.gid]},
            capabilities={k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")},
            noNewPrivileges=True,
        )
        owner = f"uid={spec.uid},gid={spec.gid}"
        oci["mounts"] += [
            {
                "destination": path,
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=0775", owner],
            }
            for path in spec.writable
        ] + [
            {"destination": path, "type": "bind", "source": str(source), "options": ["rbind", "ro"]}
            for path, source in spec.binds.items()
        ]
        for ns in oci["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = f"/var/run/netns/{name}"
        (bundle / "config.json").write_text(json.dumps(oci))
        stack.callback(subprocess.run, ["runc", "delete", "--force", name], check=False, capture_output=True)
        yield name, bundle


def run_once(ref: str, spec: Spec, workdir: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the container to completion; its exit code and output."""
    with _bundle(ref, spec, workdir) as (name, bundle):
        return subprocess.run(
            ["runc", "run", "--bundle", str(bundle), name],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@contextmanager
def run_image(ref: str, spec: Spec, workdir: Path) -> Iterator[Running]:
    """Start the image's entrypoint under runc in the background; remove everything on exit."""
    with _bundle(ref, spec, workdir) as (name, bundle):
        log = workdir / f"{name}.log"
        with log.open("wb") as out:
            subprocess.run(
                ["runc", "run", "--detach", "--bundle", str(bundle), name],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                check=True,
                timeout=60,
            )
        yield Running(name, log)
