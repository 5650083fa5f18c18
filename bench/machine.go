package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes the machine a run measured on.
type Machine struct {
	// Cores is the number of CPUs the run could use.
	Cores int
	// CPU is the processor's model name.
	CPU string
	// MemTotal and MemAvailable are in bytes, as /proc/meminfo says.
	MemTotal, MemAvailable uint64
	// Kernel is the kernel release.
	Kernel string
}

// ReadMachine describes this machine.
func ReadMachine() (Machine, error) {
	m := Machine{Cores: runtime.NumCPU()}
	var err error
	if m.MemTotal, err = meminfo("MemTotal"); err != nil {
		return m, err
	}
	if m.MemAvailable, err = meminfo("MemAvailable"); err != nil {
		return m, err
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m, nil
}

// MemAvailable returns the memory available for new work, in bytes.
func MemAvailable() (uint64, error) { return meminfo("MemAvailable") }

// meminfo reads one field of /proc/meminfo, in bytes.
func meminfo(field string) (uint64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", field, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read %s: %q: %w", field, v, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", field, err)
	}
	return 0, fmt.Errorf("read %s: not in /proc/meminfo", field)
}
