package podspec

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func webPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-0", Namespace: "default", UID: "uid-1",
			Labels:      map[string]string{"apps.kubernetes.io/pod-index": "0", "app": "nginx"},
			Annotations: map[string]string{"stead.io/generation": "17"},
		},
		Spec: corev1.PodSpec{
			NodeName: "node-a", Hostname: "web-0", Subdomain: "nginx",
			Containers: []corev1.Container{{Name: "nginx", Image: "web:1"}},
		},
	}
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
}

func TestProcess(t *testing.T) {
	facts := Facts{PodIP: "10.244.0.5", HostIP: "192.168.1.10", NodeCPU: resource.MustParse("4"), NodeMemory: resource.MustParse("8Gi")}
	cases := []struct {
		name              string
		c                 corev1.Container
		wantCmd, wantArgs []string
		wantEnv           []string
		wantErr           string
	}{
		{
			name: "field refs",
			c: corev1.Container{Env: []corev1.EnvVar{
				fieldEnv("POD_NAME", "metadata.name"),
				fieldEnv("POD_NAMESPACE", "metadata.namespace"),
				fieldEnv("POD_INDEX", "metadata.labels['apps.kubernetes.io/pod-index']"),
				fieldEnv("MISSING_LABEL", "metadata.labels['nope']"),
				fieldEnv("GEN", "metadata.annotations['stead.io/generation']"),
				fieldEnv("POD_IP", "status.podIP"),
				fieldEnv("HOST_IP", "status.hostIP"),
				fieldEnv("NODE", "spec.nodeName"),
				fieldEnv("UID", "metadata.uid"),
			}},
			wantEnv: []string{"POD_NAME=web-0", "POD_NAMESPACE=default", "POD_INDEX=0", "MISSING_LABEL=", "GEN=17",
				"POD_IP=10.244.0.5", "HOST_IP=192.168.1.10", "NODE=node-a", "UID=uid-1"},
		},
		{
			name: "expansion in env, command and args",
			c: corev1.Container{
				Command: []string{"/bin/$(NAME)", "$$(NAME)", "$(UNKNOWN)"},
				Args:    []string{"--peer=$(NAME).nginx", "$(", "cost $5"},
				Env: []corev1.EnvVar{
					fieldEnv("NAME", "metadata.name"),
					{Name: "URL", Value: "http://$(NAME):80/$(LATER)"},
					{Name: "LATER", Value: "x"},
				},
			},
			wantCmd:  []string{"/bin/web-0", "$(NAME)", "$(UNKNOWN)"},
			wantArgs: []string{"--peer=web-0.nginx", "$(", "cost $5"},
			wantEnv:  []string{"NAME=web-0", "URL=http://web-0:80/$(LATER)", "LATER=x"},
		},
		{
			name:    "redefinition replaces in place",
			c:       corev1.Container{Env: []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}, {Name: "A", Value: "$(B)3"}}},
			wantEnv: []string{"A=23", "B=2"},
		},
		{
			name: "resource refs",
			c: corev1.Container{
				Name: "nginx",
				Resources: corev1.ResourceRequirements{
					Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
				},
				Env: []corev1.EnvVar{
					{Name: "CPU_LIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
					{Name: "CPU_REQ_M", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "requests.cpu", Divisor: resource.MustParse("1m")}}},
					{Name: "MEM_MI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
				},
			},
			wantEnv: []string{"CPU_LIMIT=2", "CPU_REQ_M=250", "MEM_MI=64"},
		},
		{
			name: "unset limit reads the node's",
			c: corev1.Container{Env: []corev1.EnvVar{
				{Name: "CPU", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
				{Name: "MEM", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Gi")}}},
			}},
			wantEnv: []string{"CPU=4", "MEM=8"},
		},
		{
			name:    "unsupported field",
			c:       corev1.Container{Env: []corev1.EnvVar{fieldEnv("X", "spec.priority")}},
			wantErr: `env X: unsupported fieldRef "spec.priority"`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd, args, env, err := Process(webPod(), &tc.c, facts)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cmd, tc.wantCmd) || !reflect.DeepEqual(args, tc.wantArgs) || !reflect.DeepEqual(env, tc.wantEnv) {
				t.Errorf("got\n cmd %q\n args %q\n env %q\nwant\n cmd %q\n args %q\n env %q", cmd, args, env, tc.wantCmd, tc.wantArgs, tc.wantEnv)
			}
		})
	}
}

func TestResourceLimits(t *testing.T) {
	q := resource.MustParse
	cases := []struct {
		name string
		r    corev1.ResourceRequirements
		want Limits
	}{
		{"best effort", corev1.ResourceRequirements{}, Limits{CPUShares: 2}},
		{"limits only", corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: q("500m"), corev1.ResourceMemory: q("128Mi")}},
			Limits{CPUQuota: 50000, CPUShares: 512, MemoryLimit: 128 << 20}},
		{"request and limit", corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("100m")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: q("2")}},
			Limits{CPUQuota: 200000, CPUShares: 102}},
		{"tiny limit has the minimum quota", corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: q("1m")}},
			Limits{CPUQuota: 1000, CPUShares: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ResourceLimits(tc.r); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSecurityOf(t *testing.T) {
	i := func(v int64) *int64 { return &v }
	b := func(v bool) *bool { return &v }
	pod := webPod()
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: i(1000), RunAsGroup: i(2000)}
	c := &corev1.Container{SecurityContext: &corev1.SecurityContext{RunAsUser: i(1001), ReadOnlyRootFilesystem: b(true)}}
	got := SecurityOf(pod, c)
	if *got.RunAsUser != 1001 || *got.RunAsGroup != 2000 || !got.ReadOnlyRootfs || got.Privileged {
		t.Errorf("got user %d group %d ro %v priv %v, want 1001 2000 true false", *got.RunAsUser, *got.RunAsGroup, got.ReadOnlyRootfs, got.Privileged)
	}
	if got := SecurityOf(webPod(), &corev1.Container{}); got != (Security{}) {
		t.Errorf("no contexts: got %+v, want zero", got)
	}
}

func TestHosts(t *testing.T) {
	pod := webPod()
	got := string(Hosts(pod, "10.244.0.5", "cluster.local", nil))
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "::1\tlocalhost ip6-localhost ip6-loopback\n",
		"10.244.0.5\tweb-0.nginx.default.svc.cluster.local\tweb-0\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("hosts lacks %q:\n%s", want, got)
		}
	}

	pod.Spec.Subdomain = ""
	pod.Spec.HostAliases = []corev1.HostAlias{{IP: "10.0.0.9", Hostnames: []string{"db", "db.local"}}}
	got = string(Hosts(pod, "10.244.0.5", "cluster.local", nil))
	if !strings.Contains(got, "\n10.244.0.5\tweb-0\n") || !strings.HasSuffix(got, "# Entries added by HostAliases.\n10.0.0.9\tdb\tdb.local\n") {
		t.Errorf("no subdomain, aliases:\n%s", got)
	}

	pod.Spec.HostNetwork = true
	got = string(Hosts(pod, "192.168.1.10", "cluster.local", []byte("127.0.0.1 localhost\n192.168.1.10 node-a")))
	if !strings.HasPrefix(got, "127.0.0.1 localhost\n192.168.1.10 node-a\n\n# Entries added by HostAliases.\n") {
		t.Errorf("host network:\n%s", got)
	}
}

func TestResolvConf(t *testing.T) {
	host := []byte("# generated\nnameserver 192.168.1.1\nnameserver 8.8.8.8\nsearch corp.example\noptions edns0 timeout:2\n")
	two := "2"
	cases := []struct {
		name string
		mut  func(*corev1.Pod)
		want string
	}{
		{"cluster first", func(*corev1.Pod) {},
			"search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.244.0.1\noptions ndots:5\n"},
		{"host network falls back to the node's", func(p *corev1.Pod) { p.Spec.HostNetwork = true },
			"search corp.example\nnameserver 192.168.1.1\nnameserver 8.8.8.8\noptions edns0 timeout:2\n"},
		{"cluster first with host net", func(p *corev1.Pod) {
			p.Spec.HostNetwork = true
			p.Spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
		}, "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.244.0.1\noptions ndots:5\n"},
		{"dnsConfig merges", func(p *corev1.Pod) {
			p.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"1.1.1.1"}, Searches: []string{"x.example"},
				Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: &two}, {Name: "single-request"}}}
		}, "search default.svc.cluster.local svc.cluster.local cluster.local x.example\nnameserver 10.244.0.1\nnameserver 1.1.1.1\noptions ndots:2 single-request\n"},
		{"none", func(p *corev1.Pod) {
			p.Spec.DNSPolicy = corev1.DNSNone
			p.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"1.1.1.1"}}
		}, "nameserver 1.1.1.1\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := webPod()
			tc.mut(pod)
			if got := string(ResolvConf(pod, "10.244.0.1", "cluster.local", host)); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestHostname(t *testing.T) {
	pod := webPod()
	pod.Spec.Hostname = ""
	if got := Hostname(pod); got != "web-0" {
		t.Errorf("Hostname = %q, want web-0", got)
	}
	if got := FQDN(pod, "cluster.local"); got != "web-0.nginx.default.svc.cluster.local" {
		t.Errorf("FQDN = %q", got)
	}
	pod.Name = strings.Repeat("a", 62) + "-b"
	if got := Hostname(pod); got != strings.Repeat("a", 62) {
		t.Errorf("long name: Hostname = %q, want 62 a's", got)
	}
}
