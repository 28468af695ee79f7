package kube

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
)

// ServiceRef names a Service as the user wrote it: svc/NAME[:PORT],
// NAMESPACE/svc/NAME[:PORT] (also service/, services/), or a ClusterIP
// (IP or IP:PORT; Name is then empty).
type ServiceRef struct {
	Namespace string
	Name      string
	ClusterIP string
	Port      string // a port number or name; "" when not given
}

func (r ServiceRef) String() string {
	s := r.Namespace + "/" + r.Name
	if r.Name == "" {
		s = r.ClusterIP
	}
	if r.Port != "" {
		s += ":" + r.Port
	}
	return s
}

// ParseServiceRef recognises a Service destination; ok is false when arg
// names a pod.
func ParseServiceRef(arg, defaultNamespace string) (ref ServiceRef, ok bool, err error) {
	if host, port, err := net.SplitHostPort(arg); err == nil && net.ParseIP(host) != nil {
		return ServiceRef{ClusterIP: net.ParseIP(host).String(), Port: port}, true, nil
	}
	if ip := net.ParseIP(arg); ip != nil {
		return ServiceRef{ClusterIP: ip.String()}, true, nil
	}
	parts := strings.Split(arg, "/")
	isSvc := func(s string) bool { return s == "svc" || s == "service" || s == "services" }
	var ns, name string
	switch {
	case len(parts) == 2 && isSvc(parts[0]):
		ns, name = defaultNamespace, parts[1]
	case len(parts) == 3 && isSvc(parts[1]):
		ns, name = parts[0], parts[2]
	default:
		return ServiceRef{}, false, nil
	}
	port := ""
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		name, port = name[:i], name[i+1:]
		if port == "" {
			return ServiceRef{}, true, fmt.Errorf("%q: a port after the colon, e.g. svc/%s:80", arg, name)
		}
	}
	if ns == "" || name == "" {
		return ServiceRef{}, true, fmt.Errorf("%q is not a Service: use svc/NAME[:PORT] or NAMESPACE/svc/NAME[:PORT]", arg)
	}
	// what the API server requires of them: a wrong one is said here, in
	// one line, not as "not found" after a round trip
	if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
		return ServiceRef{}, true, fmt.Errorf("%q: namespace %q is not valid: %s", arg, ns, msgs[0])
	}
	if msgs := validation.IsDNS1035Label(name); len(msgs) > 0 {
		return ServiceRef{}, true, fmt.Errorf("%q: Service name %q is not valid: %s", arg, name, msgs[0])
	}
	if port != "" {
		msgs := validation.IsValidPortName(port)
		if n, err := strconv.Atoi(port); err == nil {
			msgs = validation.IsValidPortNum(n)
		}
		if len(msgs) > 0 {
			return ServiceRef{}, true, fmt.Errorf("%q: port %q is neither a port number nor a port name: %s", arg, port, msgs[0])
		}
	}
	return ServiceRef{Namespace: ns, Name: name, Port: port}, true, nil
}

// ServiceEndpoint is one endpoint of a Service's port.
type ServiceEndpoint struct {
	IP    string
	Port  int
	Node  string
	Pod   *Ref // the pod behind it, when the EndpointSlice names one
	Ready bool
}

// ServiceTarget is a resolved Service and the port to probe.
type ServiceTarget struct {
	Ref       ServiceRef
	Svc       *corev1.Service
	ClusterIP string
	Port      corev1.ServicePort
	Proto     string // tcp, udp
	// Endpoints of the chosen port from the Service's EndpointSlices,
	// ready ones first; Slices counts the slices read.
	Endpoints []ServiceEndpoint
	Slices    int
}

// Ready returns the ready endpoints.
func (t *ServiceTarget) Ready() []ServiceEndpoint {
	var out []ServiceEndpoint
	for _, e := range t.Endpoints {
		if e.Ready {
			out = append(out, e)
		}
	}
	return out
}

// NoEndpoints says why the Service has no ready endpoint, "" when it has.
func (t *ServiceTarget) NoEndpoints() string {
	if len(t.Ready()) > 0 {
		return ""
	}
	switch {
	case t.Svc.Spec.Selector == nil && t.Slices == 0:
		return "it has no selector and no EndpointSlice"
	case t.Slices == 0:
		return "it has no EndpointSlice (is kube-controller-manager running?)"
	case len(t.Endpoints) == 0:
		return fmt.Sprintf("its %d EndpointSlice(s) are empty: no pod matches its selector %s", t.Slices, selectorText(t.Svc.Spec.Selector))
	}
	return fmt.Sprintf("none of its %d endpoint(s) is ready", len(t.Endpoints))
}

func selectorText(sel map[string]string) string {
	var parts []string
	for k, v := range sel {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// ResolveService reads the Service (by name, or by ClusterIP among the
// Services the user may list), picks its port (the one asked for, or its
// only one) and reads the endpoints of that port from its EndpointSlices.
func ResolveService(ctx context.Context, cs kubernetes.Interface, r ServiceRef, defaultNamespace string) (*ServiceTarget, error) {
	svc, err := findService(ctx, cs, r, defaultNamespace)
	if err != nil {
		return nil, err
	}
	r.Namespace, r.Name = svc.Namespace, svc.Name
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone {
		return nil, fmt.Errorf("service %s/%s is headless (no ClusterIP): nothing translates it; trace to one of its pods instead", svc.Namespace, svc.Name)
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, fmt.Errorf("service %s/%s is an ExternalName (%s): DNS answers for it, no node translates it", svc.Namespace, svc.Name, svc.Spec.ExternalName)
	}
	port, err := pickPort(svc, r.Port)
	if err != nil {
		return nil, err
	}
	t := &ServiceTarget{Ref: r, Svc: svc, ClusterIP: ip, Port: port}
	switch port.Protocol {
	case corev1.ProtocolTCP, "":
		t.Proto = "tcp"
	case corev1.ProtocolUDP:
		t.Proto = "udp"
	default:
		return nil, fmt.Errorf("service %s/%s port %d is %s: the probe speaks TCP, UDP or ICMP", svc.Namespace, svc.Name, port.Port, port.Protocol)
	}
	slices, err := cs.DiscoveryV1().EndpointSlices(svc.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc.Name})
	if err != nil {
		return nil, Explain(err, fmt.Sprintf("list the EndpointSlices of Service %s/%s", svc.Namespace, svc.Name))
	}
	t.Slices = len(slices.Items)
	for _, sl := range slices.Items {
		fam := sl.AddressType
		if fam != discoveryv1.AddressTypeIPv4 && fam != discoveryv1.AddressTypeIPv6 {
			continue
		}
		if (net.ParseIP(ip).To4() != nil) != (fam == discoveryv1.AddressTypeIPv4) {
			continue
		}
		epPort := 0
		for _, p := range sl.Ports {
			if p.Port != nil && ptrString(p.Name) == port.Name {
				epPort = int(*p.Port)
			}
		}
		if epPort == 0 {
			continue // this slice does not serve the chosen port
		}
		for _, e := range sl.Endpoints {
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			for _, a := range e.Addresses {
				se := ServiceEndpoint{IP: a, Port: epPort, Node: ptrString(e.NodeName), Ready: ready}
				if tr := e.TargetRef; tr != nil && tr.Kind == "Pod" {
					se.Pod = &Ref{Namespace: tr.Namespace, Name: tr.Name}
					if se.Pod.Namespace == "" {
						se.Pod.Namespace = svc.Namespace
					}
				}
				t.Endpoints = append(t.Endpoints, se)
			}
		}
	}
	sort.SliceStable(t.Endpoints, func(i, j int) bool {
		if t.Endpoints[i].Ready != t.Endpoints[j].Ready {
			return t.Endpoints[i].Ready
		}
		return t.Endpoints[i].IP < t.Endpoints[j].IP
	})
	return t, nil
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func findService(ctx context.Context, cs kubernetes.Interface, r ServiceRef, defaultNamespace string) (*corev1.Service, error) {
	if r.Name != "" {
		svc, err := cs.CoreV1().Services(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("service %q not found in namespace %q (kubectl get services -n %s)", r.Name, r.Namespace, r.Namespace)
		}
		if err != nil {
			return nil, Explain(err, "read Service "+r.Namespace+"/"+r.Name)
		}
		return svc, nil
	}
	// A ClusterIP: the Service that has it, among all namespaces when the
	// user may list them, else in defaultNamespace (the caller passes the
	// source pod's: a user bound per namespace traces within it).
	list, err := cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if apierrors.IsForbidden(err) {
		list, err = cs.CoreV1().Services(defaultNamespace).List(ctx, metav1.ListOptions{})
	}
	if err != nil {
		return nil, Explain(err, "list Services to find the one with ClusterIP "+r.ClusterIP)
	}
	for i := range list.Items {
		for _, ip := range append([]string{list.Items[i].Spec.ClusterIP}, list.Items[i].Spec.ClusterIPs...) {
			if ip == r.ClusterIP {
				return &list.Items[i], nil
			}
		}
	}
	return nil, fmt.Errorf("no Service has ClusterIP %s among the Services you may list (all namespaces, else %s): give it as NAMESPACE/svc/NAME", r.ClusterIP, defaultNamespace)
}

// pickPort chooses the Service port to probe: the one named or numbered,
// else the only one.
func pickPort(svc *corev1.Service, want string) (corev1.ServicePort, error) {
	var names []string
	for _, p := range svc.Spec.Ports {
		n := strconv.Itoa(int(p.Port)) + "/" + string(p.Protocol)
		if p.Name != "" {
			n = p.Name + " " + n
		}
		names = append(names, n)
	}
	if want == "" {
		if len(svc.Spec.Ports) == 1 {
			return svc.Spec.Ports[0], nil
		}
		return corev1.ServicePort{}, fmt.Errorf("service %s/%s has %d ports (%s): name one, e.g. svc/%s:%d", svc.Namespace, svc.Name,
			len(svc.Spec.Ports), strings.Join(names, ", "), svc.Name, firstPort(svc))
	}
	for _, p := range svc.Spec.Ports {
		if p.Name == want || strconv.Itoa(int(p.Port)) == want {
			return p, nil
		}
	}
	return corev1.ServicePort{}, fmt.Errorf("service %s/%s has no port %q (it has %s)", svc.Namespace, svc.Name, want, strings.Join(names, ", "))
}

func firstPort(svc *corev1.Service) int32 {
	if len(svc.Spec.Ports) == 0 {
		return 0
	}
	return svc.Spec.Ports[0].Port
}
