package api

import (
	"strconv"
	"strings"
)

// Labels and annotations Stead sets on the objects it creates. The
// Kubernetes ones keep their upstream names so that selectors written for
// Kubernetes keep working.
const (
	// LabelPodName is set on every StatefulSet pod to its own name.
	LabelPodName = "statefulset.kubernetes.io/pod-name"
	// LabelPodIndex is set on every StatefulSet pod to its ordinal, in decimal.
	LabelPodIndex = "apps.kubernetes.io/pod-index"
	// LabelRevisionHash names the ControllerRevision a pod was built from.
	LabelRevisionHash = "controller-revision-hash"
	// LabelRevisionTemplateHash is set on ControllerRevisions to their hash.
	LabelRevisionTemplateHash = "controller.kubernetes.io/hash"

	// AnnotationGeneration carries the fencing generation of a pod's
	// assignment to its node: the Raft index that committed the assignment.
	// Agents and volumes refuse to act for a lower generation than one they
	// have seen.
	AnnotationGeneration = "stead.io/generation"
	// AnnotationReplaceStuckPods turns off (value "false") the replacement of
	// an outdated pod that never became Ready once its set's template changed.
	AnnotationReplaceStuckPods = "stead.io/replace-stuck-pods"
	// AnnotationRestartedAt is set on a set's pod template by
	// `stead rollout restart`, as `kubectl rollout restart` does.
	AnnotationRestartedAt = "kubectl.kubernetes.io/restartedAt"
)

// DefaultClusterDomain is the DNS domain of cluster names when none is configured.
const DefaultClusterDomain = "cluster.local"

// ReplicaName returns the name of ordinal ord of StatefulSet set: "web-0".
func ReplicaName(set string, ord int) string {
	return set + "-" + strconv.Itoa(ord)
}

// VolumeName returns the name of the volume claim made from template claim
// for ordinal ord of set: "www-web-0".
func VolumeName(claim, set string, ord int) string {
	return claim + "-" + ReplicaName(set, ord)
}

// ParseOrdinal splits a pod name of the form "<parent>-<ordinal>" into its
// parent and ordinal, as the regexp (.*)-([0-9]+)$ does in Kubernetes. It
// reports ok=false for a name that has no such form.
func ParseOrdinal(name string) (parent string, ord int, ok bool) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 || i == len(name)-1 {
		return "", -1, false
	}
	digits := name[i+1:]
	for _, c := range digits {
		if c < '0' || c > '9' {
			return "", -1, false
		}
	}
	n, err := strconv.Atoi(digits)
	if err != nil {
		return "", -1, false
	}
	return name[:i], n, true
}

// PodFQDN returns the fully qualified DNS name of a pod with the given
// hostname in the headless service svc of namespace ns:
// "web-0.nginx.default.svc.cluster.local".
func PodFQDN(hostname, svc, ns, domain string) string {
	return hostname + "." + svc + "." + ns + ".svc." + domain
}
