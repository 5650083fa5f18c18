// Package api holds what crosses the wire between Stead's CLI, servers and
// agents: the names Stead gives to pods, volumes and DNS records, the
// decoding and validation of users' Kubernetes manifests, the few object
// types Kubernetes has no equivalent for, and the HTTP client.
//
// Stateful objects themselves are the Kubernetes types of k8s.io/api
// (StatefulSet, Service, Pod, PersistentVolumeClaim, ControllerRevision,
// Node, Event), so manifests and `-o json` output keep Kubernetes' shapes.
package api
