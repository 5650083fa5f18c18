// Package agent is Stead's node agent: it registers its node with the
// servers and keeps its lease, runs the pods assigned to the node through
// containerd, each in its own network namespace with an IP from the node's
// pod subnet, runs their probes, restarts their containers with back-off,
// reports their status, stops them gracefully when they are deleted, keeps
// their logs, serves their logs, exec, image import and its metrics over
// its own HTTP API, and answers cluster DNS for them.
//
// The pod lifecycle is level-triggered and keyed by pod name: a worker per
// pod name compares the pod assigned to the node with the containers
// containerd runs under that name (their labels say which pod, assignment
// and attempt they are) and acts, one step at a time; failures are retried
// with back-off. Everything a restarted agent needs is in containerd labels
// and in its data directory, so after kill -9 it adopts the running pods
// without restarting them. containerd and CNI sit behind two narrow
// interfaces (Containers, Networks) so that the lifecycle is tested
// against fakes with a fake clock; status computation, back-off and probe
// rules are pure functions of their inputs.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/network"
	"github.com/stead-io/stead/agent/watchdog"
	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/volumes"
)

// Defaults of Config.
const (
	DefaultAgentAddr       = "127.0.0.1:7472"
	DefaultDNSAddr         = "127.0.0.1:7453"
	DefaultNetNSDir        = "/run/stead/netns"
	DefaultHeartbeat       = 2 * time.Second
	DefaultResync          = 10 * time.Second
	DefaultLogMaxBytes     = 10 << 20
	DefaultLogKeep         = 1
	DefaultMaxPods         = 110
	DefaultAssignmentsWait = 30 * time.Second
)

// DefaultClusterCIDR is the range every node's pod subnet comes from.
var DefaultClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")

// Config configures an Agent. Zero fields take the defaults.
type Config struct {
	// NodeName is this node's name (required).
	NodeName string
	// Servers are the HTTP addresses of Stead servers; the agent moves to
	// the next when one does not answer (required).
	Servers []string
	// Token is the ACL token sent to the servers; when set, the agent's
	// own API requires a token too: this one, or a management or
	// read-only token the servers know (see handler).
	Token string
	// ServerTLS, when set, is how the agent dials the servers: mutual TLS
	// with the node's agent certificate, checking the servers'.
	ServerTLS *tls.Config
	// APITLS, when set, makes the agent's own API serve mutual TLS: every
	// caller presents a certificate of the cluster's CA, and agents'
	// certificates are refused (one node has no business in another's
	// containers).
	APITLS *tls.Config
	// DataDir holds the agent's state (required).
	DataDir string
	// Labels are added to the node's labels.
	Labels map[string]string
	// NodeIP is the node's InternalIP; invalid means the address this
	// machine reaches the first server from (or its first global address).
	NodeIP netip.Addr
	// ContainerdSocket is where containerd answers; when nothing does and
	// containerd is installed, the agent runs its own under DataDir.
	ContainerdSocket string
	// ContainerdNamespace holds the agent's containers and images.
	ContainerdNamespace string
	// Watchdog, when set, is the stead executable the agent starts as the
	// node's self-fencing watchdog (`stead watchdog`), a separate process
	// that stops every container once the lease the agent records in
	// DataDir/lease runs out (RELIABILITY R3). Empty: no watchdog, as on a
	// one-machine `stead dev`, where nothing fails over.
	Watchdog string
	// AgentAddr is where the agent's HTTP API listens (logs, exec, images).
	AgentAddr string
	// AdvertiseAddr is the agent API address recorded on the node; empty
	// means the address AgentAddr bound.
	AdvertiseAddr string
	// DNSAddr is where cluster DNS answers for the host, besides the pod
	// bridge's gateway port 53; "-" turns it off.
	DNSAddr string
	// ClusterCIDR is the range of every pod IP in the cluster.
	ClusterCIDR netip.Prefix
	// ClusterDomain is the DNS domain of cluster names.
	ClusterDomain string
	// NetNSDir holds pods' pinned network namespaces.
	NetNSDir string
	// Bridge and NetworkName name the node bridge and the CNI network.
	Bridge, NetworkName string
	// CNIPluginDirs are searched for CNI plugins.
	CNIPluginDirs []string
	// Volumes provides claim volumes. When nil: with StorageClasses, a
	// ClaimVolumes that keeps them with a volumes.Manager under
	// DataDir/volumes; without, DirVolumes under DataDir/volumes.
	Volumes VolumeMounter
	// StorageClasses are the classes claims name (spec.storageClassName),
	// used when Volumes is nil.
	StorageClasses volumes.Classes
	// Logger; nil discards.
	Logger hclog.Logger
	// Clock drives the pod lifecycle; the system clock when nil.
	Clock Clock
	// Version is reported in the node's info.
	Version string
	// RestartBackoff and MaxRestartBackoff shape the back-off of crashed
	// containers and failed pulls (Kubernetes: 10 s doubling to 5 min).
	RestartBackoff, MaxRestartBackoff time.Duration
	// Heartbeat is the lease renewal interval.
	Heartbeat time.Duration
	// Resync bounds how long a pod goes without a look.
	Resync time.Duration
	// LogMaxBytes and LogKeep rotate container logs.
	LogMaxBytes int64
	LogKeep     int
	// MaxPods is the node's pod capacity.
	MaxPods int
}

func (c *Config) defaults() error {
	if c.NodeName == "" {
		return errors.New("agent: node name is required")
	}
	if len(c.Servers) == 0 {
		return errors.New("agent: at least one server address is required")
	}
	if c.DataDir == "" {
		return errors.New("agent: data dir is required")
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("agent: data dir: %w", err)
	}
	c.DataDir = abs
	if c.ContainerdSocket == "" {
		c.ContainerdSocket = containerd.DefaultSocket
	}
	if c.ContainerdNamespace == "" {
		c.ContainerdNamespace = containerd.DefaultNamespace
	}
	if c.AgentAddr == "" {
		c.AgentAddr = DefaultAgentAddr
	}
	if c.DNSAddr == "" {
		c.DNSAddr = DefaultDNSAddr
	}
	if !c.ClusterCIDR.IsValid() {
		c.ClusterCIDR = DefaultClusterCIDR
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = api.DefaultClusterDomain
	}
	if c.NetNSDir == "" {
		c.NetNSDir = DefaultNetNSDir
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.Clock == nil {
		c.Clock = SystemClock{}
	}
	if c.RestartBackoff == 0 {
		c.RestartBackoff = DefaultBackoff
	}
	if c.MaxRestartBackoff == 0 {
		c.MaxRestartBackoff = DefaultMaxBackoff
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.Resync == 0 {
		c.Resync = DefaultResync
	}
	if c.LogMaxBytes == 0 {
		c.LogMaxBytes = DefaultLogMaxBytes
	}
	if c.LogKeep == 0 {
		c.LogKeep = DefaultLogKeep
	}
	if c.MaxPods == 0 {
		c.MaxPods = DefaultMaxPods
	}
	if c.Volumes == nil && len(c.StorageClasses.List()) == 0 {
		c.Volumes = DirVolumes{Root: paths{c.DataDir}.volumes()}
	}
	return nil
}

// Agent is one node's agent. Create it with New and run it with Run.
type Agent struct {
	cfg     Config
	log     hclog.Logger
	paths   paths
	servers *serverPool
	// watchdogCmd starts the node's watchdog when Config.Watchdog is set.
	watchdogCmd watchdog.Command
	// metrics are served on GET /metrics (metrics.go).
	metrics *agentMetrics
	// tokens checks the tokens of the API's callers with the servers.
	tokens *tokenChecker

	// Set up by Run.
	containers Containers
	network    *network.Network
	env        *podEnv
	reporter   *statusReporter
	events     *eventRecorder
	node       *corev1.Node
	apiAddr    string
	dns        *dnsService
	ready      chan struct{}
	readyOnce  sync.Once

	// lastRenewed is the local monotonic time taken just before sending
	// the last heartbeat the leader accepted (RELIABILITY R3).
	lastRenewed atomic.Pointer[time.Time]
	// leaseTTL is the lease's duration the servers last answered.
	leaseTTL atomic.Pointer[time.Duration]
	// lapsedAt is when the agent found its lease run out, until it has
	// read its assignments afresh after renewing it: what it held may have
	// been given to other nodes meanwhile. Nil while the lease holds.
	lapsedAt atomic.Pointer[time.Time]
	// listedFrom is when the request of the last assignment list the
	// agent acted on was sent.
	listedFrom atomic.Pointer[time.Time]

	mu      sync.Mutex
	workers map[podKey]*podWorker
	// owners routes container exits to their pod's worker.
	owners map[string]podKey
	// running is set once the first assignment list arrived: workers act
	// only from then on, so that an agent that starts while the servers
	// are unreachable never stops what runs.
	running  bool
	runCtx   context.Context
	workerWG sync.WaitGroup
}

// New checks cfg and returns an agent that Run starts.
func New(cfg Config) (*Agent, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	servers, err := newServerPool(cfg.Servers, api.ClientOptions{TLS: cfg.ServerTLS, Token: cfg.Token})
	if err != nil {
		return nil, err
	}
	if cfg.Volumes == nil {
		if cfg.Volumes, err = newClaimVolumes(cfg.NodeName, cfg.DataDir, cfg.StorageClasses, servers, cfg.Logger); err != nil {
			return nil, err
		}
	}
	a := &Agent{
		cfg:     cfg,
		log:     cfg.Logger,
		paths:   paths{cfg.DataDir},
		servers: servers,
		tokens:  newTokenChecker(servers, cfg.Clock),
		ready:   make(chan struct{}),
		workers: map[podKey]*podWorker{},
		owners:  map[string]podKey{},
	}
	a.metrics = newAgentMetrics(a)
	if cv, ok := cfg.Volumes.(*ClaimVolumes); ok {
		cv.metrics = a.metrics
		cv.inUse = a.claimInUse
	}
	return a, nil
}

// claimInUse reports whether a pod assigned to this node, terminating
// ones included, mounts the claim. Before the first assignment list
// arrived every claim counts as in use.
func (a *Agent) claimInUse(namespace, claim string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.running {
		return true
	}
	for k, w := range a.workers {
		if k.Namespace != namespace {
			continue
		}
		pod := w.getDesired()
		if pod == nil {
			continue
		}
		for _, v := range pod.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim {
				return true
			}
		}
	}
	return false
}

// Ready is closed once the agent has registered its node, serves its API
// and DNS, and watches its assignments.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// APIAddr is the address the agent's HTTP API listens on (after Ready).
func (a *Agent) APIAddr() string { return a.apiAddr }

// DNSAddrs are the addresses cluster DNS answers on (after Ready).
func (a *Agent) DNSAddrs() []netip.AddrPort {
	if a.dns == nil {
		return nil
	}
	return a.dns.server.Addrs()
}

// Node is the node as the server stored it at registration (after Ready).
func (a *Agent) Node() *corev1.Node { return a.node }

// leaseValid reports whether the node's lease, counted from before the
// last heartbeat the servers accepted was sent, still runs.
//
// After a lapse, renewing the lease is not enough: the assignments the
// agent holds may be stale (the servers may have moved its pods while it
// was paused or cut off), so it is valid again only once an assignment
// list asked for after the renewal has arrived (RELIABILITY R7).
func (a *Agent) leaseValid() bool {
	sent, ttl := a.lastRenewed.Load(), a.leaseTTL.Load()
	if sent == nil || ttl == nil {
		return false
	}
	if time.Since(*sent) >= *ttl {
		now := time.Now()
		a.lapsedAt.CompareAndSwap(nil, &now)
		return false
	}
	lapsed := a.lapsedAt.Load()
	if lapsed == nil {
		return true
	}
	if listed := a.listedFrom.Load(); listed != nil && sent.After(*lapsed) && listed.After(*sent) {
		a.lapsedAt.CompareAndSwap(lapsed, nil)
		return true
	}
	return false
}

// LastRenewed is when the agent sent the last heartbeat that renewed its
// lease, read from the local monotonic clock; the zero time before any.
func (a *Agent) LastRenewed() time.Time {
	if t := a.lastRenewed.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// startFencing runs before the agent reports anything (RELIABILITY R7): if
// the node's lease ran out while no agent was renewing it, every container
// is killed first, since the servers may have given its pods to other
// nodes; then it makes sure the watchdog runs.
func (a *Agent) startFencing(ctx context.Context, rt *containerd.Runtime, socket string) error {
	paths := watchdog.PathsIn(a.cfg.DataDir)
	fenced, killed, err := watchdog.FenceOnStart(ctx, &watchdog.Containerd{Runtime: rt, Namespace: rt.Namespace(), Logger: a.log.Named("fence")}, paths.Lease, watchdog.Now())
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if fenced {
		a.log.Warn("the node's lease ran out while no agent renewed it: killed its containers before reporting", "killed", len(killed))
	}
	a.watchdogCmd = watchdog.Command{Binary: a.cfg.Watchdog, DataDir: a.cfg.DataDir, ContainerdSocket: socket, ContainerdNamespace: rt.Namespace()}
	pid, err := watchdog.EnsureRunning(ctx, a.watchdogCmd)
	if err != nil {
		return fmt.Errorf("agent: start the watchdog: %w", err)
	}
	a.log.Info("watchdog running", "pid", pid)
	return nil
}

// Run starts the agent and blocks until ctx ends. Pods keep running when
// it returns: stopping the agent (or killing it) never stops them; a new
// agent on the same data directory adopts them.
func (a *Agent) Run(ctx context.Context) error {
	cfg := a.cfg
	for _, dir := range []string{cfg.DataDir, a.paths.sandboxes(), a.paths.generations(), a.paths.images()} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The agent's own API, listening first: a second agent on the same
	// address stops here, before touching anything, and the node records
	// the address at registration.
	ln, err := net.Listen("tcp", cfg.AgentAddr)
	if err != nil {
		return fmt.Errorf("agent: listen on %s: %w", cfg.AgentAddr, err)
	}
	a.apiAddr = ln.Addr().String()
	if cfg.APITLS != nil {
		// HTTP/1.1 only: exec upgrades its connection.
		conf := cfg.APITLS.Clone()
		conf.NextProtos = []string{"http/1.1"}
		ln = tls.NewListener(ln, conf)
	}
	httpSrv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: a.log.Named("api").StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug})}
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("agent API stopped", "error", err)
		}
	}()
	stopHTTP := func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		httpSrv.Shutdown(sctx)
		httpSrv.Close()
	}
	defer stopHTTP()

	// containerd: the node's, or one of the agent's own.
	addr, stopDaemon, err := containerd.EnsureDaemon(ctx, cfg.ContainerdSocket, containerd.DaemonOptions{
		Dir: filepath.Join(cfg.DataDir, "containerd"), Logger: a.log.Named("containerd"),
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer stopDaemon()
	rt, err := containerd.Connect(ctx, containerd.Options{Socket: addr, Namespace: cfg.ContainerdNamespace, Logger: a.log.Named("runtime")})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer rt.Close()
	a.containers = a.metrics.containers(rt)
	if cfg.Watchdog != "" {
		if err := a.startFencing(ctx, rt, addr); err != nil {
			return err
		}
	}
	a.importImages(ctx)

	nodeIP := cfg.NodeIP
	if !nodeIP.IsValid() {
		nodeIP = detectNodeIP(a.servers.first())
	}
	node, err := a.register(ctx, nodeIP)
	if err != nil {
		return err
	}
	a.node = node
	subnet, err := netip.ParsePrefix(node.Spec.PodCIDR)
	if err != nil {
		return fmt.Errorf("agent: the server gave node %s no valid pod subnet (%q)", cfg.NodeName, node.Spec.PodCIDR)
	}
	a.network, err = network.New(network.Options{
		Subnet: subnet, DataDir: a.paths.network(), NetNSDir: cfg.NetNSDir,
		Bridge: cfg.Bridge, NetworkName: cfg.NetworkName, PluginDirs: cfg.CNIPluginDirs, Logger: a.log.Named("network"),
		ClusterCIDR: cfg.ClusterCIDR,
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err := a.network.EnsureBridge(); err != nil {
		return fmt.Errorf("agent: %w", err)
	}

	a.dns, err = a.startDNS(ctx, &bg)
	if err != nil {
		return err
	}
	a.metrics.registry.MustRegister(a.dns.server.Collectors()...)

	a.events = newEventRecorder(a.servers, a.log.Named("events"), cfg.NodeName, cfg.Clock)
	a.reporter = newStatusReporter(a.servers, a.log.Named("status"))
	a.env = &podEnv{
		log:        a.log.Named("pods"),
		clock:      cfg.Clock,
		containers: a.containers,
		networks:   a.network,
		volumes:    a.metrics.volumes(cfg.Volumes),
		paths:      a.paths,
		node: nodeFacts{
			Name: cfg.NodeName, IP: nodeIP.String(), DNS: a.network.GatewayIP().String(), Domain: cfg.ClusterDomain,
			CPU: node.Status.Allocatable[corev1.ResourceCPU], Memory: node.Status.Allocatable[corev1.ResourceMemory],
		},
		fences:       newFences(a.paths.generations()),
		restart:      Backoff{Base: cfg.RestartBackoff, Max: cfg.MaxRestartBackoff},
		pull:         Backoff{Base: cfg.RestartBackoff, Max: cfg.MaxRestartBackoff},
		resync:       cfg.Resync,
		minGrace:     2 * time.Second,
		hostFiles:    hostFiles,
		hostPortFree: hostPortFree,
		report:       a.reporter.Set,
		confirm:      a.confirmDeleted,
		leaseValid:   a.leaseValid,
		owned:        a.setOwned,
		event:        a.events.Record,
		boot:         bootID(),
	}
	if err := a.adopt(ctx); err != nil {
		return err
	}

	loops := []func(context.Context){a.heartbeat, a.watchNodes, a.watchAssignments, a.reporter.run, a.events.run, a.watchExits, a.rotateLogs, a.watchClaims}
	for _, loop := range loops {
		bg.Add(1)
		go func() {
			defer bg.Done()
			loop(ctx)
		}()
	}
	a.log.Info("agent started", "node", cfg.NodeName, "ip", nodeIP, "pod_cidr", subnet, "api", a.apiAddr, "dns", a.dns.server.Addrs())
	<-ctx.Done()
	cancel()
	stopHTTP()
	bg.Wait()
	a.workerWG.Wait()
	a.log.Info("agent stopped; pods keep running")
	return nil
}

// adopt finds what an earlier agent process left: a worker is made for
// every pod name that has containers or a sandbox here. Workers act only
// once the first assignment list says what the node should run. Network
// attachments that no sandbox owns are torn down.
func (a *Agent) adopt(ctx context.Context) error {
	cs, err := a.containers.List(ctx)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	sandboxes, err := readSandboxes(a.paths)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	owned := map[string]bool{}
	a.mu.Lock()
	for _, c := range cs {
		k, ok := parseKey(c.Labels[labelPod])
		if !ok {
			a.log.Warn("container without a pod label in the agent's namespace; removing it", "container", c.ID)
			if err := a.containers.Delete(ctx, c.ID); err != nil {
				a.log.Error("remove unlabeled container", "container", c.ID, "error", err)
			}
			continue
		}
		a.worker(k)
		a.owners[c.ID] = k
		owned[c.Labels[labelSandbox]] = true
	}
	for sb, rec := range sandboxes {
		owned[sb] = true
		if rec == nil {
			// Made by a process that died before writing the record: no
			// container can have started in it.
			a.log.Warn("removing an unfinished sandbox", "sandbox", sb)
			if err := a.network.Teardown(ctx, sb); err != nil {
				a.log.Error("tear down network", "sandbox", sb, "error", err)
			}
			if err := unmountAll(a.paths.sandbox(sb)); err == nil {
				os.RemoveAll(a.paths.sandbox(sb))
			}
			continue
		}
		w := a.worker(keyOf(rec))
		w.sandboxes[sb] = rec
	}
	a.mu.Unlock()
	atts, err := a.network.List()
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	for _, at := range atts {
		if !owned[at.PodID] {
			a.log.Warn("tearing down a network no sandbox owns", "sandbox", at.PodID, "ip", at.IP)
			if err := a.network.Teardown(ctx, at.PodID); err != nil {
				a.log.Error("tear down network", "sandbox", at.PodID, "error", err)
			}
		}
	}
	return nil
}

// worker returns the worker of k, creating it (and starting it once the
// agent runs). Callers hold a.mu.
func (a *Agent) worker(k podKey) *podWorker {
	w := a.workers[k]
	if w == nil {
		w = newPodWorker(k, a.env)
		a.workers[k] = w
		if a.running {
			a.startWorker(w)
		}
	}
	return w
}

func (a *Agent) startWorker(w *podWorker) {
	a.workerWG.Add(1)
	go func() {
		defer a.workerWG.Done()
		w.loop(a.runCtx, a.retire)
	}()
}

// retire ends a worker that has nothing left to do, unless something new
// arrived for it meanwhile.
func (a *Agent) retire(w *podWorker) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(w.wake) > 0 {
		return false
	}
	if d := w.getDesired(); d != nil && d.UID != w.confirmed && d.DeletionTimestamp == nil && !a.env.fences.Fenced(w.key, generationOf(d)) {
		return false
	}
	delete(a.workers, w.key)
	for id, k := range a.owners {
		if k == w.key {
			delete(a.owners, id)
		}
	}
	a.reporter.Forget(w.key)
	return true
}

// detachUnused detaches, in the background, the claim volumes attached
// here that neither an assigned pod nor a sandbox on this node mounts:
// what pods that went away while no agent ran left attached.
func (a *Agent) detachUnused(ctx context.Context, cv *ClaimVolumes, pods []*corev1.Pod) {
	keep := slices.Clone(pods)
	sbs, err := readSandboxes(a.paths)
	if err != nil {
		a.log.Error("read sandboxes to find unused volumes", "error", err)
		return
	}
	for _, p := range sbs {
		if p != nil {
			keep = append(keep, p)
		}
	}
	a.workerWG.Add(1)
	go func() {
		defer a.workerWG.Done()
		if err := cv.DetachUnused(ctx, keep); err != nil {
			a.log.Error("detach unused volumes", "error", err)
		}
	}()
}

// setOwned records the container IDs of a pod name.
func (a *Agent) setOwned(k podKey, ids []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, owner := range a.owners {
		if owner == k {
			delete(a.owners, id)
		}
	}
	for _, id := range ids {
		a.owners[id] = k
	}
}

// dispatch hands the pods assigned to this node to their workers; workers
// of names no longer assigned get nothing to run.
func (a *Agent) dispatch(ctx context.Context, pods []*corev1.Pod) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := map[podKey]bool{}
	for _, pod := range pods {
		k := keyOf(pod)
		seen[k] = true
		a.worker(k).setDesired(pod)
	}
	for k, w := range a.workers {
		if !seen[k] {
			w.setDesired(nil)
		}
	}
	if !a.running {
		a.running, a.runCtx = true, ctx
		if cv, ok := a.cfg.Volumes.(*ClaimVolumes); ok {
			a.detachUnused(ctx, cv, pods)
		}
		keys := make([]podKey, 0, len(a.workers))
		for k := range a.workers {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			a.startWorker(a.workers[k])
		}
		a.readyOnce.Do(func() { close(a.ready) })
	}
}

// watchExits wakes a pod's worker when one of its containers exits.
func (a *Agent) watchExits(ctx context.Context) {
	for ctx.Err() == nil {
		exits, errs := a.containers.Exits(ctx)
		for e := range exits {
			a.mu.Lock()
			k, ok := a.owners[e.ID]
			w := a.workers[k]
			a.mu.Unlock()
			if ok && w != nil {
				w.poke()
			}
		}
		select {
		case err := <-errs:
			a.log.Warn("container exit events broke; resubscribing", "error", err)
		default:
		}
		select {
		case <-ctx.Done():
		case <-a.cfg.Clock.After(time.Second):
		}
		// Exits may have been missed meanwhile: look at every pod.
		a.pokeAll()
	}
}

func (a *Agent) pokeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.workers {
		w.poke()
	}
}

// rotateLogs rotates container logs that grew past the limit.
func (a *Agent) rotateLogs(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.cfg.Clock.After(30 * time.Second):
		}
		if _, err := a.containers.RotateLogs(ctx, a.cfg.LogMaxBytes, a.cfg.LogKeep); err != nil && ctx.Err() == nil {
			a.log.Warn("rotate logs", "error", err)
		}
	}
}

// hostFiles reads the node's /etc/hosts and /etc/resolv.conf.
func hostFiles() (hosts, resolv []byte) {
	hosts, _ = os.ReadFile("/etc/hosts")
	resolv, _ = os.ReadFile("/etc/resolv.conf")
	return hosts, resolv
}

// hostPortFree checks that nothing on the node listens on a host port.
func hostPortFree(p network.PortMapping) error {
	proto := orTCP(p.Protocol)
	addr := net.JoinHostPort(p.HostIP, fmt.Sprint(p.HostPort))
	var err error
	switch proto {
	case "udp":
		var c net.PacketConn
		if c, err = net.ListenPacket("udp", addr); err == nil {
			c.Close()
		}
	default:
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			l.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("hostPort %d/%s is already in use on this node: %w", p.HostPort, proto, err)
	}
	return nil
}

// nodeResources are the node's capacity: its CPUs, memory and pods.
func nodeResources(maxPods int) corev1.ResourceList {
	mem := memTotal()
	return corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(numCPU()), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(mem, resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(int64(maxPods), resource.DecimalSI),
	}
}
