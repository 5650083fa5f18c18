package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/scheduler/httpapi"
)

// How a server takes part in a cluster is decided before it starts Raft,
// because a server must never vote under a cluster or an identity that is
// not its own:
//
//   - With Raft state, it is a member restarting. It first asks the --join
//     servers which cluster they belong to and refuses to start if its
//     data directory is from another one (another cluster, or the cluster
//     before a lost-quorum recovery).
//   - Without state and with --join, it asks the leader for the Raft
//     configuration (a read the leader confirms with VerifyLeader). If its
//     ID is a member, its data directory was emptied and it may have
//     forgotten votes it cast: it refuses to start. Otherwise it takes the
//     cluster's ID, starts Raft, and asks the leader to add it.
//   - With --bootstrap-expect N, servers without state ask each other
//     (GET /v1/join-info) until N of them know the same N servers; then
//     each bootstraps with the same configuration of N voters, which
//     hashicorp/raft allows, and the same cluster ID.
//
// The cluster ID of a new cluster is the proposal of the server with the
// lowest ID. Each server writes its proposal to its data directory before
// it tells anyone, so a restart does not change it. A server bootstraps
// only once every one of the N reports the same N servers, so all read
// the same proposal. The others only count a server that reports the same
// N servers, so a server is in the configuration only if it found all N
// itself. One that looks again after the others bootstrapped finds them
// holding state and listing it: having found exactly that configuration
// in this run, it knows it never started Raft, so it starts without state
// (the leader brings it up to date) and says so when it joins. A server
// that lost its state and starts again cannot pass for it: it never
// counts servers that hold state, so it never finds the whole
// configuration. What this cannot prevent is a wrong count: more than N
// servers started with --bootstrap-expect N could form two clusters if
// they saw different sets, so a server that sees more than N waits and
// says so.

// peerTimeout bounds one request to another server while forming or
// joining a cluster.
const peerTimeout = 5 * time.Second

// formDecision is what a server without Raft state does next, decided
// from what the other servers said.
type formDecision struct {
	action formAction
	// via is the HTTP address of a server of the cluster to join.
	via string
	// servers and clusterID are the cluster to bootstrap.
	servers   []raftstore.Member
	clusterID string
	// discovered are the servers without state found so far, this one
	// included, by ID; published so that the others can check they agree.
	discovered []httpapi.Peer
	// reason says why the server waits.
	reason string
}

type formAction int

const (
	formWait      formAction = iota
	formJoin                 // join the cluster at via
	formBootstrap            // bootstrap with servers and clusterID
	formLate                 // start Raft without state in the cluster via belongs to
)

// formedWith reports whether servers, the configuration of a cluster that
// lists self, are the servers self itself found while waiting to form a
// cluster: then it took part in forming that cluster and the others
// bootstrapped first. A server that lost its state and starts again finds
// the others holding state and never counts them, so it never finds the
// whole configuration.
func formedWith(self httpapi.JoinInfo, servers []httpapi.Peer) bool {
	return len(self.Discovered) > 1 && slices.Equal(peerIDs(self.Discovered), peerIDs(servers))
}

// lostState is the error of a server without state that its cluster
// lists as a member.
func lostState(id, via, raftAddr string) error {
	return fmt.Errorf("%w: server %s is a member of the cluster at %s (Raft address %s) but its data directory holds no Raft state. "+
		"A member that forgot its votes must not vote again: remove it with 'stead --server %s operator raft remove-peer --id %s', "+
		"empty its --data-dir and start it again to join as a new member",
		raftstore.ErrStateLost, id, via, raftAddr, via, id)
}

// decideFormation decides how self, a server without Raft state started
// with --bootstrap-expect expect, goes on, given the answers of the other
// servers to GET /v1/join-info. It is a pure function of its inputs. It
// fails when the servers' settings make forming a cluster unsafe, and when
// a cluster lists self as a member that self did not form it with: self
// lost its state.
func decideFormation(self httpapi.JoinInfo, expect int, answers []httpapi.JoinInfo) (formDecision, error) {
	byID := map[string]httpapi.JoinInfo{}
	var others []httpapi.JoinInfo
	for _, a := range answers {
		if a.ID == self.ID && a.RaftAddr == self.RaftAddr && a.HTTPAddr == self.HTTPAddr {
			continue // this server, listed in --join
		}
		prev, seen := byID[a.ID]
		if a.ID == self.ID || (seen && (prev.RaftAddr != a.RaftAddr || prev.HTTPAddr != a.HTTPAddr)) {
			return formDecision{}, fmt.Errorf("two servers use the --node-id %q (one at %s); give every server its own", a.ID, a.HTTPAddr)
		}
		if !seen {
			byID[a.ID] = a
			others = append(others, a)
		}
	}
	slices.SortFunc(others, func(a, b httpapi.JoinInfo) int { return strings.Compare(a.ID, b.ID) })

	// A cluster that has a leader: join it. Whether this server is a
	// member already is for the leader to say.
	for _, a := range others {
		if a.HasState && a.Leader != "" {
			via := a.LeaderHTTPAddr
			if via == "" {
				via = a.HTTPAddr // it forwards to the leader
			}
			return formDecision{action: formJoin, via: via}, nil
		}
	}
	// Servers that bootstrapped and have no leader yet.
	for _, a := range others {
		if !a.HasState {
			continue
		}
		i := slices.IndexFunc(a.Servers, func(p httpapi.Peer) bool { return p.ID == self.ID })
		switch {
		case i < 0:
			return formDecision{action: formWait, reason: fmt.Sprintf("server %s belongs to a cluster that does not list this one and has no leader yet", a.ID)}, nil
		case a.Servers[i].RaftAddr != self.RaftAddr:
			return formDecision{}, fmt.Errorf("server %s is in a cluster that lists this server, %s, at Raft address %s, not %s; start it with --raft-addr %s",
				a.ID, self.ID, a.Servers[i].RaftAddr, self.RaftAddr, a.Servers[i].RaftAddr)
		case !formedWith(self, a.Servers):
			return formDecision{}, lostState(self.ID, a.HTTPAddr, a.Servers[i].RaftAddr)
		}
		// The others bootstrapped with this server before it saw them
		// agree: it starts Raft without state and their leader-to-be
		// brings it up to date.
		return formDecision{action: formLate, via: a.HTTPAddr, clusterID: a.ClusterID}, nil
	}

	// Everybody is new: count those waiting for the same number.
	found := []httpapi.Peer{{ID: self.ID, RaftAddr: self.RaftAddr, HTTPAddr: self.HTTPAddr, Voter: true}}
	proposals := map[string]string{self.ID: self.ClusterID}
	for _, a := range others {
		if a.BootstrapExpect != expect {
			return formDecision{action: formWait, reason: fmt.Sprintf("server %s expects %d servers and this one %d: give every server the same --bootstrap-expect", a.ID, a.BootstrapExpect, expect)}, nil
		}
		found = append(found, httpapi.Peer{ID: a.ID, RaftAddr: a.RaftAddr, HTTPAddr: a.HTTPAddr, Voter: true})
		proposals[a.ID] = a.ClusterID
	}
	slices.SortFunc(found, func(a, b httpapi.Peer) int { return strings.Compare(a.ID, b.ID) })
	d := formDecision{action: formWait, discovered: found}
	ids := peerIDs(found)
	switch {
	case len(found) < expect:
		d.reason = fmt.Sprintf("found %d of %d servers: %s", len(found), expect, strings.Join(ids, ", "))
		return d, nil
	case len(found) > expect:
		d.reason = fmt.Sprintf("found %d servers waiting to form a cluster of %d (%s): start exactly %d servers with --bootstrap-expect %d",
			len(found), expect, strings.Join(ids, ", "), expect, expect)
		return d, nil
	}
	for _, a := range others {
		if !slices.Equal(peerIDs(a.Discovered), ids) {
			d.reason = fmt.Sprintf("waiting for server %s to find the same servers (%s)", a.ID, strings.Join(ids, ", "))
			return d, nil
		}
	}
	d.clusterID = proposals[found[0].ID]
	if d.clusterID == "" {
		d.reason = fmt.Sprintf("server %s proposes no cluster ID", found[0].ID)
		return d, nil
	}
	d.action = formBootstrap
	for _, p := range found {
		d.servers = append(d.servers, raftstore.Member{ID: p.ID, Addr: p.RaftAddr, Voter: true})
	}
	return d, nil
}

func peerIDs(peers []httpapi.Peer) []string {
	ids := make([]string, len(peers))
	for i, p := range peers {
		ids[i] = p.ID
	}
	slices.Sort(ids)
	return ids
}

// startPlan says how a server opens its store and then joins.
type startPlan struct {
	// clusterID, bootstrap and servers go to raftstore.Config.
	clusterID string
	bootstrap bool
	servers   []raftstore.Member
	// hadState: the server held Raft state before it opened its store,
	// or bootstrapped it.
	hadState bool
	// joinVia are the servers to send POST /v1/join to once the store
	// is open; joinFirst makes startServer wait for that join. A member
	// sends it to its own API, which forwards it to whichever server
	// leads once there is a leader.
	joinVia   []string
	joinFirst bool
	// joinForever retries the join until it succeeds.
	joinForever bool
	// formed: the server is one of those the cluster was formed with,
	// starting Raft after the others bootstrapped (JoinRequest.Formed).
	formed bool
}

// formation decides how a server takes part in a cluster before it starts
// Raft, and answers GET /v1/join-info meanwhile.
type formation struct {
	o    serverOptions
	log  hclog.Logger
	self httpapi.JoinInfo
	dir  raftstore.DirState

	mu         sync.Mutex
	discovered []httpapi.Peer
}

// info is this server's answer to GET /v1/join-info before its store is open.
func (f *formation) info() httpapi.JoinInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	info := f.self
	info.Discovered = slices.Clone(f.discovered)
	return info
}

// prepare decides how the server starts. It blocks while the server waits
// for its peers, until ctx ends.
func (f *formation) prepare(ctx context.Context) (startPlan, error) {
	o := f.o
	switch {
	case f.dir.HasState:
		if err := f.checkCluster(ctx); err != nil {
			return startPlan{}, err
		}
		plan := startPlan{hadState: true}
		if len(o.join) > 0 || o.bootstrapExpect > 1 {
			// Record the addresses it serves at now.
			plan.joinVia, plan.joinForever = f.own(), true
		}
		return plan, nil
	case o.bootstrap || o.bootstrapExpect == 1:
		return startPlan{bootstrap: true, hadState: true}, nil
	case o.bootstrapExpect > 1:
		return f.form(ctx)
	case len(o.join) > 0:
		return f.joinPlan(ctx, o.join, o.retryJoin)
	}
	return startPlan{}, fmt.Errorf("%s holds no cluster state: start this server with --bootstrap (a new one-server cluster), "+
		"--bootstrap-expect N --join ADDR,... (a new cluster of N servers) or --join ADDR (an existing cluster)", o.dataDir)
}

// checkCluster asks the --join servers, once, which cluster they belong
// to, and refuses a data directory from another one. Servers that do not
// answer are skipped: when the whole cluster restarts, nobody answers yet.
func (f *formation) checkCluster(ctx context.Context) error {
	if f.dir.ClusterID == "" {
		return nil
	}
	for _, addr := range f.o.join {
		info, err := joinInfo(ctx, f.o.peers, addr)
		if err != nil {
			f.log.Debug("ask a --join server about its cluster", "addr", addr, "error", err)
			continue
		}
		if info.HasState && info.ClusterID != "" && info.ClusterID != f.dir.ClusterID {
			return fmt.Errorf("%s belongs to cluster %s, but server %s at %s belongs to cluster %s: "+
				"this data directory is from another cluster, or from before a lost-quorum recovery. "+
				"To join the cluster at --join, remove this server's old entry there if it has one ('stead operator raft remove-peer --id %s'), "+
				"empty --data-dir and start it again",
				f.o.dataDir, f.dir.ClusterID, info.ID, addr, info.ClusterID, f.o.id)
		}
	}
	return nil
}

// form waits until this server and its peers agree on a new cluster, or
// finds an existing one to join.
func (f *formation) form(ctx context.Context) (startPlan, error) {
	proposal := f.dir.ClusterID
	if proposal == "" {
		proposal = newClusterID()
	}
	// Written before anyone is told, so that a restart proposes the same.
	if err := raftstore.SetClusterID(f.o.dataDir, proposal); err != nil {
		return startPlan{}, err
	}
	f.mu.Lock()
	f.self.ClusterID = proposal
	f.mu.Unlock()
	f.log.Info("waiting for the servers to form a cluster with", "expect", f.o.bootstrapExpect, "join", f.o.join)

	var lastReason string
	lastLog := time.Time{}
	for round := 0; ; round++ {
		if round > 0 {
			select {
			case <-ctx.Done():
				return startPlan{}, ctx.Err()
			case <-time.After(time.Second):
			}
		}
		var answers []httpapi.JoinInfo
		for _, addr := range f.addrs() {
			info, err := joinInfo(ctx, f.o.peers, addr)
			if err != nil {
				f.log.Debug("ask a server about itself", "addr", addr, "error", err)
				continue
			}
			answers = append(answers, info)
		}
		d, err := decideFormation(f.info(), f.o.bootstrapExpect, answers)
		if err != nil {
			return startPlan{}, err
		}
		switch d.action {
		case formJoin:
			f.log.Info("found a cluster with a leader; joining it", "via", d.via)
			return f.joinPlan(ctx, []string{d.via}, true)
		case formLate:
			f.log.Info("the others formed the cluster first; starting without state", "via", d.via, "cluster", d.clusterID)
			return f.latePlan(d.clusterID)
		case formBootstrap:
			if err := raftstore.SetClusterID(f.o.dataDir, d.clusterID); err != nil {
				return startPlan{}, err
			}
			f.log.Info("forming a new cluster", "cluster", d.clusterID, "servers", len(d.servers))
			return startPlan{
				clusterID: d.clusterID, bootstrap: true, servers: d.servers, hadState: true,
				joinVia: f.own(), joinForever: true,
			}, nil
		}
		f.mu.Lock()
		f.discovered = d.discovered
		f.mu.Unlock()
		if d.reason != lastReason || time.Since(lastLog) > 30*time.Second {
			f.log.Info("waiting to form the cluster", "reason", d.reason)
			lastReason, lastLog = d.reason, time.Now()
		}
	}
}

// addrs are the servers to ask while forming: --join and the servers
// they told of, but not this one.
func (f *formation) addrs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.o.join)
	for _, p := range f.discovered {
		if p.HTTPAddr != f.self.HTTPAddr && !slices.Contains(out, p.HTTPAddr) {
			out = append(out, p.HTTPAddr)
		}
	}
	return out
}

// joinPlan prepares a server without Raft state to join the cluster that
// the servers at addrs belong to. It asks the leader for the
// configuration: a server whose ID is a member already is refused, since
// it may have forgotten votes it cast, unless it formed the cluster with
// the others and is only late. Then it takes the cluster's ID. Without
// forever it gives up after five rounds.
func (f *formation) joinPlan(ctx context.Context, addrs []string, forever bool) (startPlan, error) {
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		for _, addr := range addrs {
			conf, err := raftConfiguration(ctx, f.o.peers, addr, false)
			if err != nil {
				f.log.Warn("ask for the cluster's configuration", "via", addr, "attempt", attempt, "error", err)
				continue
			}
			if i := slices.IndexFunc(conf.Servers, func(p httpapi.Peer) bool { return p.ID == f.o.id }); i >= 0 {
				if !formedWith(f.info(), conf.Servers) {
					return startPlan{}, lostState(f.o.id, addr, conf.Servers[i].RaftAddr)
				}
				f.log.Info("the others formed the cluster first; starting without state", "via", addr, "cluster", conf.ClusterID)
				return f.latePlan(conf.ClusterID)
			}
			if conf.ClusterID != "" {
				if err := raftstore.SetClusterID(f.o.dataDir, conf.ClusterID); err != nil {
					return startPlan{}, err
				}
			}
			return startPlan{clusterID: conf.ClusterID, joinVia: addrs, joinFirst: true, joinForever: forever}, nil
		}
		if !forever && attempt >= 5 {
			return startPlan{}, fmt.Errorf("could not reach the cluster through --join %s; start with --retry-join to keep trying", strings.Join(addrs, ","))
		}
		select {
		case <-ctx.Done():
			return startPlan{}, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// latePlan starts a server the others formed a cluster with, after they
// bootstrapped: it takes the cluster's ID and starts Raft without state,
// as a voter the leader brings up to date. It joins in the background, to
// record its address: the cluster may need its vote to elect a leader.
func (f *formation) latePlan(clusterID string) (startPlan, error) {
	if err := raftstore.SetClusterID(f.o.dataDir, clusterID); err != nil {
		return startPlan{}, err
	}
	return startPlan{clusterID: clusterID, joinVia: f.own(), joinForever: true, formed: true}, nil
}

// own is this server's own API, for a member's join.
func (f *formation) own() []string { return []string{f.self.HTTPAddr} }

// errJoinRefused marks a join the leader refused; retrying will not help.
var errJoinRefused = errors.New("join refused")

// join asks the servers at addrs to add this one, until one accepts, one
// refuses (errJoinRefused), ctx ends or, without forever, five rounds
// failed. request builds each attempt's request: after an attempt whose
// answer was lost, the server may hold state it did not hold before.
func join(ctx context.Context, log hclog.Logger, peers peerClients, addrs []string, request func() httpapi.JoinRequest, forever bool) error {
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		var errs []error
		for _, addr := range addrs {
			c, err := peers.client(addr)
			if err != nil {
				return err
			}
			body, _ := json.Marshal(request())
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			var resp httpapi.JoinResponse
			_, err = c.Do(rctx, http.MethodPost, "/v1/join", nil, body, &resp)
			cancel()
			if err == nil {
				log.Info("joined the cluster", "via", addr, "cluster", resp.ClusterID)
				return nil
			}
			if apierrors.IsConflict(err) || apierrors.IsBadRequest(err) {
				return fmt.Errorf("%w by %s: %v", errJoinRefused, addr, err)
			}
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		}
		// Right after a cluster forms, nobody leads for a moment.
		if attempt > 2 {
			log.Warn("join failed; retrying", "attempt", attempt, "error", errors.Join(errs...))
		}
		if !forever && attempt >= 5 {
			return fmt.Errorf("could not join through any of %s (%w); start with --retry-join to keep trying", strings.Join(addrs, ","), errors.Join(errs...))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// joinInfo asks the server at addr about itself.
func joinInfo(ctx context.Context, peers peerClients, addr string) (httpapi.JoinInfo, error) {
	var info httpapi.JoinInfo
	err := peerGet(ctx, peers, addr, "/v1/join-info", nil, &info)
	return info, err
}

// raftConfiguration asks the server at addr for the Raft configuration,
// as the leader confirms it unless stale.
func raftConfiguration(ctx context.Context, peers peerClients, addr string, stale bool) (httpapi.RaftConfiguration, error) {
	var conf httpapi.RaftConfiguration
	var q url.Values
	if stale {
		q = url.Values{"stale": {"true"}}
	}
	err := peerGet(ctx, peers, addr, "/v1/operator/raft/configuration", q, &conf)
	return conf, err
}

func peerGet(ctx context.Context, peers peerClients, addr, path string, q url.Values, out any) error {
	c, err := peers.client(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	_, err = c.Do(ctx, http.MethodGet, path, q, nil, out)
	return err
}

func newClusterID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
