// Package e2e holds the end-to-end tests of kubectl-podtrace. They run against a
// real single-node cluster brought up by test/e2e/up.sh (make e2e-up) and drive it
// through the real kubectl, as a user would. The tests are behind the build tag
// e2e:
//
//	make e2e                                   # up, test, down (KEEP=1 keeps the cluster)
//	go test -tags e2e -count=1 ./test/e2e/...  # against a cluster that is already up
//
// The admin kubeconfig is /tmp/podtrace-e2e/admin.kubeconfig, the limited user's
// (bound only to the roles in deploy/user-rbac.yaml) /tmp/podtrace-e2e/user.kubeconfig.
package e2e
