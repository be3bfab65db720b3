"""containerd's own configuration (version 2 file): its own root, state and socket, so the
cluster never touches a containerd the machine may run; the CRI plugin as it works here.

- ``restrict_oom_score_adj``: root here lacks CAP_SYS_RESOURCE, so no process may lower an
  oom_score_adj; without it every Pod sandbox fails (runc: "can't get final child's PID from pipe").
- ``default_runtime_name`` and the runc runtime both declared: the options table alone leaves the
  runtime name empty ("container.Runtime.Name must be set").
- cgroupfs (``SystemdCgroup = false``): no systemd here, and the kubelet's driver must match.
"""

from __future__ import annotations

from tools.k8s_cluster.layout import Layout

CRI = 'plugins."io.containerd.grpc.v1.cri"'


def config(layout: Layout, sandbox_image: str) -> str:
    return f"""version = 2
root = "{layout.containerd_root}"
state = "{layout.containerd_state}"

[grpc]
  address = "{layout.containerd_socket}"

[ttrpc]
  address = "{layout.containerd_socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{layout.containerd_root}/opt"

[{CRI}]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  enable_selinux = false
  # network namespace handles under our state dir, not /run/netns: ours are then unmistakable
  netns_mounts_under_state_dir = true

[{CRI}.containerd]
  default_runtime_name = "runc"
  snapshotter = "overlayfs"

[{CRI}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{CRI}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{layout.run}/runc"

[{CRI}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{layout.cni_conf_dir}"
  max_conf_num = 1
"""


def write(layout: Layout, sandbox_image: str) -> None:
    layout.containerd_config.parent.mkdir(parents=True, exist_ok=True)
    layout.containerd_config.write_text(config(layout, sandbox_image))
