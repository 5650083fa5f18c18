package volumes

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Driver names how a storage class keeps its volumes.
type Driver string

// The drivers.
const (
	// DriverLocal keeps a volume as a directory on one node. The ordinal
	// that uses it is pinned to that node, like a Kubernetes local PV.
	DriverLocal Driver = "local"
	// DriverShared keeps a volume as a directory under a root that every
	// node mounts from the same network filesystem (NFS, CephFS,
	// GlusterFS); the volume follows its ordinal to any node.
	DriverShared Driver = "shared"
	// DriverImage keeps a volume as a sparse file of the requested size,
	// formatted ext4 and loop-mounted on attach, so the size is a real
	// limit. On a shared root (Class.Shared) it follows its ordinal.
	DriverImage Driver = "image"
)

var drivers = []Driver{DriverLocal, DriverShared, DriverImage}

// Class is a storage class: a name that volume claims use
// (spec.storageClassName), the driver that keeps their volumes and where.
// It is configuration, read by servers (to know whether a volume pins its
// ordinal to a node) and by agents (to find the volumes).
type Class struct {
	// Name is what claims name in storageClassName: a DNS subdomain.
	Name string `json:"name"`
	// Driver is local, shared or image.
	Driver Driver `json:"driver"`
	// Root is the absolute directory that holds the class's volumes, one
	// subdirectory per volume UID. For shared classes and image classes
	// with Shared set it is the network filesystem's mount point, the same
	// path on every node, and must exist (it is never created, so that an
	// unmounted network filesystem is not silently replaced by a local
	// directory). For local classes it may be empty: the Manager then uses
	// a directory of its own (Options.Dir/local/<class name>).
	Root string `json:"root,omitempty"`
	// Shared says an image class's root is on a network filesystem, so
	// its volumes follow their ordinal to any node. Shared-driver classes
	// are always shared; local classes never are.
	Shared bool `json:"shared,omitempty"`
	// Default marks the class used by claims that name none. At most one
	// class is the default.
	Default bool `json:"default,omitempty"`
}

// Pinned reports whether a volume of this class lives on one node only, so
// that its ordinal must be placed on the node that created it.
func (c Class) Pinned() bool {
	switch c.Driver {
	case DriverShared:
		return false
	case DriverImage:
		return !c.Shared
	default:
		return true
	}
}

// validate checks one class on its own and names it in the error.
func (c Class) validate() error {
	if msgs := validation.IsDNS1123Subdomain(c.Name); len(msgs) > 0 {
		return fmt.Errorf("storage class %q: name: %s", c.Name, strings.Join(msgs, "; "))
	}
	if !slices.Contains(drivers, c.Driver) {
		return fmt.Errorf("storage class %q: driver: %q is not a driver (want local, shared or image)", c.Name, c.Driver)
	}
	if c.Root == "" && c.Driver != DriverLocal {
		return fmt.Errorf("storage class %q: root: required for the %s driver", c.Name, c.Driver)
	}
	if c.Root != "" {
		if !filepath.IsAbs(c.Root) {
			return fmt.Errorf("storage class %q: root: %q is not an absolute path", c.Name, c.Root)
		}
		if filepath.Clean(c.Root) != c.Root {
			return fmt.Errorf("storage class %q: root: %q is not clean (want %q)", c.Name, c.Root, filepath.Clean(c.Root))
		}
		if c.Root == "/" {
			return fmt.Errorf("storage class %q: root: the filesystem root cannot hold volumes", c.Name)
		}
		if strings.ContainsRune(c.Root, 0) {
			return fmt.Errorf("storage class %q: root: contains a NUL byte", c.Name)
		}
	}
	if c.Shared && c.Driver == DriverLocal {
		return fmt.Errorf("storage class %q: shared: a local class cannot be shared (use the shared driver)", c.Name)
	}
	return nil
}

// Classes is a validated set of storage classes. The zero value has no
// classes. It is immutable and safe for concurrent use.
type Classes struct {
	list []Class // sorted by name
}

// ErrUnknownClass is returned by Lookup for a class that is not configured.
var ErrUnknownClass = errors.New("unknown storage class")

// NewClasses validates a list of classes: names are DNS subdomains and
// unique, drivers are known, roots are absolute and clean, at most one
// class is the default. A class with the shared driver gets Shared set.
func NewClasses(list []Class) (Classes, error) {
	out := make([]Class, 0, len(list))
	var def string
	for _, c := range list {
		if err := c.validate(); err != nil {
			return Classes{}, err
		}
		if c.Driver == DriverShared {
			c.Shared = true
		}
		if slices.ContainsFunc(out, func(o Class) bool { return o.Name == c.Name }) {
			return Classes{}, fmt.Errorf("storage class %q: name: defined twice", c.Name)
		}
		if c.Default {
			if def != "" {
				return Classes{}, fmt.Errorf("storage class %q: default: class %q is already the default", c.Name, def)
			}
			def = c.Name
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Class) int { return strings.Compare(a.Name, b.Name) })
	return Classes{list: out}, nil
}

// ParseClass reads a class from its flag form
//
//	name=driver[:root][,option]...
//
// where the options are "default" (the class for claims that name none)
// and "shared" (an image class on a network filesystem). Examples:
// "fast=local", "nfs=shared:/mnt/nfs/stead,default",
// "disk=image:/mnt/nfs/images,shared". A root cannot contain a comma.
func ParseClass(spec string) (Class, error) {
	name, rest, ok := strings.Cut(spec, "=")
	if !ok || name == "" {
		return Class{}, fmt.Errorf("storage class %q: want name=driver[:root][,default][,shared]", spec)
	}
	fields := strings.Split(rest, ",")
	driver, root, _ := strings.Cut(fields[0], ":")
	c := Class{Name: name, Driver: Driver(driver), Root: root}
	for _, opt := range fields[1:] {
		switch opt {
		case "default":
			c.Default = true
		case "shared":
			c.Shared = true
		default:
			return Class{}, fmt.Errorf("storage class %q: option %q unknown (want default or shared)", name, opt)
		}
	}
	if err := c.validate(); err != nil {
		return Class{}, err
	}
	return c, nil
}

// ParseClasses reads each spec with ParseClass and validates the set with
// NewClasses.
func ParseClasses(specs []string) (Classes, error) {
	list := make([]Class, 0, len(specs))
	for _, s := range specs {
		c, err := ParseClass(s)
		if err != nil {
			return Classes{}, err
		}
		list = append(list, c)
	}
	return NewClasses(list)
}

// Lookup returns the class named name; an empty name means the default
// class. The error for an unknown class (matched by ErrUnknownClass) names
// the known ones.
func (cs Classes) Lookup(name string) (Class, error) {
	if name == "" {
		if c, ok := cs.Default(); ok {
			return c, nil
		}
		return Class{}, fmt.Errorf("%w: the claim names no storage class and none is the default (known: %s)", ErrUnknownClass, cs.names())
	}
	for _, c := range cs.list {
		if c.Name == name {
			return c, nil
		}
	}
	return Class{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownClass, name, cs.names())
}

// Default returns the default class, if one is marked.
func (cs Classes) Default() (Class, bool) {
	for _, c := range cs.list {
		if c.Default {
			return c, true
		}
	}
	return Class{}, false
}

// List returns the classes sorted by name.
func (cs Classes) List() []Class { return slices.Clone(cs.list) }

func (cs Classes) names() string {
	if len(cs.list) == 0 {
		return "none configured"
	}
	names := make([]string, len(cs.list))
	for i, c := range cs.list {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}
