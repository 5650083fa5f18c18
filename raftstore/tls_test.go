package raftstore_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/api/tlstest"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/raftstore/raftstoretest"
)

// tlsServer opens a store whose Raft transport runs over TLS with
// material ld, on a loopback port.
func tlsServer(t *testing.T, id string, ld *api.TLS, cfg raftstore.Config) *raftstore.Store {
	t.Helper()
	cfg.ID = id
	cfg.ClusterID = "c1"
	cfg.DataDir = t.TempDir()
	if cfg.BindAddr == "" {
		cfg.BindAddr = "127.0.0.1:0"
	}
	cfg.TLS = ld.PeerConfig()
	if cfg.Logger == nil {
		cfg.Logger = raftstoretest.Logger(t).Named(id)
	}
	return openStore(t, fastTimers(cfg))
}

// freeAddrs returns n loopback addresses nobody listens on.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ln.Addr().String())
		ln.Close()
	}
	return out
}

// TestTLSTransportReplicates forms a cluster of three servers whose Raft
// runs over mutual TLS with server certificates, and checks that a write
// reaches every one of them.
func TestTLSTransportReplicates(t *testing.T) {
	ca := tlstest.NewCA(t, "")
	addrs := freeAddrs(t, 3)
	var members []raftstore.Member
	for i, a := range addrs {
		members = append(members, raftstore.Member{ID: fmt.Sprintf("s%d", i+1), Addr: a, Voter: true})
	}
	var stores []*raftstore.Store
	for i, m := range members {
		stores = append(stores, tlsServer(t, m.ID, ca.TLS(api.CertServer, m.ID), raftstore.Config{
			BindAddr: addrs[i], Bootstrap: true, Servers: members,
		}))
	}
	var leader *raftstore.Store
	eventually(t, 20*time.Second, "a leader over TLS", func() bool {
		for _, s := range stores {
			if s.IsLeader() {
				leader = s
				return true
			}
		}
		return false
	})
	idx := applyOps(t, leader, "ns", ensure(t, namespace("over-tls")))
	for i, s := range stores {
		if _, err := s.WaitForIndex(ctxFor(t, 10*time.Second), idx-1); err != nil {
			t.Fatalf("s%d did not reach index %d: %v", i+1, idx, err)
		}
		if _, ok := s.View().Get(raftstore.Namespaces, "", "over-tls"); !ok {
			t.Errorf("s%d lacks the namespace written over TLS", i+1)
		}
	}
}

// dialLayer is the dialing half of a raft.StreamLayer: a test's way to
// speak Raft's protocol to a server with a TLS configuration of its
// choosing, or none.
type dialLayer struct {
	config *tls.Config
	closed chan struct{}
}

func (d *dialLayer) Accept() (net.Conn, error) { <-d.closed; return nil, net.ErrClosed }
func (d *dialLayer) Close() error {
	select {
	case <-d.closed:
	default:
		close(d.closed)
	}
	return nil
}
func (d *dialLayer) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (d *dialLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	dialer := &net.Dialer{Timeout: timeout}
	if d.config == nil {
		return dialer.Dial("tcp", string(addr))
	}
	return tls.DialWithDialer(dialer, "tcp", string(addr), d.config)
}

// raftState is what a refused peer must not change on a server.
type raftState struct {
	term    string
	leader  bool
	members []raftstore.Member
	hash    [32]byte
}

func stateOf(t *testing.T, s *raftstore.Store) raftState {
	t.Helper()
	m, err := s.Members()
	if err != nil {
		t.Fatal(err)
	}
	return raftState{term: s.Stats()["term"], leader: s.IsLeader(), members: m, hash: s.View().Hash()}
}

func (a raftState) equal(b raftState) bool {
	return a.term == b.term && a.leader == b.leader && slices.Equal(a.members, b.members) && a.hash == b.hash
}

// TestTLSTransportRefuses sends a RequestVote with a higher term, the
// message that would depose the leader, to a server whose Raft transport
// runs over TLS, from peers that must be refused at the handshake: an
// agent's or a client's certificate, an expired one, one from another CA
// or of another cluster, TLS 1.1, and plain TCP. The leader's term,
// leadership, configuration and state must stay as they were.
func TestTLSTransportRefuses(t *testing.T) {
	ca := tlstest.NewCA(t, "")
	other := tlstest.NewCA(t, "")
	leader := tlsServer(t, "s1", ca.TLS(api.CertServer, "s1"), raftstore.Config{Bootstrap: true})
	eventually(t, 10*time.Second, "s1 leads", leader.IsLeader)
	applyOps(t, leader, "ns", ensure(t, namespace("before")))

	agent := ca.TLS(api.CertAgent, "node-a")
	client := ca.TLS(api.CertClient, "alice")
	cases := []struct {
		name   string
		config *tls.Config // nil: plain TCP
		ok     bool
	}{
		{"agent certificate", agent.ClientConfig(), false},
		{"client certificate", client.ClientConfig(), false},
		// What a server started with an agent's certificate would dial with.
		{"agent certificate with a peer configuration", agent.PeerConfig(), false},
		{"expired server certificate", ca.TLS(api.CertServer, "s9", tlstest.Expired).PeerConfig(), false},
		{"server certificate of an unknown CA", other.Foreign(ca, api.CertServer, "s7").PeerConfig(), false},
		{"server certificate of another cluster", otherCluster(ca.TLS(api.CertServer, "s8", tlstest.OfCluster("prod"))), false},
		{"TLS 1.1", peerTLS11(ca.TLS(api.CertServer, "s6")), false},
		{"plain TCP", nil, false},
		// The control: a server of the cluster is heard (and its vote
		// for a stale term refused by Raft, not by TLS).
		{"server certificate", ca.TLS(api.CertServer, "s2").PeerConfig(), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := stateOf(t, leader)
			layer := &dialLayer{config: tc.config, closed: make(chan struct{})}
			trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: layer, MaxPool: 1, Timeout: 5 * time.Second})
			defer trans.Close()
			term := uint64(1 << 40) // far ahead: a server that heard it would step down
			if tc.ok {
				term = 1 // behind: Raft refuses the vote and nothing changes
			}
			req := &raft.RequestVoteRequest{
				RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("intruder"), Addr: []byte("127.0.0.1:1")},
				Term:      term, LastLogIndex: 1 << 40, LastLogTerm: term,
			}
			var resp raft.RequestVoteResponse
			err := trans.RequestVote("s1", raft.ServerAddress(leader.Addr()), req, &resp)
			if tc.ok {
				if err != nil {
					t.Fatalf("a server of the cluster was not heard: %v", err)
				}
				if resp.Granted {
					t.Fatal("the leader granted a vote for a stale term")
				}
			} else {
				if err == nil {
					t.Fatalf("the request reached Raft: granted %v, term %d", resp.Granted, resp.Term)
				}
				t.Logf("refused: %v", err)
			}
			if after := stateOf(t, leader); !after.equal(before) {
				t.Errorf("state changed: before %+v, after %+v", before, after)
			}
		})
	}
}

// otherCluster dials with a server certificate of another cluster that
// accepts the leader's: refusing it is the leader's job.
func otherCluster(ld *api.TLS) *tls.Config {
	c := ld.PeerConfig()
	c.ServerName = api.ServerName(api.DefaultCluster)
	c.VerifyConnection = nil
	return c
}

func peerTLS11(ld *api.TLS) *tls.Config {
	c := ld.PeerConfig()
	c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	return c
}

// logBuffer collects a logger's lines for a test to wait on.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// TestAgentCertificateCannotJoinRaft starts a second store configured with
// an agent's certificate, which bootstraps a cluster of itself and the
// leader and so campaigns against it. The leader must hear none of it: it
// refuses each connection at the handshake and stays leader in the same
// term, with the same members and state.
func TestAgentCertificateCannotJoinRaft(t *testing.T) {
	ca := tlstest.NewCA(t, "")
	var leaderLog logBuffer
	leader := tlsServer(t, "s1", ca.TLS(api.CertServer, "s1"), raftstore.Config{
		Bootstrap: true,
		Logger:    hclog.New(&hclog.LoggerOptions{Name: "s1", Output: &leaderLog, Level: hclog.Info}),
	})
	eventually(t, 10*time.Second, "s1 leads", leader.IsLeader)
	applyOps(t, leader, "ns", ensure(t, namespace("before")))
	before := stateOf(t, leader)

	addr := freeAddrs(t, 1)[0]
	intruder := tlsServer(t, "s2", ca.TLS(api.CertAgent, "node-a"), raftstore.Config{
		BindAddr:  addr,
		Bootstrap: true,
		Servers: []raftstore.Member{
			{ID: "s1", Addr: leader.Addr(), Voter: true},
			{ID: "s2", Addr: addr, Voter: true},
		},
	})
	// Each of the intruder's campaigns dials the leader, which refuses
	// the connection; wait for two refusals.
	refusal := `peer certificate \"node-a\" is not a server certificate` // as hclog quotes it
	defer func() {
		if t.Failed() {
			t.Logf("leader log:\n%s", leaderLog.String())
		}
	}()
	eventually(t, 30*time.Second, "the leader to refuse the intruder twice", func() bool { return leaderLog.count(refusal) >= 2 })
	if after := stateOf(t, leader); !after.equal(before) {
		t.Errorf("the leader heard an agent's certificate: before %+v, after %+v", before, after)
	}
	if intruder.IsLeader() {
		t.Error("the intruder leads")
	}
}

func TestTLSTransportRefusesWeakConfig(t *testing.T) {
	ca := tlstest.NewCA(t, "")
	ld := ca.TLS(api.CertServer, "s1")
	weak := ld.PeerConfig()
	weak.MinVersion = tls.VersionTLS11
	noClientAuth := ld.PeerConfig()
	noClientAuth.ClientAuth = tls.VerifyClientCertIfGiven
	for name, c := range map[string]*tls.Config{"TLS 1.1 allowed": weak, "client certificates optional": noClientAuth} {
		_, err := raftstore.Open(raftstore.Config{ID: "s1", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", TLS: c, Bootstrap: true})
		if err == nil || !strings.Contains(err.Error(), "Raft transport's TLS configuration") {
			t.Errorf("%s: Open: %v", name, err)
		}
	}
}
