package kube

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func TestParseServiceRef(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    ServiceRef
		svc     bool
		wantErr bool
	}{
		{"svc/web", ServiceRef{Namespace: "default", Name: "web"}, true, false},
		{"service/web:80", ServiceRef{Namespace: "default", Name: "web", Port: "80"}, true, false},
		{"shop/svc/api:http", ServiceRef{Namespace: "shop", Name: "api", Port: "http"}, true, false},
		{"10.96.0.10", ServiceRef{ClusterIP: "10.96.0.10"}, true, false},
		{"10.96.0.10:53", ServiceRef{ClusterIP: "10.96.0.10", Port: "53"}, true, false},
		{"[fd00::10]:80", ServiceRef{ClusterIP: "fd00::10", Port: "80"}, true, false},
		{"svc/web:", ServiceRef{}, true, true},
		{"svc/", ServiceRef{}, true, true},
		// the API server's rules: namespace a DNS-1123 label, Service name
		// a DNS-1035 label, port a number 1-65535 or an IANA port name
		{"Shop/svc/web", ServiceRef{}, true, true},
		{"svc/Web", ServiceRef{}, true, true},
		{"svc/1web", ServiceRef{}, true, true},
		{"svc/web:0", ServiceRef{}, true, true},
		{"svc/web:65536", ServiceRef{}, true, true},
		{"svc/web:http_alt", ServiceRef{}, true, true},
		{"svc/web:65535", ServiceRef{Namespace: "default", Name: "web", Port: "65535"}, true, false},
		{"pod-b", ServiceRef{}, false, false},
		{"shop/pod-b", ServiceRef{}, false, false},
		{"shop/pod/pod-b", ServiceRef{}, false, false},
	} {
		got, svc, err := ParseServiceRef(c.in, "default")
		if svc != c.svc || (err != nil) != c.wantErr || (err == nil && got != c.want) {
			t.Errorf("ParseServiceRef(%q) = %+v, %v, %v; want %+v, %v (error %v)", c.in, got, svc, err, c.want, c.svc, c.wantErr)
		}
	}
}

// A Service with two ports, one endpoint ready on node-2 and one not, and
// a Service selecting nothing: what the EndpointSlice controller writes.
func serviceFixtures() *fake.Clientset {
	web := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.3.4", Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
			{Name: "dns", Port: 53, TargetPort: intstr.FromInt32(5353), Protocol: corev1.ProtocolUDP},
		}},
	}
	empty := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "empty", Namespace: "shop"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.3.5", Selector: map[string]string{"app": "nobody"},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080))}, {Name: ptr.To("dns"), Port: ptr.To(int32(5353))}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.1.9"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}, NodeName: ptr.To("node-3"),
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "web-2", Namespace: "shop"}},
			{Addresses: []string{"10.244.1.7"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}, NodeName: ptr.To("node-2"),
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "web-1", Namespace: "shop"}},
		},
	}
	emptySlice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "empty-xyz", Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "empty"}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	return fake.NewClientset(web, empty, slice, emptySlice)
}

func TestResolveServicePicksThePortAndItsEndpoints(t *testing.T) {
	cs := serviceFixtures()
	ctx := context.Background()
	st, err := ResolveService(ctx, cs, ServiceRef{Namespace: "shop", Name: "web", Port: "http"}, "default")
	if err != nil {
		t.Fatal(err)
	}
	if st.ClusterIP != "10.96.3.4" || st.Port.Port != 80 || st.Proto != "tcp" {
		t.Errorf("resolved %s port %d %s; want 10.96.3.4 port 80 tcp", st.ClusterIP, st.Port.Port, st.Proto)
	}
	ready := st.Ready()
	if len(st.Endpoints) != 2 || len(ready) != 1 || ready[0].IP != "10.244.1.7" || ready[0].Port != 8080 || ready[0].Node != "node-2" ||
		ready[0].Pod == nil || *ready[0].Pod != (Ref{Namespace: "shop", Name: "web-1"}) {
		t.Errorf("endpoints %+v, ready %+v; want web-1 10.244.1.7:8080 on node-2 ready, web-2 not", st.Endpoints, ready)
	}
	if st.NoEndpoints() != "" {
		t.Errorf("NoEndpoints() = %q with a ready endpoint", st.NoEndpoints())
	}

	// The UDP port by number, through the ClusterIP.
	st, err = ResolveService(ctx, cs, ServiceRef{ClusterIP: "10.96.3.4", Port: "53"}, "default")
	if err != nil {
		t.Fatal(err)
	}
	if st.Svc.Name != "web" || st.Proto != "udp" || len(st.Ready()) != 1 || st.Ready()[0].Port != 5353 {
		t.Errorf("by ClusterIP: %s %s %+v; want web udp, endpoint port 5353", st.Svc.Name, st.Proto, st.Ready())
	}

	st, err = ResolveService(ctx, cs, ServiceRef{Namespace: "shop", Name: "empty"}, "default")
	if err != nil {
		t.Fatal(err)
	}
	if why := st.NoEndpoints(); !strings.Contains(why, "EndpointSlice(s) are empty") || !strings.Contains(why, "app=nobody") {
		t.Errorf("NoEndpoints() = %q; want its EndpointSlices empty, naming the selector", why)
	}
}

func TestResolveServiceErrorsSayWhatToDo(t *testing.T) {
	cs := serviceFixtures()
	ctx := context.Background()
	for _, c := range []struct {
		ref  ServiceRef
		want string
	}{
		{ServiceRef{Namespace: "shop", Name: "web"}, "has 2 ports (http 80/TCP, dns 53/UDP): name one, e.g. svc/web:80"},
		{ServiceRef{Namespace: "shop", Name: "web", Port: "443"}, `has no port "443"`},
		{ServiceRef{Namespace: "shop", Name: "nope"}, `service "nope" not found in namespace "shop"`},
		{ServiceRef{ClusterIP: "10.96.9.9"}, "no Service has ClusterIP 10.96.9.9"},
	} {
		_, err := ResolveService(ctx, cs, c.ref, "shop")
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ResolveService(%+v) = %v; want one line containing %q", c.ref, err, c.want)
		}
	}
}
