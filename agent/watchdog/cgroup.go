package watchdog

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// LeaveFreezer moves this process to the root cgroup of the cgroup v1
// freezer hierarchy. A spawned watchdog starts in its agent's cgroups, so
// freezing the agent's cgroup (a pause, as `systemctl freeze` or a test's
// freezer does) would freeze the watchdog with it; the freezer controls
// nothing else, so leaving it changes no limit or accounting. It reports
// whether it moved: nothing is done when there is no v1 freezer hierarchy
// or the process is already at its root. Other hierarchies are left alone
// (they carry resource limits and the service manager's bookkeeping): under
// cgroup v2, where freezing and limits share one hierarchy, run the watchdog
// as a service of its own instead.
func LeaveFreezer() (moved bool, err error) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return false, fmt.Errorf("leave freezer cgroup: %w", err)
	}
	path, ok := v1Cgroup(self, "freezer")
	if !ok || path == "/" {
		return false, nil
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("leave freezer cgroup %s: %w", path, err)
	}
	mnt, ok := v1Mount(mounts, "freezer")
	if !ok {
		return false, nil
	}
	// "0" is the writing process, all its threads.
	if err := os.WriteFile(filepath.Join(mnt, "cgroup.procs"), []byte("0"), 0); err != nil {
		return false, fmt.Errorf("leave freezer cgroup %s: %w", path, err)
	}
	return true, nil
}

// v1Cgroup finds the cgroup of a v1 controller in /proc/PID/cgroup
// ("id:controllers:path" lines).
func v1Cgroup(procCgroup []byte, controller string) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(procCgroup))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == controller {
				return parts[2], true
			}
		}
	}
	return "", false
}

// v1Mount finds where the v1 hierarchy of controller is mounted, from
// the text of /proc/PID/mountinfo.
func v1Mount(mi []byte, controller string) (string, bool) {
	ms, err := mountinfo.GetMountsFromReader(bytes.NewReader(mi), mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		return "", false
	}
	for _, m := range ms {
		if slices.Contains(strings.Split(m.VFSOptions, ","), controller) {
			return m.Mountpoint, true
		}
	}
	return "", false
}

// ProtectFromOOMKiller sets this process's oom_score_adj to -1000, so that
// the kernel's OOM killer, which may pick the agent, never picks the
// watchdog (it needs a few megabytes).
func ProtectFromOOMKiller() error {
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte("-1000"), 0); err != nil {
		return fmt.Errorf("protect from the OOM killer: %w", err)
	}
	return nil
}
