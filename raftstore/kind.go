package raftstore

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/stead-io/stead/api"
)

// Object is what the store holds: a Kubernetes-style object with metadata
// and a type. Objects read from the store are shared; DeepCopyObject
// before changing one.
type Object interface {
	metav1.Object
	runtime.Object
}

// Kind names a type of object. Its value is the resource name used in
// URLs ("statefulsets", "pods", ...).
type Kind string

// The kinds the store holds.
const (
	Namespaces             Kind = "namespaces"
	StatefulSets           Kind = "statefulsets"
	Services               Kind = "services"
	Pods                   Kind = "pods"
	PersistentVolumeClaims Kind = "persistentvolumeclaims"
	ControllerRevisions    Kind = "controllerrevisions"
	Events                 Kind = "events"
	Nodes                  Kind = "nodes"
	Servers                Kind = "servers"
	// Tokens are the ACL tokens. The API serves them only through its
	// ACL endpoints, and never their secrets' hashes.
	Tokens Kind = "tokens"
)

// Kinds lists every kind the store holds, in a fixed order.
var Kinds = []Kind{
	Namespaces, StatefulSets, Services, Pods, PersistentVolumeClaims,
	ControllerRevisions, Events, Nodes, Servers, Tokens,
}

// kindInfo is what the store knows about a kind.
type kindInfo struct {
	gvk        schema.GroupVersionKind
	namespaced bool
	// zero returns a new empty object of the kind.
	zero func() Object
}

var kindInfos = map[Kind]kindInfo{
	Namespaces: {
		gvk:  schema.GroupVersionKind{Version: "v1", Kind: "Namespace"},
		zero: func() Object { return &corev1.Namespace{} },
	},
	StatefulSets: {
		gvk:        schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"},
		namespaced: true,
		zero:       func() Object { return &appsv1.StatefulSet{} },
	},
	Services: {
		gvk:        schema.GroupVersionKind{Version: "v1", Kind: "Service"},
		namespaced: true,
		zero:       func() Object { return &corev1.Service{} },
	},
	Pods: {
		gvk:        schema.GroupVersionKind{Version: "v1", Kind: "Pod"},
		namespaced: true,
		zero:       func() Object { return &corev1.Pod{} },
	},
	PersistentVolumeClaims: {
		gvk:        schema.GroupVersionKind{Version: "v1", Kind: "PersistentVolumeClaim"},
		namespaced: true,
		zero:       func() Object { return &corev1.PersistentVolumeClaim{} },
	},
	ControllerRevisions: {
		gvk:        schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ControllerRevision"},
		namespaced: true,
		zero:       func() Object { return &appsv1.ControllerRevision{} },
	},
	Events: {
		gvk:        schema.GroupVersionKind{Version: "v1", Kind: "Event"},
		namespaced: true,
		zero:       func() Object { return &corev1.Event{} },
	},
	Nodes: {
		gvk:  schema.GroupVersionKind{Version: "v1", Kind: "Node"},
		zero: func() Object { return &corev1.Node{} },
	},
	Servers: {
		gvk:  schema.GroupVersionKind{Group: "stead.io", Version: "v1", Kind: "Server"},
		zero: func() Object { return &api.Server{} },
	},
	Tokens: {
		gvk:  schema.GroupVersionKind{Group: "stead.io", Version: "v1", Kind: "Token"},
		zero: func() Object { return &api.Token{} },
	},
}

// ParseKind returns the kind whose resource name is s.
func ParseKind(s string) (Kind, error) {
	k := Kind(s)
	if _, ok := kindInfos[k]; !ok {
		return "", fmt.Errorf("unknown kind %q", s)
	}
	return k, nil
}

// Valid reports whether k is one of the kinds the store holds.
func (k Kind) Valid() bool {
	_, ok := kindInfos[k]
	return ok
}

// Namespaced reports whether objects of kind k live in a namespace.
// Namespaces, nodes, servers and tokens are cluster-scoped: their namespace is "".
func (k Kind) Namespaced() bool {
	return kindInfos[k].namespaced
}

// TypeMeta returns the apiVersion and kind that objects of kind k carry,
// for example apps/v1 StatefulSet. It is empty for an unknown kind.
func (k Kind) TypeMeta() metav1.TypeMeta {
	info, ok := kindInfos[k]
	if !ok {
		return metav1.TypeMeta{}
	}
	apiVersion, kind := info.gvk.ToAPIVersionAndKind()
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

// NewObject returns an empty object of kind k, such as &appsv1.StatefulSet{}.
func NewObject(k Kind) (Object, error) {
	info, ok := kindInfos[k]
	if !ok {
		return nil, fmt.Errorf("unknown kind %q", k)
	}
	return info.zero(), nil
}

// KindOf returns the kind of obj from its Go type.
func KindOf(obj Object) (Kind, error) {
	switch obj.(type) {
	case *corev1.Namespace:
		return Namespaces, nil
	case *appsv1.StatefulSet:
		return StatefulSets, nil
	case *corev1.Service:
		return Services, nil
	case *corev1.Pod:
		return Pods, nil
	case *corev1.PersistentVolumeClaim:
		return PersistentVolumeClaims, nil
	case *appsv1.ControllerRevision:
		return ControllerRevisions, nil
	case *corev1.Event:
		return Events, nil
	case *corev1.Node:
		return Nodes, nil
	case *api.Server:
		return Servers, nil
	case *api.Token:
		return Tokens, nil
	}
	return "", fmt.Errorf("no kind for object type %T", obj)
}

// setTypeMeta stamps the canonical apiVersion and kind of k on obj.
func setTypeMeta(k Kind, obj Object) {
	obj.GetObjectKind().SetGroupVersionKind(kindInfos[k].gvk)
}
