package raftstore

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Config says how to open a Store. Zero durations and counts leave
// hashicorp/raft's defaults.
type Config struct {
	// ID is this server's Raft ID; it must stay the same across restarts.
	ID string
	// ClusterID, when set, names the cluster this server belongs to. Open
	// refuses a data directory marked with another cluster's ID and marks
	// an unmarked one. When empty, a bootstrapping server makes one up
	// and any other server takes the one its data directory records.
	ClusterID string
	// DataDir holds the Raft log and stable store (DataDir/raft/raft.db),
	// the snapshots (DataDir/raft/snapshots) and the cluster-id marker.
	// It may be empty only if LogStore, StableStore and SnapshotStore are
	// all given.
	DataDir string
	// BindAddr is the TCP address the Raft transport listens on, such as
	// "10.0.0.1:7001" or "127.0.0.1:0". Ignored when Transport is set.
	BindAddr string
	// AdvertiseAddr is the address other servers reach this one at, when
	// it differs from BindAddr. Ignored when Transport is set.
	AdvertiseAddr string
	// TLS, when set, runs the Raft transport over TLS with this
	// configuration, both to accept and to dial. It must require client
	// certificates and TLS 1.2 or later; api.TLS.PeerConfig makes one
	// that admits only server certificates of the cluster, in both
	// directions. Ignored when Transport is set.
	TLS *tls.Config
	// Bootstrap makes this server start a new cluster if it has no Raft
	// state yet: a cluster of the voters in Servers, or of itself alone
	// when Servers is empty. Others join through AddVoter on the leader.
	Bootstrap bool
	// Servers, with Bootstrap, are the voters of the new cluster, this
	// server among them. Servers that form a cluster together each
	// bootstrap with the same list, which hashicorp/raft allows as long as
	// the lists are identical.
	Servers []Member
	// Logger receives Raft's and the store's logs. Nil discards them.
	Logger hclog.Logger

	// Transport replaces the TCP transport (tests use
	// raft.NewInmemTransport). The caller closes it after Close.
	Transport raft.Transport
	// LogStore, StableStore and SnapshotStore replace the on-disk stores
	// (tests use raft.NewInmemStore and raft.NewInmemSnapshotStore).
	LogStore      raft.LogStore
	StableStore   raft.StableStore
	SnapshotStore raft.SnapshotStore

	// SnapshotThreshold is how many log entries since the last snapshot
	// make Raft take a new one, checked every SnapshotInterval.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// TrailingLogs is how many entries stay in the log after a snapshot,
	// so that slightly lagging followers need no snapshot.
	TrailingLogs uint64

	// Raft's timers (defaults: 1 s, 1 s, DefaultLeaderLeaseTimeout,
	// 50 ms). Servers on shared or small machines should not go below
	// the defaults.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration

	// OnStorageError is called with any error writing the Raft log or
	// stable store. Such an error may mean a failed fsync, after which the
	// server must not go on; nil means panic, which ends the process.
	OnStorageError func(error)
}

// DefaultLeaderLeaseTimeout is how long a leader goes on without hearing
// from a quorum before it steps down: the heartbeat timeout, twice
// hashicorp/raft's 500 ms, so that a leader on a loaded machine does not
// give up its leadership (and every node lease it holds in memory) over
// a stall of half a second. Safety does not rest on it: decisions are
// taken after VerifyLeader, and every write commits through a quorum.
const DefaultLeaderLeaseTimeout = time.Second

// Store is one server's replica of the cluster state, replicated with
// Raft. All its methods are safe for concurrent use. Reads (View,
// WaitForIndex) are served from the local replica and may lag behind the
// leader; writes (Apply) and membership changes go to the leader and fail
// with a *NotLeaderError elsewhere.
type Store struct {
	id        string
	clusterID string
	logger    hclog.Logger
	raft      *raft.Raft
	fsm       *FSM
	trans     raft.Transport
	closers   []io.Closer // transport and bolt store that Open created

	notifyCh chan bool
	done     chan struct{}
	wg       sync.WaitGroup
	ctx      context.Context // cancelled by Close
	cancel   context.CancelFunc

	mark *stateMark // the member marker, written with the first Raft state

	metrics *storeMetrics
	commit  *committer // the leader's writes go through it

	mu     sync.Mutex
	leader bool
	subs   []chan bool
	closed bool

	closeOnce sync.Once
	closeErr  error
}

// Open starts this server's Raft replica. It creates DataDir/raft if
// needed, checks the cluster-id and member markers (see Inspect), carries
// out a lost-quorum recovery if an operator wrote DataDir/raft/peers.json,
// and with Bootstrap and no existing state bootstraps a new cluster. It
// fails with ErrClusterMismatch, ErrStateLost or ErrOtherServer when the
// data directory is not this server's to use. The state is restored
// from the newest snapshot; log entries after it are applied once a
// leader is known, so call Barrier (on the leader) or WaitForIndex before
// relying on a View right after Open.
func Open(cfg Config) (*Store, error) {
	if cfg.ID == "" {
		return nil, errors.New("open raft store: server id is empty")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	s := &Store{
		id:       cfg.ID,
		logger:   logger,
		fsm:      NewFSM(),
		notifyCh: make(chan bool, 1),
		done:     make(chan struct{}),
		metrics:  newStoreMetrics(),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.open(cfg); err != nil {
		s.cancel()
		for i := len(s.closers) - 1; i >= 0; i-- {
			s.closers[i].Close()
		}
		return nil, fmt.Errorf("open raft store %s: %w", cfg.ID, err)
	}
	s.commit = newCommitter(s.raft, s.metrics, s.readersLogVersion)
	s.wg.Add(2)
	go s.watchLeadership()
	go func() {
		defer s.wg.Done()
		s.commit.run(s.done)
	}()
	return s, nil
}

func (s *Store) open(cfg Config) error {
	onFatal := cfg.OnStorageError
	if onFatal == nil {
		onFatal = func(err error) {
			s.logger.Error("storage failure, stopping", "error", err)
			panic(err)
		}
	}

	// The data directory and the cluster it belongs to.
	if cfg.DataDir == "" && (cfg.LogStore == nil || cfg.StableStore == nil || cfg.SnapshotStore == nil) {
		return errors.New("data directory is empty")
	}
	raftDir := filepath.Join(cfg.DataDir, "raft")
	if cfg.DataDir != "" {
		if err := os.MkdirAll(raftDir, 0o700); err != nil {
			return err
		}
		id, err := readClusterID(cfg.DataDir)
		if err != nil {
			return err
		}
		if id != "" && cfg.ClusterID != "" && id != cfg.ClusterID {
			return fmt.Errorf("%s says cluster %q, want %q: %w",
				filepath.Join(cfg.DataDir, clusterMarker), id, cfg.ClusterID, ErrClusterMismatch)
		}
		s.clusterID = id
	}
	var marker *member
	if cfg.DataDir != "" {
		m, err := readMember(cfg.DataDir)
		if err != nil {
			return err
		}
		marker = m
	}
	s.mark = &stateMark{write: func() error {
		if cfg.DataDir == "" {
			return nil
		}
		return writeMember(cfg.DataDir, member{Server: cfg.ID, Cluster: s.clusterID})
	}}

	// Stores: raft-boltdb with fsync on every write (never NoSync).
	logs, stable, snaps := cfg.LogStore, cfg.StableStore, cfg.SnapshotStore
	if logs == nil || stable == nil {
		bolt, err := raftboltdb.New(raftboltdb.Options{
			Path: filepath.Join(raftDir, "raft.db"),
			// Another process holding the file fails us instead of
			// blocking forever.
			BoltOptions: &bbolt.Options{Timeout: 2 * time.Second},
		})
		if err != nil {
			return fmt.Errorf("open %s: %w", filepath.Join(raftDir, "raft.db"), err)
		}
		s.closers = append(s.closers, bolt)
		if logs == nil {
			logs = bolt
		}
		if stable == nil {
			stable = bolt
		}
	}
	logs = &fatalLogStore{LogStore: logs, onFatal: onFatal, mark: s.mark}
	stable = &fatalStableStore{StableStore: stable, onFatal: onFatal, mark: s.mark}
	cached, err := raft.NewLogCache(512, logs)
	if err != nil {
		return err
	}
	if snaps == nil {
		fss, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 2, s.logger.Named("snapshots"))
		if err != nil {
			return err
		}
		snaps = fss
	}

	// Transport.
	s.trans = cfg.Transport
	if s.trans == nil {
		var advertise net.Addr
		if cfg.AdvertiseAddr != "" {
			a, err := net.ResolveTCPAddr("tcp", cfg.AdvertiseAddr)
			if err != nil {
				return fmt.Errorf("advertise address %q: %w", cfg.AdvertiseAddr, err)
			}
			advertise = a
		}
		var nt *raft.NetworkTransport
		var err error
		if cfg.TLS != nil {
			nt, err = newTLSTransport(cfg.BindAddr, advertise, cfg.TLS, s.logger.Named("transport"))
		} else {
			nt, err = raft.NewTCPTransportWithLogger(cfg.BindAddr, advertise, 3, 10*time.Second, s.logger.Named("transport"))
		}
		if err != nil {
			return fmt.Errorf("raft transport on %q: %w", cfg.BindAddr, err)
		}
		s.trans = nt
		s.closers = append(s.closers, nt)
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = s.logger.Named("raft")
	rc.NotifyCh = s.notifyCh
	setIf(&rc.SnapshotThreshold, cfg.SnapshotThreshold)
	setIf(&rc.SnapshotInterval, cfg.SnapshotInterval)
	setIf(&rc.TrailingLogs, cfg.TrailingLogs)
	setIf(&rc.HeartbeatTimeout, cfg.HeartbeatTimeout)
	setIf(&rc.ElectionTimeout, cfg.ElectionTimeout)
	rc.LeaderLeaseTimeout = DefaultLeaderLeaseTimeout
	setIf(&rc.LeaderLeaseTimeout, cfg.LeaderLeaseTimeout)
	rc.LeaderLeaseTimeout = min(rc.LeaderLeaseTimeout, rc.HeartbeatTimeout)
	setIf(&rc.CommitTimeout, cfg.CommitTimeout)
	if err := raft.ValidateConfig(rc); err != nil {
		return err
	}

	has, err := raft.HasExistingState(cached, stable, snaps)
	if err != nil {
		return err
	}
	if err := checkMember(cfg.DataDir, marker, cfg.ID, has); err != nil {
		return err
	}
	if err := s.recoverPeers(cfg, rc, cached, stable, snaps, has); err != nil {
		return err
	}
	if has {
		// A directory from before member markers, or whose cluster ID a
		// recovery changed.
		if marker == nil || marker.Cluster != s.clusterID {
			if err := s.mark.write(); err != nil {
				return err
			}
		}
		s.mark.written.Store(true)
	}

	if cfg.Bootstrap && !has {
		conf, err := bootstrapConfiguration(cfg, s.trans.LocalAddr())
		if err != nil {
			return err
		}
		if s.clusterID == "" {
			s.clusterID = cfg.ClusterID
		}
		if s.clusterID == "" {
			s.clusterID = newClusterID()
		}
		if err := s.markCluster(cfg.DataDir); err != nil {
			return err
		}
		s.logger.Info("bootstrapping a new cluster", "cluster", s.clusterID, "server", cfg.ID, "voters", len(conf.Servers))
		if err := raft.BootstrapCluster(rc, cached, stable, snaps, s.trans, conf); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	if s.clusterID == "" && cfg.ClusterID != "" {
		s.clusterID = cfg.ClusterID
		if err := s.markCluster(cfg.DataDir); err != nil {
			return err
		}
	}

	r, err := raft.NewRaft(rc, s.fsm, cached, stable, snaps, s.trans)
	if err != nil {
		return err
	}
	s.raft = r
	return nil
}

// bootstrapConfiguration is the configuration cfg bootstraps with: the
// voters of cfg.Servers, or this server alone at addr.
func bootstrapConfiguration(cfg Config, addr raft.ServerAddress) (raft.Configuration, error) {
	if len(cfg.Servers) == 0 {
		return raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: addr}}}, nil
	}
	var conf raft.Configuration
	self := false
	for _, m := range cfg.Servers {
		if !m.Voter {
			return conf, fmt.Errorf("bootstrap: server %s is not a voter; a cluster starts with voters only", m.ID)
		}
		self = self || m.ID == cfg.ID
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.Addr)})
	}
	if !self {
		return conf, fmt.Errorf("bootstrap: the servers to bootstrap with do not include this one, %s", cfg.ID)
	}
	return conf, nil
}

func (s *Store) markCluster(dataDir string) error {
	if dataDir == "" {
		return nil
	}
	return writeClusterID(dataDir, s.clusterID, "")
}

func setIf[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}

func newClusterID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ID returns this server's Raft ID.
func (s *Store) ID() string { return s.id }

// HasState reports whether this server holds Raft state: it had some when
// it opened, or it has stored a term, a vote or a log entry since.
func (s *Store) HasState() bool { return s.mark.written.Load() }

// ClusterID returns the ID of the cluster this server belongs to, or ""
// if neither its configuration nor its data directory names one.
func (s *Store) ClusterID() string { return s.clusterID }

// Addr returns the Raft address of this server's transport (with the
// real port when BindAddr asked for port 0).
func (s *Store) Addr() string { return string(s.trans.LocalAddr()) }

// View returns the current local state. See View for what may be done
// with its objects (nothing but read them).
func (s *Store) View() *View { return s.fsm.View() }

// WaitForIndex blocks until the local applied index is greater than
// after and returns it. It ends early with ctx's error, or ErrShutdown
// when the store closes. Watches use it as:
//
//	if v := s.View(); v.Index() <= seen { s.WaitForIndex(ctx, seen) }
func (s *Store) WaitForIndex(ctx context.Context, after uint64) (uint64, error) {
	return s.wait(ctx, func(ctx context.Context) (uint64, error) { return s.fsm.WaitForIndex(ctx, after) })
}

// wait runs one of the FSM's waits, ended early by the store's shutdown,
// which it reports as ErrShutdown.
func (s *Store) wait(ctx context.Context, w func(context.Context) (uint64, error)) (uint64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	idx, err := w(ctx)
	if err != nil && s.ctx.Err() != nil {
		return idx, ErrShutdown
	}
	return idx, err
}

// WaitForChange blocks until the change k names (a kind, or one node's
// pods) passes after in the local replica, and returns its index; it
// sleeps through commits that do not move k. It returns ctx's error if
// ctx ends first, and ErrShutdown once the store is shut down.
func (s *Store) WaitForChange(ctx context.Context, k ChangeKey, after uint64) (uint64, error) {
	return s.wait(ctx, func(ctx context.Context) (uint64, error) { return s.fsm.WaitForChange(ctx, k, after) })
}

// WaitForChanges is WaitForChange for several keys: it returns once any
// of them passes after.
func (s *Store) WaitForChanges(ctx context.Context, keys []ChangeKey, after uint64) (uint64, error) {
	return s.wait(ctx, func(ctx context.Context) (uint64, error) { return s.fsm.WaitForChanges(ctx, keys, after) })
}

// Apply commits txn through the leader's log and returns the log index
// at which it applied (the resourceVersion of every object it put). A
// *TxnError comes with the index of the entry that was refused. ctx
// bounds the whole call, including the wait for a full apply queue.
// Writes that arrive together may share one entry, and so one index; each
// still gets its own result (see group.go).
//
// Errors:
//   - ErrNoRequestID, or a *TxnError with CodeInvalid for a malformed txn;
//     nothing was submitted.
//   - *NotLeaderError: this server is not the leader; nothing committed.
//     Forward the request to the leader it names.
//   - *TxnError (Conflict, NotFound, AlreadyExists): committed, and
//     changed nothing.
//   - an error wrapping ErrOutcomeUnknown (and ErrLeadershipLost, ctx's
//     error or ErrShutdown): the write was submitted and may or may not
//     have committed. Retry with the same RequestID; the FSM applies a
//     request ID at most once and answers repeats with the first result.
//   - ctx's error or ErrShutdown without it: the write ended before it
//     was submitted; nothing committed.
func (s *Store) Apply(ctx context.Context, txn Txn) (uint64, error) {
	if err := ValidateTxn(txn); err != nil {
		return 0, err
	}
	if s.raft.State() != raft.Leader {
		return 0, s.notLeader()
	}
	timeout, err := timeoutOf(ctx)
	if err != nil {
		return 0, fmt.Errorf("apply %s: %w", txn.RequestID, err)
	}
	p, err := newPending(txn, s.commit.logVersion(), timeout)
	if err != nil {
		return 0, err
	}
	select {
	case s.commit.queue <- p:
	case <-ctx.Done():
		return 0, fmt.Errorf("apply %s: %w", txn.RequestID, ctx.Err())
	case <-s.done:
		return 0, fmt.Errorf("apply %s: %w", txn.RequestID, raft.ErrRaftShutdown)
	}
	var a applied
	select {
	case a = <-p.done:
	case <-ctx.Done():
		return 0, fmt.Errorf("apply %s: %w: %w", txn.RequestID, ErrOutcomeUnknown, ctx.Err())
	case <-s.done:
		return 0, fmt.Errorf("apply %s: %w: %w", txn.RequestID, ErrOutcomeUnknown, raft.ErrRaftShutdown)
	}
	if err := a.err; err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return 0, s.notLeader()
		}
		return 0, fmt.Errorf("apply %s: %w: %w", txn.RequestID, ErrOutcomeUnknown, err)
	}
	return a.res.Index, a.res.Err
}

// IsLeader reports whether this server is the leader right now. Use
// VerifyLeader before a decision that must not be made by a deposed one.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// LeaderID returns the ID and Raft address of the leader this server
// knows of, or empty strings.
func (s *Store) LeaderID() (id, addr string) {
	a, i := s.raft.LeaderWithID()
	return string(i), string(a)
}

// VerifyLeader confirms with a quorum that this server is still the
// leader. It returns a *NotLeaderError if it is not.
func (s *Store) VerifyLeader(ctx context.Context) error {
	if err := wait(ctx, s.raft.VerifyLeader()); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return s.notLeader()
		}
		return fmt.Errorf("verify leader: %w", err)
	}
	return nil
}

// Barrier blocks until every entry committed before it is applied
// locally; on a new leader this makes its View current. Leader only.
func (s *Store) Barrier(ctx context.Context) error {
	timeout, err := timeoutOf(ctx)
	if err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	if err := wait(ctx, s.raft.Barrier(timeout)); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return s.notLeader()
		}
		return fmt.Errorf("barrier: %w", err)
	}
	return nil
}

// LeaderCh returns a new channel that receives true when this server
// becomes the leader and false when it stops being it. It first receives
// the current value. It holds only the latest value: a slow reader sees
// the newest state, not every transition. It is closed by Close.
func (s *Store) LeaderCh() <-chan bool {
	ch := make(chan bool, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		close(ch)
		return ch
	}
	ch <- s.leader
	s.subs = append(s.subs, ch)
	return ch
}

func (s *Store) watchLeadership() {
	defer s.wg.Done()
	for {
		select {
		case v := <-s.notifyCh:
			s.logger.Info("leadership changed", "leader", v)
			s.metrics.leaderChanges.Inc()
			s.mu.Lock()
			s.leader = v
			for _, ch := range s.subs {
				// Replace an unread value with the newest one.
				select {
				case <-ch:
				default:
				}
				ch <- v
			}
			s.mu.Unlock()
		case <-s.done:
			return
		}
	}
}

// Member is one server in the Raft configuration.
type Member struct {
	ID    string
	Addr  string
	Voter bool
}

// Members returns the servers of the latest Raft configuration, as this
// server knows it.
func (s *Store) Members() ([]Member, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	var out []Member
	for _, srv := range f.Configuration().Servers {
		out = append(out, Member{ID: string(srv.ID), Addr: string(srv.Address), Voter: srv.Suffrage == raft.Voter})
	}
	return out, nil
}

// AddVoter adds the server id at Raft address addr as a voter, or updates
// its address. Leader only.
func (s *Store) AddVoter(ctx context.Context, id, addr string) error {
	timeout, err := timeoutOf(ctx)
	if err != nil {
		return fmt.Errorf("add voter %s: %w", id, err)
	}
	if err := wait(ctx, s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout)); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return s.notLeader()
		}
		return fmt.Errorf("add voter %s: %w", id, err)
	}
	return nil
}

// RemoveServer removes the server id from the cluster. Leader only.
func (s *Store) RemoveServer(ctx context.Context, id string) error {
	timeout, err := timeoutOf(ctx)
	if err != nil {
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	if err := wait(ctx, s.raft.RemoveServer(raft.ServerID(id), 0, timeout)); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return s.notLeader()
		}
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	return nil
}

// Stats returns Raft's statistics (see raft.Raft.Stats) plus
// "fsm_index", the index of the local View, and "cluster_id".
func (s *Store) Stats() map[string]string {
	st := s.raft.Stats()
	st["fsm_index"] = strconv.FormatUint(s.fsm.View().Index(), 10)
	st["cluster_id"] = s.clusterID
	return st
}

// Close stops this server's replica: Raft shuts down, waiters and
// LeaderCh channels are released, and the files are closed. The state
// written so far stays on disk. Close is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		errs := []error{s.raft.Shutdown().Error()}
		close(s.done)
		s.wg.Wait()
		for i := len(s.closers) - 1; i >= 0; i-- {
			errs = append(errs, s.closers[i].Close())
		}
		s.closeErr = errors.Join(errs...)

		s.mu.Lock()
		defer s.mu.Unlock()
		s.closed = true
		for _, ch := range s.subs {
			close(ch)
		}
		s.subs = nil
	})
	return s.closeErr
}

func (s *Store) notLeader() error {
	id, addr := s.LeaderID()
	if id == s.id {
		// Raft still names us while stepping down.
		id, addr = "", ""
	}
	return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
}

// timeoutOf returns how long ctx has left, 0 for no deadline, or ctx's
// error if it has ended.
func timeoutOf(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		return 0, nil
	}
	d := time.Until(deadline)
	if d <= 0 {
		return 0, context.DeadlineExceeded
	}
	return d, nil
}

// wait returns f's error, or ctx's error if ctx ends first. Raft
// resolves every future eventually (applied, leadership lost or
// shutdown), so the goroutine does not outlive it for long.
func wait(ctx context.Context, f raft.Future) error {
	errc := make(chan error, 1)
	go func() { errc <- f.Error() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
