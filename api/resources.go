package api

import (
	"fmt"
	"sort"
	"strings"
)

// Resource describes one kind of object the API serves: the plural name in
// its URL path, its Kubernetes kind, and the short names the CLI accepts.
type Resource struct {
	// Name is the plural resource name used in URLs: "statefulsets".
	Name string
	// Kind is the Kubernetes kind: "StatefulSet".
	Kind string
	// APIVersion is the group/version objects of this kind carry.
	APIVersion string
	// Namespaced is false for cluster-scoped objects (nodes, namespaces, servers).
	Namespaced bool
	// Aliases are the other names the CLI accepts, as kubectl does.
	Aliases []string
}

// Resources lists every resource the API serves, in the order `stead get
// all` would show them.
var Resources = []Resource{
	{Name: "statefulsets", Kind: "StatefulSet", APIVersion: "apps/v1", Namespaced: true, Aliases: []string{"statefulset", "sts"}},
	{Name: "pods", Kind: "Pod", APIVersion: "v1", Namespaced: true, Aliases: []string{"pod", "po"}},
	{Name: "services", Kind: "Service", APIVersion: "v1", Namespaced: true, Aliases: []string{"service", "svc"}},
	{Name: "persistentvolumeclaims", Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespaced: true, Aliases: []string{"persistentvolumeclaim", "pvc", "volumes", "volume", "vol"}},
	{Name: "controllerrevisions", Kind: "ControllerRevision", APIVersion: "apps/v1", Namespaced: true, Aliases: []string{"controllerrevision", "revisions", "revision"}},
	{Name: "events", Kind: "Event", APIVersion: "v1", Namespaced: true, Aliases: []string{"event", "ev"}},
	{Name: "nodes", Kind: "Node", APIVersion: "v1", Namespaced: false, Aliases: []string{"node", "no"}},
	{Name: "namespaces", Kind: "Namespace", APIVersion: "v1", Namespaced: false, Aliases: []string{"namespace", "ns"}},
	{Name: "servers", Kind: "Server", APIVersion: "stead.io/v1", Namespaced: false, Aliases: []string{"server"}},
}

// LookupResource finds a resource by its plural name, kind or alias, case-insensitively.
func LookupResource(name string) (Resource, error) {
	n := strings.ToLower(name)
	for _, r := range Resources {
		if n == r.Name || n == strings.ToLower(r.Kind) {
			return r, nil
		}
		for _, a := range r.Aliases {
			if n == a {
				return r, nil
			}
		}
	}
	names := make([]string, 0, len(Resources))
	for _, r := range Resources {
		names = append(names, r.Name)
	}
	sort.Strings(names)
	return Resource{}, fmt.Errorf("the server doesn't have a resource type %q; known types: %s", name, strings.Join(names, ", "))
}

// Group returns the API group of the resource: "apps" for statefulsets, ""
// for the core kinds.
func (r Resource) Group() string {
	if i := strings.IndexByte(r.APIVersion, '/'); i >= 0 {
		return r.APIVersion[:i]
	}
	return ""
}

// Ref names one object of the resource the way kubectl prints it in
// `-o name` and after apply: "statefulset.apps/web", "pod/web-0".
func (r Resource) Ref(name string) string {
	k := strings.ToLower(r.Kind)
	if g := r.Group(); g != "" {
		k += "." + g
	}
	return k + "/" + name
}
