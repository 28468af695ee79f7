# End-to-end tests on a real Kubernetes cluster of one or two nodes on this host (root; see test/e2e/up.sh).
#   NODES=2 (default) or 1; ROUTING=vxlan (default) or hostgw between the two nodes
#   make e2e-build    build the Kubernetes binaries and kube-network-policies once and cache them in
#                     /var/cache/podtrace-e2e
#   make e2e-images   build the agent, workload and pause images (imported if the cluster runs)
#   make e2e-up       bring the cluster up (a no-op if it is up); admin kubeconfig:
#                     /tmp/podtrace-e2e/admin.kubeconfig, limited user: /tmp/podtrace-e2e/user.kubeconfig
#   make e2e          up, run the suite (go test -tags e2e ./test/e2e/...), down; KEEP=1 keeps the cluster
#                     (a cluster that was already up is kept unless KEEP=0)
#   make e2e-down     remove everything the harness made (safe to run twice)
#   make e2e-check-clean  prove nothing is left
#   make e2e-routing ROUTING=vxlan|hostgw  switch cross-node routing on the running 2-node cluster
#   make e2e-proxy PROXY=nftables|iptables  switch kube-proxy's mode on the running cluster (up: PROXY, default nftables)
# AGENT_BIN=path uses a prebuilt podtrace-agent for the agent image.
E2E_DIR := test/e2e

.PHONY: e2e-build e2e-images e2e-up e2e e2e-down e2e-check-clean e2e-routing e2e-proxy
e2e-build:
	$(E2E_DIR)/build-k8s.sh
	$(E2E_DIR)/netpol.sh build
e2e-images:
	$(E2E_DIR)/images.sh
e2e-up:
	$(E2E_DIR)/up.sh
e2e:
	$(E2E_DIR)/run.sh
e2e-down:
	$(E2E_DIR)/down.sh
e2e-check-clean:
	$(E2E_DIR)/check-clean.sh
e2e-routing:
	$(E2E_DIR)/node2.sh routing $(ROUTING)
e2e-proxy:
	$(E2E_DIR)/proxy.sh mode $(PROXY)
