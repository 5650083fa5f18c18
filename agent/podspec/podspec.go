// Package podspec derives what a container runs with from its pod, as the
// kubelet does: the process (command, arguments and environment with
// $(VAR) expansion and the downward API's fieldRef and resourceFieldRef),
// the cgroup limits from resources, the user and root filesystem from the
// security context, and the pod's identity files (/etc/hostname,
// /etc/hosts, /etc/resolv.conf).
//
// Everything here is a pure function of the pod and the node facts passed
// in; the agent turns the results into a runtime container spec.
package podspec

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/stead-io/stead/api"
)

// Facts are what a container's environment needs besides its pod.
type Facts struct {
	// PodIP is the pod's address ("" before the network is up).
	PodIP string
	// HostIP is the node's address.
	HostIP string
	// NodeCPU and NodeMemory are the node's allocatable CPU and memory, the
	// value of a resourceFieldRef to a limit the container does not set.
	NodeCPU, NodeMemory resource.Quantity
}

// Process returns the command, arguments and environment ("K=V", in the
// container's order) of container c of pod. $(VAR) references in env
// values, command and args expand to variables defined earlier in the
// container's env, as in Kubernetes; unknown references stay as written and
// $$ escapes a dollar.
func Process(pod *corev1.Pod, c *corev1.Container, f Facts) (command, args, env []string, err error) {
	vars := map[string]string{}
	mapping := func(name string) string {
		if v, ok := vars[name]; ok {
			return v
		}
		return "$(" + name + ")"
	}
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.ValueFrom == nil:
			v = Expand(v, mapping)
		case e.ValueFrom.FieldRef != nil:
			if v, err = fieldValue(pod, e.ValueFrom.FieldRef.FieldPath, f); err != nil {
				return nil, nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
		case e.ValueFrom.ResourceFieldRef != nil:
			if v, err = resourceValue(pod, c, e.ValueFrom.ResourceFieldRef, f); err != nil {
				return nil, nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
		default:
			return nil, nil, nil, fmt.Errorf("env %s: only fieldRef and resourceFieldRef are supported", e.Name)
		}
		if _, seen := vars[e.Name]; seen {
			// A later definition replaces an earlier one, in place.
			for i := range env {
				if strings.HasPrefix(env[i], e.Name+"=") {
					env[i] = e.Name + "=" + v
				}
			}
		} else {
			env = append(env, e.Name+"="+v)
		}
		vars[e.Name] = v
	}
	for _, s := range c.Command {
		command = append(command, Expand(s, mapping))
	}
	for _, s := range c.Args {
		args = append(args, Expand(s, mapping))
	}
	return command, args, env, nil
}

// fieldValue resolves a downward API field path.
func fieldValue(pod *corev1.Pod, path string, f Facts) (string, error) {
	if k, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs":
		return f.HostIP, nil
	case "status.podIP", "status.podIPs":
		return f.PodIP, nil
	}
	return "", fmt.Errorf("unsupported fieldRef %q", path)
}

// subscript parses `prefix['key']`.
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"['")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "']")
}

// resourceValue resolves a resourceFieldRef as the kubelet does: CPU in
// whole divisors rounded up, memory and storage in divisors rounded up, a
// limit that is not set reads as the node's allocatable amount.
func resourceValue(pod *corev1.Pod, self *corev1.Container, ref *corev1.ResourceFieldSelector, f Facts) (string, error) {
	c := self
	if ref.ContainerName != "" {
		c = findContainer(pod, ref.ContainerName)
		if c == nil {
			return "", fmt.Errorf("resourceFieldRef names container %q, which the pod does not have", ref.ContainerName)
		}
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return "", fmt.Errorf("unsupported resourceFieldRef %q", ref.Resource)
	}
	list := c.Resources.Requests
	if kind == "limits" {
		list = c.Resources.Limits
	}
	q, set := list[corev1.ResourceName(name)]
	if !set && kind == "limits" {
		switch corev1.ResourceName(name) {
		case corev1.ResourceCPU:
			q = f.NodeCPU
		case corev1.ResourceMemory:
			q = f.NodeMemory
		}
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if corev1.ResourceName(name) == corev1.ResourceCPU {
		v := int64(math.Ceil(float64(q.MilliValue()) / float64(divisor.MilliValue())))
		return strconv.FormatInt(v, 10), nil
	}
	v := int64(math.Ceil(float64(q.Value()) / float64(divisor.Value())))
	return strconv.FormatInt(v, 10), nil
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	return nil
}

// Expand replaces $(VAR) references in s through mapping and $$ by $, as
// Kubernetes expands container commands, arguments and env values.
func Expand(s string, mapping func(string) string) string {
	var b strings.Builder
	checkpoint := 0
	for cursor := 0; cursor < len(s); cursor++ {
		if s[cursor] != '$' || cursor+1 >= len(s) {
			continue
		}
		b.WriteString(s[checkpoint:cursor])
		read, isVar, advance := readVariable(s[cursor+1:])
		if isVar {
			b.WriteString(mapping(read))
		} else {
			b.WriteString(read)
		}
		cursor += advance
		checkpoint = cursor + 1
	}
	return b.String() + s[checkpoint:]
}

// readVariable reads what follows a '$': a variable name in parentheses,
// an escaped dollar, or something that is not a reference.
func readVariable(s string) (read string, isVar bool, advance int) {
	switch s[0] {
	case '$':
		return "$", false, 1
	case '(':
		for i := 1; i < len(s); i++ {
			if s[i] == ')' {
				return s[1:i], true, i + 1
			}
		}
		return "$(", false, 1
	default:
		return "$" + string(s[0]), false, 1
	}
}

// CPUPeriod is the CFS period CPU limits are expressed in (100 ms, in µs).
const CPUPeriod = 100000

// Limits are a container's cgroup settings.
type Limits struct {
	// CPUQuota in µs per CPUPeriod; 0 means no limit.
	CPUQuota int64
	// CPUShares is the relative weight; from the CPU request.
	CPUShares uint64
	// MemoryLimit in bytes; 0 means no limit.
	MemoryLimit int64
}

// ResourceLimits turns resources into cgroup settings as the kubelet does:
// the CPU limit into a CFS quota (at least 1 ms per period), the CPU request
// (or the limit when no request is set) into shares (at least 2), the
// memory limit into a hard limit.
func ResourceLimits(r corev1.ResourceRequirements) Limits {
	var l Limits
	if q, ok := r.Limits[corev1.ResourceCPU]; ok && !q.IsZero() {
		l.CPUQuota = max(q.MilliValue()*CPUPeriod/1000, 1000)
	}
	req, ok := r.Requests[corev1.ResourceCPU]
	if !ok {
		req, ok = r.Limits[corev1.ResourceCPU]
	}
	l.CPUShares = 2
	if ok {
		l.CPUShares = uint64(max(req.MilliValue()*1024/1000, 2))
	}
	if q, ok := r.Limits[corev1.ResourceMemory]; ok {
		l.MemoryLimit = q.Value()
	}
	return l
}

// Security is who a container runs as and what it may do.
type Security struct {
	RunAsUser, RunAsGroup *int64
	ReadOnlyRootfs        bool
	Privileged            bool
}

// SecurityOf merges the pod's and the container's security contexts, the
// container's winning.
func SecurityOf(pod *corev1.Pod, c *corev1.Container) Security {
	var s Security
	if psc := pod.Spec.SecurityContext; psc != nil {
		s.RunAsUser, s.RunAsGroup = psc.RunAsUser, psc.RunAsGroup
	}
	if csc := c.SecurityContext; csc != nil {
		if csc.RunAsUser != nil {
			s.RunAsUser = csc.RunAsUser
		}
		if csc.RunAsGroup != nil {
			s.RunAsGroup = csc.RunAsGroup
		}
		s.ReadOnlyRootfs = csc.ReadOnlyRootFilesystem != nil && *csc.ReadOnlyRootFilesystem
		s.Privileged = csc.Privileged != nil && *csc.Privileged
	}
	return s
}

// Hostname is the pod's hostname: spec.hostname, else its name, cut to 63
// bytes as the kubelet does.
func Hostname(pod *corev1.Pod) string {
	h := pod.Spec.Hostname
	if h == "" {
		h = pod.Name
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

// FQDN is the pod's fully qualified name when it has a subdomain
// (web-0.nginx.default.svc.cluster.local), else "".
func FQDN(pod *corev1.Pod, domain string) string {
	if pod.Spec.Subdomain == "" {
		return ""
	}
	return api.PodFQDN(Hostname(pod), pod.Spec.Subdomain, pod.Namespace, domain)
}

// Hosts returns the pod's /etc/hosts: the localhost lines, the pod's IP
// with its FQDN and hostname, and the pod's hostAliases. A pod on the host
// network gets the node's file (hostHosts) with its aliases added.
func Hosts(pod *corev1.Pod, podIP, domain string, hostHosts []byte) []byte {
	var b strings.Builder
	if pod.Spec.HostNetwork {
		b.Write(hostHosts)
		if len(hostHosts) > 0 && !strings.HasSuffix(string(hostHosts), "\n") {
			b.WriteByte('\n')
		}
	} else {
		b.WriteString("# Kubernetes-managed hosts file (written by the stead agent).\n")
		b.WriteString("127.0.0.1\tlocalhost\n")
		b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
		b.WriteString("fe00::0\tip6-localnet\n")
		b.WriteString("fe00::0\tip6-mcastprefix\n")
		b.WriteString("fe00::1\tip6-allnodes\n")
		b.WriteString("fe00::2\tip6-allrouters\n")
		if podIP != "" {
			if fqdn := FQDN(pod, domain); fqdn != "" {
				fmt.Fprintf(&b, "%s\t%s\t%s\n", podIP, fqdn, Hostname(pod))
			} else {
				fmt.Fprintf(&b, "%s\t%s\n", podIP, Hostname(pod))
			}
		}
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, a := range pod.Spec.HostAliases {
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return []byte(b.String())
}

// ResolvConf returns the pod's /etc/resolv.conf for its dnsPolicy:
// ClusterFirst points at the cluster DNS (nameserver) with the Kubernetes
// search path and ndots:5; Default (and ClusterFirst on the host network)
// is the node's file (hostResolv); None has only the pod's dnsConfig, which
// is merged into the others.
func ResolvConf(pod *corev1.Pod, nameserver, domain string, hostResolv []byte) []byte {
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	if policy == corev1.DNSClusterFirst && pod.Spec.HostNetwork {
		policy = corev1.DNSDefault
	}
	var servers, searches []string
	options := map[string]string{}
	var optionOrder []string
	setOption := func(name, value string) {
		if _, ok := options[name]; !ok {
			optionOrder = append(optionOrder, name)
		}
		options[name] = value
	}
	switch policy {
	case corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet:
		servers = []string{nameserver}
		searches = []string{pod.Namespace + ".svc." + domain, "svc." + domain, domain}
		setOption("ndots", "5")
	case corev1.DNSDefault:
		servers, searches, optionOrder, options = parseResolv(hostResolv)
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		servers = append(servers, dc.Nameservers...)
		searches = append(searches, dc.Searches...)
		for _, o := range dc.Options {
			v := ""
			if o.Value != nil {
				v = *o.Value
			}
			setOption(o.Name, v)
		}
	}
	var b strings.Builder
	if len(searches) > 0 {
		b.WriteString("search " + strings.Join(dedupe(searches), " ") + "\n")
	}
	for _, s := range dedupe(servers) {
		b.WriteString("nameserver " + s + "\n")
	}
	if len(optionOrder) > 0 {
		var opts []string
		for _, name := range optionOrder {
			if v := options[name]; v != "" {
				opts = append(opts, name+":"+v)
			} else {
				opts = append(opts, name)
			}
		}
		b.WriteString("options " + strings.Join(opts, " ") + "\n")
	}
	return []byte(b.String())
}

// parseResolv reads the nameservers, search domains and options of a
// resolv.conf.
func parseResolv(data []byte) (servers, searches, optionOrder []string, options map[string]string) {
	options = map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") || strings.HasPrefix(fields[0], ";") {
			continue
		}
		switch fields[0] {
		case "nameserver":
			servers = append(servers, fields[1])
		case "search", "domain":
			searches = append(searches, fields[1:]...)
		case "options":
			for _, o := range fields[1:] {
				name, value, _ := strings.Cut(o, ":")
				if _, ok := options[name]; !ok {
					optionOrder = append(optionOrder, name)
				}
				options[name] = value
			}
		}
	}
	return servers, searches, optionOrder, options
}

func dedupe(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
