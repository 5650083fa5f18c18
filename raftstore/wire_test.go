package raftstore_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
)

// everyKind are objects of every kind the store holds, with the fields
// Stead uses set: maps, lists, quantities, times, raw extensions.
const everyKind = `
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: shop, uid: 9f1c, generation: 3, labels: {app: web}, annotations: {note: "x"}, creationTimestamp: "2026-11-21T10:00:00Z"}
spec:
  replicas: 3
  serviceName: web
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: web}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 1, maxUnavailable: 2}}
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete, whenScaled: Retain}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 10
      nodeSelector: {disk: ssd}
      tolerations: [{key: dedicated, operator: Equal, value: db, effect: NoSchedule}]
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: web}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: web
        image: web:1
        command: [/web, --port, "80"]
        env: [{name: MODE, value: prod}]
        ports: [{name: http, containerPort: 80, hostPort: 8080}]
        resources: {requests: {cpu: 250m, memory: 64Mi}, limits: {memory: 128Mi}}
        readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 2}
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
status: {replicas: 2, readyReplicas: 1, currentRevision: web-5d8c, updateRevision: web-5d8c, observedGeneration: 3}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {clusterIP: None, selector: {app: web}, ports: [{name: http, port: 80, targetPort: http, protocol: TCP}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: shop
  labels: {app: web, apps.kubernetes.io/pod-index: "0"}
  ownerReferences: [{apiVersion: apps/v1, kind: StatefulSet, name: web, uid: 9f1c, controller: true}]
  deletionTimestamp: "2026-11-21T11:00:00Z"
  deletionGracePeriodSeconds: 30
spec:
  nodeName: n1
  hostname: web-0
  subdomain: web
  containers: [{name: web, image: web:1, resources: {requests: {cpu: "1", memory: 1G}}}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data-web-0}}]
status:
  phase: Running
  podIP: 10.1.0.5
  conditions: [{type: Ready, status: "True", lastTransitionTime: "2026-11-21T10:01:02Z"}]
  containerStatuses: [{name: web, ready: true, restartCount: 2, image: web:1, imageID: sha256:ab, state: {running: {startedAt: "2026-11-21T10:01:00Z"}}}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data-web-0, namespace: shop, finalizers: [kubernetes.io/pvc-protection], annotations: {volume.kubernetes.io/selected-node: n1}}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}, volumeMode: Filesystem}
status: {phase: Bound, capacity: {storage: 1Gi}}
---
apiVersion: apps/v1
kind: ControllerRevision
metadata: {name: web-5d8c, namespace: shop}
revision: 4
data: {spec: {template: {metadata: {labels: {app: web}}}}}
---
apiVersion: v1
kind: Event
metadata: {name: web.1, namespace: shop}
involvedObject: {kind: StatefulSet, namespace: shop, name: web, uid: 9f1c}
reason: SuccessfulCreate
message: create Pod web-0 in StatefulSet web successful
type: Normal
count: 2
firstTimestamp: "2026-11-21T10:00:00Z"
lastTimestamp: "2026-11-21T10:00:05Z"
source: {component: statefulset-controller}
---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {kubernetes.io/hostname: n1}}
spec: {podCIDR: 10.1.0.0/24, taints: [{key: dedicated, value: db, effect: NoSchedule}]}
status:
  capacity: {cpu: "2", memory: 24Gi, pods: "110"}
  allocatable: {cpu: 1900m, memory: 23Gi, pods: "110"}
  addresses: [{type: InternalIP, address: 10.0.0.1}]
  conditions: [{type: Ready, status: "True", reason: AgentReady, lastHeartbeatTime: "2026-11-21T10:00:00Z", lastTransitionTime: "2026-11-21T09:00:00Z"}]
`

// everyKindOps returns puts of every object of everyKind, a server record
// and a token, the pod's with its generation stamped.
func everyKindOps(t *testing.T) []raftstore.Op {
	t.Helper()
	var ops []raftstore.Op
	for _, doc := range strings.Split(everyKind, "\n---\n") {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		var kind raftstore.Kind
		for _, k := range raftstore.Kinds {
			if k.TypeMeta() == meta {
				kind = k
			}
		}
		obj, err := raftstore.NewObject(kind)
		if err != nil {
			t.Fatalf("%s: %v", meta, err)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatal(err)
		}
		op := put(t, obj)
		op.StampGeneration = kind == raftstore.Pods
		ops = append(ops, op)
	}
	revoked := metav1.NewTime(metav1.Now().Rfc3339Copy().Time)
	return append(ops,
		put(t, &api.Server{ObjectMeta: metav1.ObjectMeta{Name: "s1"}, Spec: api.ServerSpec{RaftAddr: "10.0.0.1:7001", HTTPAddr: "10.0.0.1:7000", LogVersion: 3}}),
		put(t, &api.Token{ObjectMeta: metav1.ObjectMeta{Name: "t1"}, Spec: api.TokenSpec{Role: api.TokenAgent, Node: "n1", SecretHash: "ab", Revoked: &revoked}}))
}

// TestLogVersionsAgree: every kind of object, written in each log
// version's entries, or in a log that mixes them as a cluster's log does
// across an upgrade, gives one state.
func TestLogVersionsAgree(t *testing.T) {
	ops := everyKindOps(t)
	txn := func(i int) raftstore.Txn {
		return raftstore.Txn{RequestID: "r" + string(rune('a'+i)), Ops: []raftstore.Op{ops[i]}}
	}
	apply := func(f *raftstore.FSM, index uint64, data []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var results []raftstore.Result
		switch r := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}).(type) {
		case raftstore.Result:
			results = append(results, r)
		case []raftstore.Result:
			results = r
		}
		for _, r := range results {
			if r.Err != nil {
				t.Fatalf("entry %d: %v", index, r.Err)
			}
		}
	}
	// Each object in an entry of its own, one log per version.
	logs := map[int]*raftstore.FSM{}
	for _, version := range []int{1, 2, raftstore.LogVersion} {
		f := raftstore.NewFSM()
		for i := range ops {
			data, err := raftstore.EncodeTxnAs(txn(i), version)
			apply(f, uint64(i+1), data, err)
		}
		logs[version] = f
	}
	// The same writes, two to an entry where the version has such
	// entries, versions in turn as an upgrade writes them.
	mixed := raftstore.NewFSM()
	versions := []int{1, 2, raftstore.LogVersion, 2, raftstore.LogVersion}
	for i, index := 0, uint64(1); i < len(ops); index++ {
		switch version := versions[int(index-1)%len(versions)]; {
		case version == 1 || i == len(ops)-1:
			data, err := raftstore.EncodeTxnAs(txn(i), version)
			apply(mixed, index, data, err)
			i++
		default:
			data, err := raftstore.EncodeTxnsAs([]raftstore.Txn{txn(i), txn(i + 1)}, version)
			apply(mixed, index, data, err)
			i += 2
		}
	}
	want := logs[1]
	if n := want.View().Len(); n != len(ops) {
		t.Fatalf("log version 1 stored %d objects, want %d", n, len(ops))
	}
	// The versions agree on each object, resourceVersion and generation
	// included; the mixed log stores at other indexes, so it is compared
	// without them.
	sameState(t, "log version 2", want.View(), logs[2].View())
	sameState(t, "log version 3", want.View(), logs[raftstore.LogVersion].View())
	a, b := encodeAll(t, want.View()), encodeAll(t, mixed.View())
	if len(a) != len(b) {
		t.Fatalf("mixed log: %d objects, want %d", len(b), len(a))
	}
	for i := range a {
		if stripVersions(a[i]) != stripVersions(b[i]) {
			t.Errorf("mixed log: object %d:\n got %s\nwant %s", i, b[i], a[i])
		}
	}
}

// stripVersions blanks the resourceVersion and generation annotation in
// an object's JSON.
func stripVersions(s string) string {
	for _, key := range []string{`"resourceVersion":"`, `"` + api.AnnotationGeneration + `":"`} {
		if i := strings.Index(s, key); i >= 0 {
			j := i + len(key) + strings.IndexByte(s[i+len(key):], '"')
			s = s[:i+len(key)] + s[j:]
		}
	}
	return s
}

// TestBinaryEntryRefusesWhatItCannotDecode: a binary entry cut short, or
// with a field this version does not know, is a corrupt log, not a
// transaction to guess at.
func TestBinaryEntryRefusesWhatItCannotDecode(t *testing.T) {
	data, err := raftstore.EncodeTxn(raftstore.Txn{RequestID: "r", Ops: []raftstore.Op{put(t, pod("default", "web-0"))}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		// want is in the panic's message.
		want string
	}{
		{"cut short", data[:len(data)-3], "malformed binary transaction"},
		{"unknown field", append(append([]byte{}, data...), 15<<3|2, 1, 'x'), "unknown transaction field 15"},
		{"not a pod", append([]byte{data[0]}, []byte("\x0a\x01r\x12\x1f\x0a\x03put\x12\x04pods\x1a\x07default\x22\x05web-0\x2a\x02\xff\xff")...), "decode pods default/web-0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := raftstore.NewFSM()
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "corrupt log entry 1") || !strings.Contains(r.(string), tc.want) {
					t.Fatalf("Apply did not panic naming the entry and %q: %v", tc.want, r)
				}
				if f.View().Len() != 0 {
					t.Errorf("state changed: %d objects", f.View().Len())
				}
			}()
			f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: tc.data})
		})
	}
}

// TestValidateTxnRefusesARekeyedProtobufOp: an op whose kind or key was
// changed after PutOp encoded its object in protobuf is refused before it
// reaches the log; the same change with the object in JSON is decoded and
// checked as before.
func TestValidateTxnRefusesARekeyedProtobufOp(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*raftstore.Op)
	}{
		{"kind", func(op *raftstore.Op) { op.Kind = raftstore.Services }},
		{"name", func(op *raftstore.Op) { op.Name = "web-1" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := put(t, pod("default", "web-0"))
			if err := raftstore.ValidateTxn(raftstore.Txn{RequestID: "r", Ops: []raftstore.Op{op}}); err != nil {
				t.Fatalf("the op as PutOp built it: %v", err)
			}
			tc.change(&op)
			err := raftstore.ValidateTxn(raftstore.Txn{RequestID: "r", Ops: []raftstore.Op{op}})
			if !errors.Is(err, raftstore.ErrInvalid) || !strings.Contains(err.Error(), "build the op with PutOp") {
				t.Fatalf("after changing its %s: %v, want ErrInvalid naming PutOp", tc.name, err)
			}
		})
	}
}
