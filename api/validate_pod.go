package api

import (
	"path"
	"path/filepath"
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// supportedVolumeSources are the pod volume sources the agent can provide.
// Persistent storage comes from volumeClaimTemplates; a pod volume named
// like a claim template is replaced by the claim, whatever its source.
var supportedVolumeSources = []string{"emptyDir", "hostPath"}

// validatePodSpec checks a StatefulSet's pod template spec; claims are the
// names of its volumeClaimTemplates, which containers may mount.
func validatePodSpec(spec *corev1.PodSpec, claims sets.Set[string], fldPath *field.Path) field.ErrorList {
	volumes, errs := validateVolumes(spec.Volumes, claims, fldPath.Child("volumes"))
	volumes = volumes.Union(claims)

	if len(spec.Containers) == 0 {
		errs = append(errs, field.Required(fldPath.Child("containers"), ""))
	}
	names := sets.New[string]()
	for i := range spec.InitContainers {
		errs = append(errs, validateContainer(&spec.InitContainers[i], true, names, volumes, fldPath.Child("initContainers").Index(i))...)
	}
	for i := range spec.Containers {
		errs = append(errs, validateContainer(&spec.Containers[i], false, names, volumes, fldPath.Child("containers").Index(i))...)
	}
	if spec.HostNetwork {
		// On the node's network a container listens on the node's port.
		for i, c := range spec.Containers {
			for j, p := range c.Ports {
				if p.HostPort != 0 && p.HostPort != p.ContainerPort {
					errs = append(errs, field.Invalid(fldPath.Child("containers").Index(i).Child("ports").Index(j).Child("hostPort"),
						p.HostPort, "must match `containerPort` when `hostNetwork` is true"))
				}
			}
		}
	}
	if len(spec.EphemeralContainers) > 0 {
		errs = append(errs, field.Forbidden(fldPath.Child("ephemeralContainers"), "cannot be set in a pod template"))
	}

	switch spec.DNSPolicy {
	case corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault:
	case corev1.DNSNone:
		if spec.DNSConfig == nil {
			errs = append(errs, field.Required(fldPath.Child("dnsConfig"), "must provide `dnsConfig` when `dnsPolicy` is None"))
		}
	default:
		errs = append(errs, field.NotSupported(fldPath.Child("dnsPolicy"), spec.DNSPolicy,
			[]corev1.DNSPolicy{corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault, corev1.DNSNone}))
	}
	if g := spec.TerminationGracePeriodSeconds; g != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(*g, fldPath.Child("terminationGracePeriodSeconds"))...)
	}
	if spec.NodeName != "" {
		errs = append(errs, field.Forbidden(fldPath.Child("nodeName"), "pods are assigned to nodes by Stead's placer; a template may not name a node"))
	}
	errs = append(errs, validateResourceList(spec.Overhead, fldPath.Child("overhead"))...)
	if spec.Resources != nil {
		errs = append(errs, validateResources(spec.Resources, fldPath.Child("resources"))...)
	}
	return errs
}

// validateVolumes checks the pod's volumes and returns their names.
func validateVolumes(volumes []corev1.Volume, claims sets.Set[string], fldPath *field.Path) (sets.Set[string], field.ErrorList) {
	var errs field.ErrorList
	names := sets.New[string]()
	for i := range volumes {
		v := &volumes[i]
		path := fldPath.Index(i)
		switch {
		case v.Name == "":
			errs = append(errs, field.Required(path.Child("name"), ""))
		case names.Has(v.Name):
			errs = append(errs, field.Duplicate(path.Child("name"), v.Name))
		default:
			for _, msg := range validation.IsDNS1123Label(v.Name) {
				errs = append(errs, field.Invalid(path.Child("name"), v.Name, msg))
			}
			names.Insert(v.Name)
		}
		if claims.Has(v.Name) {
			continue // replaced by the claim of the same name
		}
		sources := volumeSources(&v.VolumeSource)
		switch {
		case len(sources) == 0:
			errs = append(errs, field.Required(path, "must specify a volume type"))
		case len(sources) > 1:
			errs = append(errs, field.Forbidden(path.Child(sources[1]), "may not specify more than 1 volume type"))
		case !sets.New(supportedVolumeSources...).Has(sources[0]):
			errs = append(errs, field.NotSupported(path, sources[0], supportedVolumeSources))
		case v.EmptyDir != nil:
			errs = append(errs, validateEmptyDir(v.EmptyDir, path.Child("emptyDir"))...)
		case v.HostPath != nil:
			errs = append(errs, validateHostPath(v.HostPath, path.Child("hostPath"))...)
		}
	}
	return names, errs
}

// volumeSources returns the JSON names of the sources set in vs.
func volumeSources(vs *corev1.VolumeSource) []string {
	var out []string
	v := reflect.ValueOf(vs).Elem()
	for i := 0; i < v.NumField(); i++ {
		if f := v.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
			out = append(out, name)
		}
	}
	return out
}

func noVolumeSource(vs *corev1.VolumeSource) bool { return len(volumeSources(vs)) == 0 }

func validateEmptyDir(e *corev1.EmptyDirVolumeSource, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch e.Medium {
	case corev1.StorageMediumDefault, corev1.StorageMediumMemory:
	default:
		errs = append(errs, field.NotSupported(fldPath.Child("medium"), e.Medium,
			[]corev1.StorageMedium{corev1.StorageMediumDefault, corev1.StorageMediumMemory}))
	}
	if e.SizeLimit != nil && e.SizeLimit.Sign() < 0 {
		errs = append(errs, field.Invalid(fldPath.Child("sizeLimit"), e.SizeLimit.String(), apivalidation.IsNegativeErrorMsg))
	}
	return errs
}

func validateHostPath(h *corev1.HostPathVolumeSource, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if h.Path == "" {
		errs = append(errs, field.Required(fldPath.Child("path"), ""))
	} else {
		if !path.IsAbs(h.Path) {
			errs = append(errs, field.Invalid(fldPath.Child("path"), h.Path, "must be an absolute path"))
		}
		errs = append(errs, validateNoBacksteps(h.Path, fldPath.Child("path"))...)
	}
	if h.Type != nil {
		switch *h.Type {
		case corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory, corev1.HostPathFileOrCreate,
			corev1.HostPathFile, corev1.HostPathSocket, corev1.HostPathCharDev, corev1.HostPathBlockDev:
		default:
			errs = append(errs, field.NotSupported(fldPath.Child("type"), *h.Type, []corev1.HostPathType{
				corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory, corev1.HostPathFileOrCreate,
				corev1.HostPathFile, corev1.HostPathSocket, corev1.HostPathCharDev, corev1.HostPathBlockDev}))
		}
	}
	return errs
}

// validateContainer checks one container; names holds the names of the
// containers seen so far (init and regular share one namespace) and
// volumes the names a mount may refer to.
func validateContainer(c *corev1.Container, init bool, names, volumes sets.Set[string], fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	namePath := fldPath.Child("name")
	switch {
	case c.Name == "":
		errs = append(errs, field.Required(namePath, ""))
	case names.Has(c.Name):
		errs = append(errs, field.Duplicate(namePath, c.Name))
	default:
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			errs = append(errs, field.Invalid(namePath, c.Name, msg))
		}
		names.Insert(c.Name)
	}

	if c.Image == "" {
		errs = append(errs, field.Required(fldPath.Child("image"), ""))
	} else if strings.TrimSpace(c.Image) != c.Image {
		errs = append(errs, field.Invalid(fldPath.Child("image"), c.Image, "must not have leading or trailing whitespace"))
	}
	switch c.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	case "":
		errs = append(errs, field.Required(fldPath.Child("imagePullPolicy"), ""))
	default:
		errs = append(errs, field.NotSupported(fldPath.Child("imagePullPolicy"), c.ImagePullPolicy,
			[]corev1.PullPolicy{corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever}))
	}

	sidecar := init && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
	if c.RestartPolicy != nil {
		switch {
		case !init:
			errs = append(errs, field.Forbidden(fldPath.Child("restartPolicy"), "may not be set for non-init containers"))
		case !sidecar:
			errs = append(errs, field.NotSupported(fldPath.Child("restartPolicy"), *c.RestartPolicy,
				[]corev1.ContainerRestartPolicy{corev1.ContainerRestartPolicyAlways}))
		}
	}
	if len(c.RestartPolicyRules) > 0 {
		errs = append(errs, field.Forbidden(fldPath.Child("restartPolicyRules"), "is not supported by Stead"))
	}

	errs = append(errs, validateContainerPorts(c.Ports, fldPath.Child("ports"))...)
	errs = append(errs, validateEnv(c.Env, fldPath.Child("env"))...)
	if len(c.EnvFrom) > 0 {
		errs = append(errs, field.Forbidden(fldPath.Child("envFrom"), "is not supported by Stead, which has no ConfigMaps or Secrets"))
	}
	errs = append(errs, validateResources(&c.Resources, fldPath.Child("resources"))...)
	errs = append(errs, validateVolumeMounts(c.VolumeMounts, volumes, fldPath.Child("volumeMounts"))...)
	if len(c.VolumeDevices) > 0 {
		errs = append(errs, field.Forbidden(fldPath.Child("volumeDevices"), "block volumes are not supported by Stead"))
	}

	probes := []struct {
		name  string
		probe *corev1.Probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}}
	for _, p := range probes {
		if p.probe == nil {
			continue
		}
		if init && !sidecar {
			errs = append(errs, field.Forbidden(fldPath.Child(p.name), "may not be set for init containers without restartPolicy=Always"))
			continue
		}
		errs = append(errs, validateProbe(p.probe, p.name, fldPath.Child(p.name))...)
	}
	if c.Lifecycle != nil {
		lp := fldPath.Child("lifecycle")
		if init && !sidecar {
			errs = append(errs, field.Forbidden(lp, "may not be set for init containers without restartPolicy=Always"))
		} else {
			for _, h := range []struct {
				name    string
				handler *corev1.LifecycleHandler
			}{{"postStart", c.Lifecycle.PostStart}, {"preStop", c.Lifecycle.PreStop}} {
				if h.handler != nil {
					errs = append(errs, validateHandler(handlerOf(h.handler), lp.Child(h.name))...)
				}
			}
		}
	}
	return errs
}

var supportedProtocols = []corev1.Protocol{corev1.ProtocolSCTP, corev1.ProtocolTCP, corev1.ProtocolUDP}

func validateProtocol(p corev1.Protocol, fldPath *field.Path) field.ErrorList {
	switch p {
	case "":
		return field.ErrorList{field.Required(fldPath, "")}
	case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		return nil
	}
	return field.ErrorList{field.NotSupported(fldPath, p, supportedProtocols)}
}

func validateContainerPorts(ports []corev1.ContainerPort, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i := range ports {
		p := &ports[i]
		path := fldPath.Index(i)
		if p.Name != "" {
			for _, msg := range validation.IsValidPortName(p.Name) {
				errs = append(errs, field.Invalid(path.Child("name"), p.Name, msg))
			}
			if names.Has(p.Name) {
				errs = append(errs, field.Duplicate(path.Child("name"), p.Name))
			}
			names.Insert(p.Name)
		}
		if p.ContainerPort == 0 {
			errs = append(errs, field.Required(path.Child("containerPort"), ""))
		} else {
			for _, msg := range validation.IsValidPortNum(int(p.ContainerPort)) {
				errs = append(errs, field.Invalid(path.Child("containerPort"), p.ContainerPort, msg))
			}
		}
		if p.HostPort != 0 {
			for _, msg := range validation.IsValidPortNum(int(p.HostPort)) {
				errs = append(errs, field.Invalid(path.Child("hostPort"), p.HostPort, msg))
			}
		}
		if p.HostIP != "" {
			errs = append(errs, validation.IsValidIP(path.Child("hostIP"), p.HostIP)...)
		}
		errs = append(errs, validateProtocol(p.Protocol, path.Child("protocol"))...)
	}
	return errs
}

// supportedFieldPaths are what an env var may take from its pod
// (fieldRef.fieldPath), besides labels['...'] and annotations['...'].
var supportedFieldPaths = []string{
	"metadata.name", "metadata.namespace", "metadata.uid",
	"spec.nodeName", "spec.serviceAccountName",
	"status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs",
}

var supportedResourceFields = []string{
	"limits.cpu", "limits.memory", "limits.ephemeral-storage",
	"requests.cpu", "requests.memory", "requests.ephemeral-storage",
}

func validateEnv(env []corev1.EnvVar, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i := range env {
		e := &env[i]
		path := fldPath.Index(i)
		if e.Name == "" {
			errs = append(errs, field.Required(path.Child("name"), ""))
		} else {
			for _, msg := range validation.IsRelaxedEnvVarName(e.Name) {
				errs = append(errs, field.Invalid(path.Child("name"), e.Name, msg))
			}
		}
		vf := e.ValueFrom
		if vf == nil {
			continue
		}
		vfPath := path.Child("valueFrom")
		if e.Value != "" {
			errs = append(errs, field.Invalid(vfPath, "", "may not be specified when `value` is not empty"))
		}
		n := 0
		if vf.FieldRef != nil {
			n++
			fp := vf.FieldRef.FieldPath
			switch {
			case vf.FieldRef.APIVersion != "v1":
				errs = append(errs, field.NotSupported(vfPath.Child("fieldRef", "apiVersion"), vf.FieldRef.APIVersion, []string{"v1"}))
			case fp == "":
				errs = append(errs, field.Required(vfPath.Child("fieldRef", "fieldPath"), ""))
			case strings.HasPrefix(fp, "metadata.labels['") && strings.HasSuffix(fp, "']"),
				strings.HasPrefix(fp, "metadata.annotations['") && strings.HasSuffix(fp, "']"),
				sets.New(supportedFieldPaths...).Has(fp):
			default:
				errs = append(errs, field.NotSupported(vfPath.Child("fieldRef", "fieldPath"), fp, supportedFieldPaths))
			}
		}
		if vf.ResourceFieldRef != nil {
			n++
			if r := vf.ResourceFieldRef.Resource; !sets.New(supportedResourceFields...).Has(r) {
				errs = append(errs, field.NotSupported(vfPath.Child("resourceFieldRef", "resource"), r, supportedResourceFields))
			}
		}
		for _, unsupported := range []struct {
			name string
			set  bool
		}{
			{"configMapKeyRef", vf.ConfigMapKeyRef != nil},
			{"secretKeyRef", vf.SecretKeyRef != nil},
			{"fileKeyRef", vf.FileKeyRef != nil},
		} {
			if unsupported.set {
				n++
				errs = append(errs, field.Forbidden(vfPath.Child(unsupported.name), "is not supported by Stead, which has no ConfigMaps or Secrets"))
			}
		}
		switch {
		case n == 0:
			errs = append(errs, field.Invalid(vfPath, "", "must specify one of: `fieldRef`, `resourceFieldRef`"))
		case n > 1:
			errs = append(errs, field.Invalid(vfPath, "", "may not have more than one field specified at a time"))
		}
	}
	return errs
}

func validateResources(r *corev1.ResourceRequirements, fldPath *field.Path) field.ErrorList {
	errs := validateResourceList(r.Limits, fldPath.Child("limits"))
	errs = append(errs, validateResourceList(r.Requests, fldPath.Child("requests"))...)
	for name, req := range r.Requests {
		if limit, ok := r.Limits[name]; ok && req.Cmp(limit) > 0 {
			errs = append(errs, field.Invalid(fldPath.Child("requests").Key(string(name)), req.String(),
				"must be less than or equal to "+string(name)+" limit of "+limit.String()))
		}
	}
	if len(r.Claims) > 0 {
		errs = append(errs, field.Forbidden(fldPath.Child("claims"), "dynamic resource claims are not supported by Stead"))
	}
	return errs
}

func validateResourceList(list corev1.ResourceList, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, name := range sets.List(sets.KeySet(list)) {
		q := list[name]
		path := fldPath.Key(string(name))
		for _, msg := range validation.IsQualifiedName(string(name)) {
			errs = append(errs, field.Invalid(path, string(name), msg))
		}
		if q.Sign() < 0 {
			errs = append(errs, field.Invalid(path, q.String(), apivalidation.IsNegativeErrorMsg))
		}
	}
	return errs
}

// validateVolumeMounts checks that each mount names a volume or a claim
// template, at a unique absolute path, with a subPath that stays inside
// the volume. The agent resolves subPath beneath the volume without
// following symlinks; this lexical check comes first.
func validateVolumeMounts(mounts []corev1.VolumeMount, volumes sets.Set[string], fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	paths := sets.New[string]()
	for i := range mounts {
		m := &mounts[i]
		path := fldPath.Index(i)
		if m.Name == "" {
			errs = append(errs, field.Required(path.Child("name"), ""))
		} else if !volumes.Has(m.Name) {
			errs = append(errs, field.NotFound(path.Child("name"), m.Name))
		}
		mp := path.Child("mountPath")
		switch {
		case m.MountPath == "":
			errs = append(errs, field.Required(mp, ""))
		case !filepath.IsAbs(m.MountPath):
			errs = append(errs, field.Invalid(mp, m.MountPath, "must be an absolute path"))
		case paths.Has(m.MountPath):
			errs = append(errs, field.Invalid(mp, m.MountPath, "must be unique"))
		default:
			paths.Insert(m.MountPath)
		}
		if m.SubPath != "" {
			errs = append(errs, validateSubPath(m.SubPath, path.Child("subPath"))...)
		}
		if m.SubPathExpr != "" {
			errs = append(errs, field.Forbidden(path.Child("subPathExpr"), "is not supported by Stead; use subPath"))
		}
		if p := m.MountPropagation; p != nil {
			switch *p {
			case corev1.MountPropagationNone, corev1.MountPropagationHostToContainer, corev1.MountPropagationBidirectional:
			default:
				errs = append(errs, field.NotSupported(path.Child("mountPropagation"), *p, []corev1.MountPropagationMode{
					corev1.MountPropagationBidirectional, corev1.MountPropagationHostToContainer, corev1.MountPropagationNone}))
			}
		}
	}
	return errs
}

// validateSubPath requires a relative path with no ".." element.
func validateSubPath(p string, fldPath *field.Path) field.ErrorList {
	if path.IsAbs(p) || filepath.IsAbs(p) {
		return field.ErrorList{field.Invalid(fldPath, p, "must be a relative path")}
	}
	if errs := validateNoBacksteps(p, fldPath); len(errs) > 0 {
		return errs
	}
	if !filepath.IsLocal(p) {
		return field.ErrorList{field.Invalid(fldPath, p, "must be a local path inside the volume")}
	}
	return nil
}

func validateNoBacksteps(p string, fldPath *field.Path) field.ErrorList {
	for _, part := range strings.Split(filepath.ToSlash(p), "/") {
		if part == ".." {
			return field.ErrorList{field.Invalid(fldPath, p, "must not contain '..'")}
		}
	}
	return nil
}

// handler is what probes and lifecycle hooks have in common.
type handler struct {
	exec      *corev1.ExecAction
	httpGet   *corev1.HTTPGetAction
	tcpSocket *corev1.TCPSocketAction
	grpc      *corev1.GRPCAction
	sleep     *corev1.SleepAction
}

func handlerOf(h *corev1.LifecycleHandler) handler {
	return handler{exec: h.Exec, httpGet: h.HTTPGet, tcpSocket: h.TCPSocket, sleep: h.Sleep}
}

func validateProbe(p *corev1.Probe, kind string, fldPath *field.Path) field.ErrorList {
	errs := validateHandler(handler{exec: p.Exec, httpGet: p.HTTPGet, tcpSocket: p.TCPSocket, grpc: p.GRPC}, fldPath)
	for _, f := range []struct {
		name  string
		value int32
	}{
		{"initialDelaySeconds", p.InitialDelaySeconds},
		{"timeoutSeconds", p.TimeoutSeconds},
		{"periodSeconds", p.PeriodSeconds},
		{"successThreshold", p.SuccessThreshold},
		{"failureThreshold", p.FailureThreshold},
	} {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(f.value), fldPath.Child(f.name))...)
	}
	if kind != "readinessProbe" && p.SuccessThreshold != 1 {
		errs = append(errs, field.Invalid(fldPath.Child("successThreshold"), p.SuccessThreshold, "must be 1"))
	}
	if g := p.TerminationGracePeriodSeconds; g != nil {
		if kind == "readinessProbe" {
			errs = append(errs, field.Invalid(fldPath.Child("terminationGracePeriodSeconds"), *g, "must not be set for readinessProbes"))
		} else if *g <= 0 {
			errs = append(errs, field.Invalid(fldPath.Child("terminationGracePeriodSeconds"), *g, "must be greater than 0"))
		}
	}
	return errs
}

// validateHandler requires exactly one action and checks it.
func validateHandler(h handler, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	n := 0
	count := func(name string) bool {
		n++
		if n > 1 {
			errs = append(errs, field.Forbidden(fldPath.Child(name), "may not specify more than 1 handler type"))
			return false
		}
		return true
	}
	if h.exec != nil && count("exec") {
		if len(h.exec.Command) == 0 {
			errs = append(errs, field.Required(fldPath.Child("exec", "command"), ""))
		}
	}
	if h.httpGet != nil && count("httpGet") {
		hp := fldPath.Child("httpGet")
		errs = append(errs, validatePortNumOrName(h.httpGet.Port, hp.Child("port"))...)
		switch h.httpGet.Scheme {
		case corev1.URISchemeHTTP, corev1.URISchemeHTTPS:
		default:
			errs = append(errs, field.NotSupported(hp.Child("scheme"), h.httpGet.Scheme, []corev1.URIScheme{corev1.URISchemeHTTP, corev1.URISchemeHTTPS}))
		}
		if h.httpGet.Path == "" {
			errs = append(errs, field.Required(hp.Child("path"), ""))
		}
		for j, hdr := range h.httpGet.HTTPHeaders {
			for _, msg := range validation.IsHTTPHeaderName(hdr.Name) {
				errs = append(errs, field.Invalid(hp.Child("httpHeaders").Index(j).Child("name"), hdr.Name, msg))
			}
		}
	}
	if h.tcpSocket != nil && count("tcpSocket") {
		errs = append(errs, validatePortNumOrName(h.tcpSocket.Port, fldPath.Child("tcpSocket", "port"))...)
	}
	if h.grpc != nil && count("grpc") {
		for _, msg := range validation.IsValidPortNum(int(h.grpc.Port)) {
			errs = append(errs, field.Invalid(fldPath.Child("grpc", "port"), h.grpc.Port, msg))
		}
	}
	if h.sleep != nil && count("sleep") {
		errs = append(errs, apivalidation.ValidateNonnegativeField(h.sleep.Seconds, fldPath.Child("sleep", "seconds"))...)
	}
	if n == 0 {
		errs = append(errs, field.Required(fldPath, "must specify a handler type"))
	}
	return errs
}

func validatePortNumOrName(port intstr.IntOrString, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch port.Type {
	case intstr.Int:
		for _, msg := range validation.IsValidPortNum(port.IntValue()) {
			errs = append(errs, field.Invalid(fldPath, port.IntValue(), msg))
		}
	case intstr.String:
		for _, msg := range validation.IsValidPortName(port.StrVal) {
			errs = append(errs, field.Invalid(fldPath, port.StrVal, msg))
		}
	default:
		errs = append(errs, field.Invalid(fldPath, port, "must be a port number or name"))
	}
	return errs
}
