package watchdog

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
// /proc/PID/mountinfo.
func v1Mount(mountinfo []byte, controller string) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 || g[0] != "cgroup" {
			continue
		}
		for _, o := range strings.Split(g[2], ",") {
			if o == controller {
				return unescapeMount(f[4]), true
			}
		}
	}
	return "", false
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space...).
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

// ProtectFromOOMKiller sets this process's oom_score_adj to -1000, so that
// the kernel's OOM killer, which may pick the agent, never picks the
// watchdog (it needs a few megabytes).
func ProtectFromOOMKiller() error {
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte("-1000"), 0); err != nil {
		return fmt.Errorf("protect from the OOM killer: %w", err)
	}
	return nil
}
