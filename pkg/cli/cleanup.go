package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/podtrace/kubectl-podtrace/pkg/kube"
	clusterlaunch "github.com/podtrace/kubectl-podtrace/pkg/launch/cluster"
	"github.com/podtrace/kubectl-podtrace/pkg/render"
)

// CleanupOptions find what crashed runs left behind.
type CleanupOptions struct {
	ConfigFlags    *genericclioptions.ConfigFlags
	AgentNamespace string
	AllNamespaces  bool
	All            bool
	Session        string
	genericiooptions.IOStreams
}

// NewCmdCleanup is `kubectl podtrace cleanup`.
func NewCmdCleanup(streams genericiooptions.IOStreams) *cobra.Command {
	o := &CleanupOptions{ConfigFlags: genericclioptions.NewConfigFlags(true), IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "End warm agents, delete node agent pods a crashed run left behind, and list agent containers still running in pods",
		Long: `Delete the node agent pods (label app.kubernetes.io/managed-by=kubectl-podtrace) in the
agent namespace that are finished or past their deadline, or that linger after a trace for
reruns (warm agents, --linger) — or all of them with --all — and list the agent ephemeral
containers still running in pods of the namespace (-n) or of all namespaces (-A). Ephemeral
containers cannot be removed from a pod: warm ones are told to exit at once (through an
attach), the others exit on their own at their deadline.`,
		Example: `  kubectl podtrace cleanup
  kubectl podtrace cleanup --session 3f9a1c     # what an interrupted run left, still running
  kubectl podtrace cleanup -A --all`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&o.AgentNamespace, "agent-namespace", kube.DefaultAgentNamespace, "namespace of the node agents")
	cmd.Flags().BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "list agent containers in pods of every namespace")
	cmd.Flags().BoolVar(&o.All, "all", false, "delete every node agent pod, also those of runs in progress")
	cmd.Flags().StringVar(&o.Session, "session", "", "delete the node agent pods of this session (as an interrupted run names it), also while they run")
	addKubeFlags(cmd, o.ConfigFlags)
	return cmd
}

// Validate checks the flags, before any API call.
func (o *CleanupOptions) Validate() error {
	if o.Session != "" {
		if errs := validation.IsValidLabelValue(o.Session); len(errs) > 0 {
			return fmt.Errorf("--session %q: not a session id (%s)", o.Session, errs[0])
		}
	}
	if o.AgentNamespace == "" {
		return errors.New("--agent-namespace must name the agents' namespace")
	}
	return nil
}

// Run cleans up.
func (o *CleanupOptions) Run(ctx context.Context) error {
	if err := o.Validate(); err != nil {
		return err
	}
	cfg, err := o.ConfigFlags.ToRESTConfig()
	if err != nil {
		return fmt.Errorf("read the kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	sel := kube.ManagedByLabel + "=" + kube.ManagedBy
	if o.Session != "" {
		sel += "," + kube.SessionLabel + "=" + o.Session
	}
	pods, err := cs.CoreV1().Pods(o.AgentNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return kube.Explain(err, fmt.Sprintf("list node agent pods in namespace %q", o.AgentNamespace))
	}
	deleted := 0
	for _, p := range pods.Items {
		_, warm := p.Labels[kube.WarmLabel]
		if !o.All && o.Session == "" && !warm && !finished(&p, time.Now()) {
			fmt.Fprintf(o.Out, "kept    pod %s/%s (session %s, still running: use --all to delete it)\n", render.Safe(p.Namespace), render.Safe(p.Name), render.Safe(p.Labels[kube.SessionLabel]))
			continue
		}
		err := cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		if err != nil {
			return kube.Explain(err, fmt.Sprintf("delete pod %s/%s", p.Namespace, p.Name))
		}
		deleted++
		fmt.Fprintf(o.Out, "deleted pod %s/%s (session %s)\n", render.Safe(p.Namespace), render.Safe(p.Name), render.Safe(p.Labels[kube.SessionLabel]))
	}
	ns, _, err := o.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return err
	}
	if o.AllNamespaces {
		ns = ""
	}
	all, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return kube.Explain(err, "list pods to find running agent containers")
	}
	running, ended := 0, 0
	l := &clusterlaunch.Launcher{Client: cs, Config: cfg}
	for _, p := range all.Items {
		for _, st := range p.Status.EphemeralContainerStatuses {
			if len(st.Name) > len(kube.ContainerPrefix) && st.Name[:len(kube.ContainerPrefix)] == kube.ContainerPrefix && st.State.Running != nil {
				if lingering(&p, st.Name) && (o.Session == "" || st.Name == kube.ContainerName(o.Session)) {
					if err := l.EndAgent(ctx, p.Namespace, p.Name, st.Name); err != nil {
						// (it exited in the meantime, or the attach was refused)
						running++
						fmt.Fprintf(o.Out, "running agent container %s in pod %s/%s: not ended: %s\n", render.Safe(st.Name), render.Safe(p.Namespace), render.Safe(p.Name), render.Safe(err.Error()))
						continue
					}
					ended++
					fmt.Fprintf(o.Out, "ended   warm agent container %s in pod %s/%s\n", render.Safe(st.Name), render.Safe(p.Namespace), render.Safe(p.Name))
					continue
				}
				running++
				fmt.Fprintf(o.Out, "running agent container %s in pod %s/%s since %s (it exits at its deadline)\n",
					render.Safe(st.Name), render.Safe(p.Namespace), render.Safe(p.Name), st.State.Running.StartedAt.Format(time.RFC3339))
			}
		}
	}
	fmt.Fprintf(o.Out, "%d node agent pod(s) deleted, %d warm agent container(s) ended, %d agent container(s) still running\n", deleted, ended, running)
	return nil
}

// lingering tells whether the pod's agent container serves reruns (its
// arguments have --linger): it waits for an exit line to end before its
// linger time.
func lingering(p *corev1.Pod, name string) bool {
	for _, ec := range p.Spec.EphemeralContainers {
		if ec.Name == name {
			d, err := time.ParseDuration(kube.ArgValue(ec.Args, "--linger"))
			return err == nil && d > 0
		}
	}
	return false
}

// finished: the pod ended, or its deadline passed.
func finished(p *corev1.Pod, now time.Time) bool {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return true
	}
	if d := p.Spec.ActiveDeadlineSeconds; d != nil {
		return now.After(p.CreationTimestamp.Add(time.Duration(*d) * time.Second))
	}
	return false
}
