package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stead-io/stead/api"
)

// Labels the agent puts on every container, so that a restarted agent
// knows from containerd alone which pod, assignment and attempt each
// container belongs to.
const (
	// labelPod is "<namespace>/<name>" of the pod.
	labelPod = "stead.io/pod"
	// labelPodUID is the pod object's UID.
	labelPodUID = "stead.io/pod-uid"
	// labelGeneration is the fencing generation of the pod's assignment.
	labelGeneration = api.AnnotationGeneration
	// labelSandbox is the ID of the pod's sandbox: its network, its
	// directory and its logs.
	labelSandbox = "stead.io/sandbox"
	// labelContainer is the container's name in the pod spec.
	labelContainer = "stead.io/container"
	// labelInit is "true" on init containers.
	labelInit = "stead.io/init"
	// labelAttempt numbers the runs of one container: 0 for the first,
	// which is also its restart count.
	labelAttempt = "stead.io/attempt"
	// labelCrashStreak counts the quick crashes in a row before this
	// attempt, which set the restart back-off.
	labelCrashStreak = "stead.io/crash-streak"
)

// podKey names a pod on this node. Everything about one pod name is done
// by one worker, one step at a time.
type podKey struct{ Namespace, Name string }

func keyOf(pod *corev1.Pod) podKey { return podKey{pod.Namespace, pod.Name} }

func (k podKey) String() string { return k.Namespace + "/" + k.Name }

func parseKey(s string) (podKey, bool) {
	ns, name, ok := strings.Cut(s, "/")
	return podKey{ns, name}, ok && ns != "" && name != ""
}

// incarnation is one assignment of a pod to this node: the pod object and
// the generation of its assignment. Containers of any other incarnation of
// the same pod name are stopped before this one runs.
type incarnation struct {
	UID        types.UID
	Generation int64
}

func incarnationOf(pod *corev1.Pod) incarnation {
	return incarnation{UID: pod.UID, Generation: generationOf(pod)}
}

// generationOf reads a pod's fencing generation; 0 when it has none.
func generationOf(pod *corev1.Pod) int64 {
	g, err := strconv.ParseInt(pod.Annotations[api.AnnotationGeneration], 10, 64)
	if err != nil || g < 0 {
		return 0
	}
	return g
}

// maxSandboxID keeps sandbox IDs within what CNI and file names allow.
const maxSandboxID = 100

// maxContainerID is containerd's limit on identifiers.
const maxContainerID = 76

// sandboxID names a pod incarnation's sandbox:
// "<namespace>_<name>_<uid prefix>_<generation>", or a hash of that when
// it would be too long.
func sandboxID(k podKey, inc incarnation) string {
	uid := strings.ReplaceAll(string(inc.UID), "-", "")
	if len(uid) > 8 {
		uid = uid[:8]
	}
	if uid == "" {
		uid = "0"
	}
	id := k.Namespace + "_" + k.Name + "_" + uid + "_" + strconv.FormatInt(inc.Generation, 10)
	if len(id) <= maxSandboxID {
		return id
	}
	return "sb-" + hash(id, 32)
}

// containerID names one attempt of a container of a sandbox:
// "<sandbox>_<container>_<attempt>", or a hash of the first two parts
// when that is too long for containerd.
func containerID(sandbox, container string, attempt int) string {
	suffix := "_" + strconv.Itoa(attempt)
	id := sandbox + "_" + container
	if len(id)+len(suffix) <= maxContainerID {
		return id + suffix
	}
	return "c-" + hash(id, 40) + suffix
}

func hash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}
