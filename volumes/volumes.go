// Package volumes keeps the per-ordinal volumes of StatefulSets on a node:
// storage classes and their drivers (local, shared, image), creating,
// attaching, detaching, resizing and deleting volumes, the fence marker
// that refuses a mount by a stale generation, and safe subPath mounts.
//
// A volume is identified by its claim's UID, never by a user-supplied path.
// Under its class root it is one directory:
//
//	<root>/<uid>/
//	    meta.json        namespace, name, class, size: for operators
//	    data/            local and shared: what the pod sees
//	    disk.img         image: a sparse ext4 image, loop-mounted on attach
//	    control/fence    the fence marker: highest generation that attached
//	    control/lock     flock(2) serialising fence checks with writes
//	    control/journal  mount, unmount and fence records (RELIABILITY C1)
//
// The fence marker and journal sit in their own directory, beside the data,
// so that the directory (never the marker file itself, which is replaced by
// rename) can be bind-mounted into a workload that checks the marker before
// it writes, as the journal-writer test workload does.
//
// Node-local state lives under the Manager's directory (Options.Dir):
//
//	<dir>/local/<class>/<uid>/   volumes of local classes without a root
//	<dir>/mounts/<uid>/          mount points of image volumes
//	<dir>/attached/<uid>.json    which volumes are attached here, at which generation
//	<dir>/staging/               default place for StageSubPath bind mounts
//
// Sizes: image volumes get exactly their requested size (rounded up to
// 4 KiB) and writes beyond it fail with ENOSPC. For local and shared
// volumes the size is advisory: it is recorded in meta.json and nothing
// enforces it.
//
// Mutual exclusion across nodes (ReadWriteOnce) is decided by the servers;
// this package is the last line of defence: Attach refuses a generation
// lower than the volume's marker (StaleGenerationError), so a deposed
// holder can never mount again once a newer generation has.
package volumes

import (
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Errors matched with errors.Is.
var (
	// ErrInvalidVolume: a Volume's UID, size or class is unusable.
	ErrInvalidVolume = errors.New("invalid volume")
	// ErrNotFound: the volume does not exist under its class root.
	ErrNotFound = errors.New("volume does not exist")
	// ErrInsufficientSpace: the class's root cannot hold the requested size.
	ErrInsufficientSpace = errors.New("not enough space")
	// ErrShrink: a resize asked for less than the volume's size.
	ErrShrink = errors.New("volumes cannot shrink")
	// ErrOnlineResize: the kernel refused to grow a mounted image
	// volume's filesystem (without CAP_SYS_RESOURCE); it grows offline,
	// once detached.
	ErrOnlineResize = errors.New("online resize refused")
	// ErrAttached: the volume is attached on this node, so it cannot be
	// deleted.
	ErrAttached = errors.New("volume is attached")
	// ErrBusy: the volume's mount is still in use (a container or a
	// subPath staging mount holds it).
	ErrBusy = errors.New("volume is busy")
	// ErrStaleGeneration: a generation lower than the volume's fence marker.
	ErrStaleGeneration = errors.New("stale generation")
	// ErrFenceCorrupt: the fence marker does not parse or its checksum does
	// not match.
	ErrFenceCorrupt = errors.New("fence marker corrupt")
	// ErrUnsafeSubPath: a subPath that is not a relative path inside the
	// volume, or that resolves outside it.
	ErrUnsafeSubPath = errors.New("unsafe subPath")
)

// StaleGenerationError reports an attach (or fence) with a generation lower
// than the one in the volume's marker. errors.Is(err, ErrStaleGeneration)
// matches it.
type StaleGenerationError struct {
	Volume    string // namespace/name of the volume
	Gen       uint64 // generation that asked
	MarkerGen uint64 // generation in the marker
}

func (e *StaleGenerationError) Error() string {
	return fmt.Sprintf("volume %s: attach refused: generation %d is stale, the fence marker holds generation %d", e.Volume, e.Gen, e.MarkerGen)
}

// Is makes errors.Is(err, ErrStaleGeneration) true.
func (e *StaleGenerationError) Is(target error) bool { return target == ErrStaleGeneration }

// Volume identifies one volume and what it should be.
type Volume struct {
	// Namespace and Name are the claim's ("default", "www-web-0"); they
	// are only recorded (meta.json, journal, errors), never used as paths.
	Namespace, Name string
	// UID is the claim's UID, an opaque identifier that names the volume's
	// directory under its class root. It must be letters, digits, '.', '_'
	// or '-', start with a letter or digit, and be at most 128 bytes.
	UID string
	// Class is where and how the volume is kept.
	Class Class
	// Size is the requested size in bytes (resources.requests.storage).
	// Required for image volumes; advisory for the others.
	Size int64
}

// String is namespace/name, the volume as users know it.
func (v Volume) String() string {
	if v.Namespace == "" {
		return v.Name
	}
	return v.Namespace + "/" + v.Name
}

// maxUIDLen bounds a UID (Kubernetes UIDs are 36-byte UUIDs).
const maxUIDLen = 128

// validate checks what every operation needs: a UID that is one path
// component and a usable class and size.
func (v Volume) validate() error {
	if err := validUID(v.UID); err != nil {
		return fmt.Errorf("volume %s: %w: %v", v, ErrInvalidVolume, err)
	}
	if err := v.Class.validate(); err != nil {
		return fmt.Errorf("volume %s: %w: %v", v, ErrInvalidVolume, err)
	}
	if v.Size < 0 {
		return fmt.Errorf("volume %s: %w: size %d is negative", v, ErrInvalidVolume, v.Size)
	}
	return nil
}

func validUID(uid string) error {
	if uid == "" {
		return errors.New("uid is empty")
	}
	if len(uid) > maxUIDLen {
		return fmt.Errorf("uid is %d bytes long (at most %d)", len(uid), maxUIDLen)
	}
	for i, c := range []byte(uid) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return fmt.Errorf("uid %q is not an opaque identifier (letters, digits, '.', '_', '-', starting with a letter or digit): it could name a path outside the class root", uid)
		}
	}
	return nil
}

// FromClaim builds the Volume of a claim: its class from
// spec.storageClassName (none or empty: the default class) and its size
// from resources.requests.storage.
func FromClaim(pvc *corev1.PersistentVolumeClaim, classes Classes) (Volume, error) {
	name := pvc.Namespace + "/" + pvc.Name
	var className string
	if pvc.Spec.StorageClassName != nil {
		className = *pvc.Spec.StorageClassName
	}
	class, err := classes.Lookup(className)
	if err != nil {
		return Volume{}, fmt.Errorf("volume %s: %w", name, err)
	}
	v := Volume{Namespace: pvc.Namespace, Name: pvc.Name, UID: string(pvc.UID), Class: class}
	if q, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
		v.Size = q.Value()
	}
	if err := v.validate(); err != nil {
		return Volume{}, err
	}
	if class.Driver == DriverImage && v.Size == 0 {
		return Volume{}, fmt.Errorf("volume %s: %w: class %q keeps ext4 images: set resources.requests.storage", name, ErrInvalidVolume, class.Name)
	}
	return v, nil
}

// formatSize writes a byte count for people: "1 GiB", "3.9 MiB", "512 B".
func formatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	s := fmt.Sprintf("%.1f", float64(n)/float64(div))
	s = strings.TrimSuffix(s, ".0")
	return s + " " + string("KMGTPE"[exp]) + "iB"
}
