package containerd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/errdefs"
)

// Killed is a task that KillAll signalled.
type Killed struct {
	// ID is the container's ID.
	ID string
	// Pid of the task's init process on the host (0 when unknown).
	Pid uint32
	// Labels are the caller's labels given to Create (nil when unknown).
	Labels map[string]string
}

// KillAll sends sig to every process of every task in the namespace that
// has not exited (running, paused or created but not started), and returns
// them sorted by ID. It does not wait for the exits and deletes nothing:
// the tasks stay, exited, for whoever owns the containers to inspect and
// remove. It is the node's self-fence: one list and one kill per task, no
// per-container lock, so a stop in progress elsewhere cannot delay it.
// Errors of single tasks do not stop the others; they are joined.
func (r *Runtime) KillAll(ctx context.Context, sig syscall.Signal) ([]Killed, error) {
	ctx = r.ctx(ctx)
	svc := r.client.TaskService()
	resp, err := svc.List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		return nil, fmt.Errorf("kill all tasks: list: %w", errdefs.FromGRPC(err))
	}
	var killed []Killed
	var errs []error
	for _, t := range resp.Tasks {
		if t.Status == tasktypes.Status_STOPPED {
			continue
		}
		// A task's ID is its container's; the daemon leaves ContainerID
		// empty in this list.
		id := t.ID
		if t.ContainerID != "" {
			id = t.ContainerID
		}
		_, err := svc.Kill(ctx, &tasks.KillRequest{ContainerID: id, Signal: uint32(sig), All: true})
		if err != nil {
			if err := errdefs.FromGRPC(err); !errdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("kill task %s: %w", id, err))
			}
			continue
		}
		killed = append(killed, Killed{ID: id, Pid: t.Pid})
	}
	// Labels say which pod and generation each task was; they are read
	// after the kills so that they cannot delay them.
	if len(killed) > 0 {
		if cs, err := r.client.ContainerService().List(ctx); err == nil {
			labels := make(map[string]map[string]string, len(cs))
			for _, c := range cs {
				labels[c.ID] = userLabels(c.Labels)
			}
			for i := range killed {
				killed[i].Labels = labels[killed[i].ID]
			}
		}
	}
	sort.Slice(killed, func(i, j int) bool { return killed[i].ID < killed[j].ID })
	return killed, errors.Join(errs...)
}

// RuncRoot is where containerd's runc v2 shim keeps runc's state for the
// containers of namespace ns (containerd's default, which Create keeps).
func RuncRoot(ns string) string {
	return filepath.Join("/run/containerd/runc", ns)
}

// KillAllRunc sends sig to every process of every container of namespace
// ns that has not stopped, with `runc kill --all` on runc's state under
// RuncRoot(ns), without containerd: the fence for a node whose containerd
// is gone (an agent-owned daemon dies with its agent) or hangs, while the
// shims and their containers keep running. It returns the containers
// signalled, sorted by ID, without labels (those are containerd's). runc is
// looked up on PATH unless runcBinary is set.
func KillAllRunc(ctx context.Context, runcBinary, ns string, sig syscall.Signal) ([]Killed, error) {
	if ns == "" {
		ns = DefaultNamespace
	}
	if runcBinary == "" {
		var err error
		if runcBinary, err = exec.LookPath("runc"); err != nil {
			return nil, fmt.Errorf("kill all containers of %s with runc: %w", ns, err)
		}
	}
	root := RuncRoot(ns)
	if _, err := os.Stat(root); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, runcBinary, "--root", root, "list", "--format", "json")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("kill all containers of %s with runc: list: %w: %s", ns, err, strings.TrimSpace(out.String()))
	}
	var list []struct {
		ID     string `json:"id"`
		Pid    int    `json:"pid"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		return nil, fmt.Errorf("kill all containers of %s with runc: list: %w", ns, err)
	}
	var killed []Killed
	var errs []error
	for _, c := range list {
		// `kill --all` succeeds on a stopped container too; only the ones
		// with processes count.
		if c.Status == "stopped" {
			continue
		}
		out.Reset()
		cmd := exec.CommandContext(ctx, runcBinary, "--root", root, "kill", "--all", c.ID, strconv.Itoa(int(sig)))
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			msg := out.String()
			if strings.Contains(msg, "not running") || strings.Contains(msg, "does not exist") {
				continue
			}
			errs = append(errs, fmt.Errorf("runc kill %s: %w: %s", c.ID, err, strings.TrimSpace(msg)))
			continue
		}
		killed = append(killed, Killed{ID: c.ID, Pid: uint32(c.Pid)})
	}
	sort.Slice(killed, func(i, j int) bool { return killed[i].ID < killed[j].ID })
	return killed, errors.Join(errs...)
}
