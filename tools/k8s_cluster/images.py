"""The cluster's own images, built here without a registry: the Pod sandbox (pause, compiled from
k8s.io/kubernetes's build/pause/linux/pause.c) and CoreDNS. Each is a `FROM scratch` image with one
static binary, built with buildah (vfs storage of our own), written as an OCI archive to
$SAGASCOPE_CACHE/images/ (the cache `make k8s-images` uses too) and imported into the cluster's
containerd. A short name would be normalised to docker.io and pulled, so every name is `localhost/…`.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools.k8s_cluster.layout import Layout
from tools.k8s_cluster.versions import env_value


@dataclass(frozen=True)
class Image:
    name: str  # localhost/sagascope/<x>:<tag>
    archive: Path


def _run(argv: list[str], **kwargs: object) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{proc.stderr or proc.stdout}")
    return str(proc.stdout)


def _buildah(layout: Layout, *args: str) -> str:
    store = layout.cache / "buildah-k8s-cluster"
    return _run(
        ["buildah", "--storage-driver", "vfs", "--root", str(store / "root"), "--runroot", str(store / "run"), *args]
    )


def _scratch_image(layout: Layout, name: str, binary: Path, target: str, user: str, archive: Path) -> None:
    """One static ``binary`` as ``target`` in an empty image, run as ``user``, saved to ``archive``."""
    container = _buildah(layout, "from", "scratch").strip()
    try:
        _buildah(layout, "copy", "--chmod", "0755", container, str(binary), target)
        _buildah(layout, "config", "--user", user, "--entrypoint", json.dumps([target]), "--cmd", "", container)
        _buildah(layout, "commit", "--rm", container, name)
    except BaseException:
        subprocess.run(["buildah", "--storage-driver", "vfs", "rm", container], capture_output=True)
        raise
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(".partial")
    _buildah(layout, "push", name, f"oci-archive:{partial}:{name}")
    partial.rename(archive)
    _buildah(layout, "rmi", name)


def _kubernetes_module() -> Path:
    version = env_value("KUBERNETES_VERSION")
    out = _run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{version}"], cwd=tempfile.gettempdir())
    return Path(json.loads(out)["Dir"])


def pause_image(layout: Layout) -> Image:
    version = env_value("PAUSE_VERSION")
    name = f"localhost/sagascope/pause:{version}"
    archive = layout.images_cache / f"pause-{version}.oci.tar"
    if not archive.exists():
        source = _kubernetes_module() / "build" / "pause" / "linux" / "pause.c"
        with tempfile.TemporaryDirectory() as tmp:
            binary = Path(tmp) / "pause"
            _run(["gcc", "-Os", "-Wall", "-Werror", "-static", f'-DVERSION=v{version}-sagascope',
                  "-o", str(binary), str(source)])
            _run(["strip", str(binary)])
            _scratch_image(layout, name, binary, "/pause", "65535:65535", archive)
    return Image(name, archive)


def coredns_image(layout: Layout, binary: Path) -> Image:
    version = env_value("COREDNS_VERSION")
    name = f"localhost/sagascope/coredns:{version}"
    archive = layout.images_cache / f"coredns-{version}.oci.tar"
    if not archive.exists():
        _scratch_image(layout, name, binary, "/coredns", "0:0", archive)
    return Image(name, archive)


def ctr(layout: Layout, *args: str) -> str:
    return _run(["ctr", "--address", str(layout.containerd_socket), "-n", layout.containerd_namespace, *args])


def imported(layout: Layout) -> set[str]:
    return set(ctr(layout, "images", "list", "-q").split())


def import_images(layout: Layout, images: list[Image]) -> None:
    """Import each archive not already in the cluster's containerd (CRI namespace k8s.io)."""
    have = imported(layout)
    for image in images:
        if image.name not in have:
            ctr(layout, "images", "import", str(image.archive))
