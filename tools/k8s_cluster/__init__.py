"""A real single-node Kubernetes cluster on this machine, started and stopped by the project.

`python -m tools.k8s_cluster up|down|status|env` (`make k8s-up` / `k8s-down` / `k8s-status`):
etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, a kubelet, kube-proxy
and kube-router (NetworkPolicy enforcer) run as host processes under sagascope's own supervisor
in a detached daemon; CoreDNS runs as a Pod. Pods live on a private bridge and never leave the
machine. `down` removes everything the cluster made and checks that nothing is left.
"""
