package clustertest

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// SampleInterval is how often the sampler lists the live writers.
const SampleInterval = 100 * time.Millisecond

// Proc is a live journal-writer process of the workload.
type Proc struct {
	// PID is its process id on the machine.
	PID int
	// Ord, Node and Gen are its ordinal, node and generation, from its
	// environment (ORDINAL, NODE, GENERATION).
	Ord  int
	Node string
	Gen  uint64
	// Stopped: the process is paused (SIGSTOP or a frozen cgroup).
	Stopped bool
}

// Sample is the set of live writers at one moment.
type Sample struct {
	// Mono is CLOCK_MONOTONIC in nanoseconds when the listing began: on
	// one machine, comparable with the mono field of journal records.
	Mono int64
	// Procs are sorted by ordinal, then generation.
	Procs []Proc
}

// Sampler lists the workload's live journal-writer processes every
// SampleInterval by scanning /proc (cheaper than asking every containerd)
// and keeps every sample. A writer is the cluster's when its environment
// has RUN set to the cluster's ID. Its methods are safe for concurrent use.
type Sampler struct {
	run     string
	mu      sync.Mutex
	samples []Sample
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func newSampler(run string) *Sampler {
	return &Sampler{run: run, quit: make(chan struct{}), done: make(chan struct{})}
}

func (s *Sampler) start() {
	go func() {
		defer close(s.done)
		tick := time.NewTicker(SampleInterval)
		defer tick.Stop()
		for {
			s.take()
			select {
			case <-s.quit:
				return
			case <-tick.C:
			}
		}
	}()
}

func (s *Sampler) stop() {
	s.once.Do(func() { close(s.quit) })
	<-s.done
}

// take lists the live writers once and records the sample.
func (s *Sampler) take() Sample {
	smp := Sample{Mono: monoNow(), Procs: scanWriters(s.run)}
	s.mu.Lock()
	s.samples = append(s.samples, smp)
	s.mu.Unlock()
	return smp
}

// Samples returns every sample so far.
func (s *Sampler) Samples() []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.samples)
}

// Last returns the latest sample.
func (s *Sampler) Last() Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return Sample{}
	}
	return s.samples[len(s.samples)-1]
}

// Now takes a fresh sample (recorded like the periodic ones).
func (s *Sampler) Now() Sample { return s.take() }

func monoNow() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// writerComm is the command name of the workload in /proc/PID/comm.
const writerComm = "journal-writer"

// scanWriters lists the journal-writer processes whose RUN is run.
func scanWriters(run string) []Proc {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		comm, err := os.ReadFile(filepath.Join(dir, "comm"))
		if err != nil || string(bytes.TrimSpace(comm)) != writerComm {
			continue
		}
		p, ok := readWriter(dir, run)
		if !ok {
			continue
		}
		p.PID = pid
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Ord != out[j].Ord {
			return out[i].Ord < out[j].Ord
		}
		return out[i].Gen < out[j].Gen
	})
	return out
}

// readWriter reads a writer's identity from its environment and state; ok
// is false for another cluster's writer, a zombie, or one gone meanwhile.
func readWriter(dir, run string) (Proc, bool) {
	env, err := os.ReadFile(filepath.Join(dir, "environ"))
	if err != nil {
		return Proc{}, false
	}
	vars := map[string]string{}
	for _, kv := range bytes.Split(env, []byte{0}) {
		if k, v, ok := bytes.Cut(kv, []byte{'='}); ok {
			vars[string(k)] = string(v)
		}
	}
	if vars["RUN"] != run {
		return Proc{}, false
	}
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return Proc{}, false
	}
	// The state follows the command name's closing parenthesis.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return Proc{}, false
	}
	state := stat[i+2]
	if state == 'Z' || state == 'X' {
		return Proc{}, false
	}
	ord, err1 := strconv.Atoi(vars["ORDINAL"])
	gen, err2 := strconv.ParseUint(vars["GENERATION"], 10, 64)
	if err1 != nil || err2 != nil {
		ord, gen = -1, 0
	}
	return Proc{Ord: ord, Node: vars["NODE"], Gen: gen, Stopped: state == 'T' || state == 't'}, true
}
