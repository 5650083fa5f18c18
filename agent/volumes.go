package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/agent/containerd"
)

// VolumeMounter provides the storage behind a pod's persistent volume
// claims on this node.
//
// Concurrency: Mount and Unmount may be called for different pods at once;
// calls for one pod come one at a time.
type VolumeMounter interface {
	// Mount makes the volume of claim available for pod on this node and
	// returns the host directory to bind into its containers. Calling it
	// again for a mounted claim returns the same directory.
	Mount(ctx context.Context, pod *corev1.Pod, claim string) (hostPath string, err error)
	// Unmount releases the claim's volume once pod no longer runs here.
	Unmount(ctx context.Context, pod *corev1.Pod, claim string) error
}

// DirVolumes is the default VolumeMounter: each claim is a directory
// Root/<namespace>/<claim>, created 0755 and kept after the pod is
// deleted, so that an ordinal finds its data again on this node.
type DirVolumes struct {
	Root string
}

// Mount implements VolumeMounter.
func (d DirVolumes) Mount(_ context.Context, pod *corev1.Pod, claim string) (string, error) {
	if !filepath.IsLocal(pod.Namespace) || !filepath.IsLocal(claim) || strings.ContainsRune(claim, '/') {
		return "", fmt.Errorf("volume of claim %q: not a valid claim name", claim)
	}
	dir := filepath.Join(d.Root, pod.Namespace, claim)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("volume of claim %s/%s: %w", pod.Namespace, claim, err)
	}
	return dir, nil
}

// Unmount implements VolumeMounter: the directory stays.
func (DirVolumes) Unmount(context.Context, *corev1.Pod, string) error { return nil }

// volumeSources returns the host path of each of the pod's volumes,
// creating emptyDir volumes under the sandbox and mounting claims.
func (w *podWorker) volumeSources(ctx context.Context, sb string, pod *corev1.Pod) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			dir, err := w.env.volumes.Mount(ctx, pod, v.PersistentVolumeClaim.ClaimName)
			if err != nil {
				return nil, fmt.Errorf("mount volume %s: %w", v.Name, err)
			}
			out[v.Name] = dir
		case v.EmptyDir != nil:
			dir := filepath.Join(w.env.paths.sandbox(sb), "volumes", v.Name)
			if err := emptyDir(dir, v.EmptyDir); err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
			out[v.Name] = dir
		case v.HostPath != nil:
			if err := checkHostPath(v.HostPath); err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
			out[v.Name] = v.HostPath.Path
		default:
			return nil, fmt.Errorf("volume %s: only emptyDir, hostPath and persistentVolumeClaim volumes are supported", v.Name)
		}
	}
	return out, nil
}

// emptyDir creates the directory of an emptyDir volume; medium Memory
// mounts a tmpfs there, limited to sizeLimit.
func emptyDir(dir string, e *corev1.EmptyDirVolumeSource) error {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	if e.Medium != corev1.StorageMediumMemory || isMountPoint(dir) {
		return nil
	}
	opts := "mode=0777"
	if e.SizeLimit != nil && !e.SizeLimit.IsZero() {
		opts += ",size=" + strconv.FormatInt(e.SizeLimit.Value(), 10)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

// checkHostPath applies a hostPath volume's type: create what the
// OrCreate types ask for, check the kind of what the others name.
func checkHostPath(h *corev1.HostPathVolumeSource) error {
	t := corev1.HostPathUnset
	if h.Type != nil {
		t = *h.Type
	}
	if !filepath.IsAbs(h.Path) {
		return fmt.Errorf("hostPath %q is not absolute", h.Path)
	}
	switch t {
	case corev1.HostPathDirectoryOrCreate:
		return os.MkdirAll(h.Path, 0o755)
	case corev1.HostPathFileOrCreate:
		if err := os.MkdirAll(filepath.Dir(h.Path), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(h.Path, os.O_RDONLY|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		return f.Close()
	case corev1.HostPathUnset:
		return nil
	}
	fi, err := os.Stat(h.Path)
	if err != nil {
		return fmt.Errorf("hostPath type check failed: %w", err)
	}
	m := fi.Mode()
	ok := map[corev1.HostPathType]bool{
		corev1.HostPathDirectory: m.IsDir(),
		corev1.HostPathFile:      m.IsRegular(),
		corev1.HostPathSocket:    m&os.ModeSocket != 0,
		corev1.HostPathCharDev:   m&os.ModeCharDevice != 0,
		corev1.HostPathBlockDev:  m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0,
	}[t]
	if !ok {
		return fmt.Errorf("hostPath type check failed: %s is not a %s", h.Path, t)
	}
	return nil
}

// containerMounts returns the bind mounts of container c: the pod's
// identity files, then its volumeMounts. A subPath is resolved inside its
// volume without following anything out of it (os.Root), and the
// directory found is bind-mounted by its file descriptor onto a path under
// the sandbox, which the container then mounts: a symlink swapped in
// afterwards cannot redirect the mount (CVE-2017-1002101, CVE-2021-25741).
func (w *podWorker) containerMounts(sb string, c *corev1.Container, sources map[string]string, pod *corev1.Pod) ([]containerd.Mount, error) {
	dir := w.env.paths.sandbox(sb)
	mounts := []containerd.Mount{
		{Source: filepath.Join(dir, "hostname"), Destination: "/etc/hostname"},
		{Source: filepath.Join(dir, "hosts"), Destination: "/etc/hosts"},
		{Source: filepath.Join(dir, "resolv.conf"), Destination: "/etc/resolv.conf"},
	}
	for i, vm := range c.VolumeMounts {
		src, ok := sources[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMounts[%d]: the pod has no volume %q", i, vm.Name)
		}
		sub := vm.SubPath
		if vm.SubPathExpr != "" {
			sub = expandSubPath(vm.SubPathExpr, pod)
		}
		if sub != "" {
			target := filepath.Join(dir, "subpaths", c.Name, strconv.Itoa(i))
			if err := bindSubPath(src, sub, target); err != nil {
				return nil, fmt.Errorf("volumeMounts[%d] (%s, subPath %q): %w", i, vm.Name, sub, err)
			}
			src = target
		}
		mounts = append(mounts, containerd.Mount{Source: src, Destination: vm.MountPath, ReadOnly: vm.ReadOnly})
	}
	return mounts, nil
}

// expandSubPath expands $(VAR) in a subPathExpr from the container's
// plain env values (the downward API values the kubelet allows are not
// known here).
func expandSubPath(expr string, pod *corev1.Pod) string {
	return strings.NewReplacer("$(POD_NAME)", pod.Name, "$(POD_NAMESPACE)", pod.Namespace).Replace(expr)
}

// bindSubPath opens sub inside volume through an os.Root, creating it as
// a directory when missing, and bind-mounts it onto target.
func bindSubPath(volume, sub, target string) error {
	if !filepath.IsLocal(sub) {
		return fmt.Errorf("subPath must be a relative path inside the volume without '..'")
	}
	root, err := os.OpenRoot(volume)
	if err != nil {
		return err
	}
	defer root.Close()
	if _, err := root.Lstat(sub); errors.Is(err, os.ErrNotExist) {
		if err := root.MkdirAll(sub, 0o755); err != nil {
			return err
		}
	}
	f, err := root.Open(sub)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	if isMountPoint(target) {
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			return err
		}
	}
	if fi.IsDir() {
		err = os.MkdirAll(target, 0o755)
	} else {
		var t *os.File
		if t, err = os.OpenFile(target, os.O_RDONLY|os.O_CREATE, 0o644); err == nil {
			t.Close()
		}
	}
	if err != nil {
		return err
	}
	src := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s onto %s: %w", sub, target, err)
	}
	return nil
}

// isMountPoint reports whether path is a mount point in this mount
// namespace.
func isMountPoint(path string) bool {
	for _, mp := range mountsUnder(path) {
		if mp == path {
			return true
		}
	}
	return false
}

// mountsUnder returns the mount points at or under dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountAll detaches every mount at or under dir, deepest first.
func unmountAll(dir string) error {
	var errs []error
	for _, mp := range mountsUnder(dir) {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}
