package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stead-io/stead/scheduler/httpapi"
)

// newServer is the join-info of a server without state waiting to form a
// cluster of expect, proposing cluster "c-ID", that has discovered the
// servers named.
func newServer(id string, expect int, discovered ...string) httpapi.JoinInfo {
	info := httpapi.JoinInfo{ID: id, RaftAddr: id + ":7471", HTTPAddr: id + ":7470", ClusterID: "c-" + id, BootstrapExpect: expect}
	for _, d := range discovered {
		info.Discovered = append(info.Discovered, httpapi.Peer{ID: d, RaftAddr: d + ":7471", HTTPAddr: d + ":7470", Voter: true})
	}
	return info
}

// bootstrapped is the join-info of a server that bootstrapped a cluster
// of the servers named, with lastIndex entries and the leader named.
func bootstrapped(id, cluster, leader string, lastIndex uint64, servers ...string) httpapi.JoinInfo {
	info := httpapi.JoinInfo{ID: id, RaftAddr: id + ":7471", HTTPAddr: id + ":7470", ClusterID: cluster, HasState: true,
		Leader: leader, LastIndex: lastIndex, BootstrapExpect: 3}
	if leader != "" {
		info.LeaderHTTPAddr = leader + ":7470"
	}
	for _, s := range servers {
		info.Servers = append(info.Servers, httpapi.Peer{ID: s, RaftAddr: s + ":7471", Voter: true})
	}
	return info
}

// describe renders a decision as one line: the action and what it is
// about.
func describe(d formDecision) string {
	switch d.action {
	case formJoin:
		return "join via " + d.via
	case formLate:
		return fmt.Sprintf("start late in %s via %s", d.clusterID, d.via)
	case formBootstrap:
		var ids []string
		for _, m := range d.servers {
			ids = append(ids, fmt.Sprintf("%s@%s", m.ID, m.Addr))
		}
		return fmt.Sprintf("bootstrap %s as %s", strings.Join(ids, " "), d.clusterID)
	}
	return "wait: " + d.reason
}

func TestDecideFormation(t *testing.T) {
	s2 := newServer("s2", 3, "s1", "s2", "s3")
	tests := []struct {
		name    string
		self    httpapi.JoinInfo
		answers []httpapi.JoinInfo
		want    string // describe of the decision, or "error: ..." (a prefix)
	}{
		{
			name:    "alone so far",
			self:    s2,
			answers: nil,
			want:    "wait: found 1 of 3 servers: s2",
		},
		{
			name:    "two of three",
			self:    s2,
			answers: []httpapi.JoinInfo{newServer("s1", 3, "s1", "s2")},
			want:    "wait: found 2 of 3 servers: s1, s2",
		},
		{
			name:    "three found, one has not seen all yet",
			self:    s2,
			answers: []httpapi.JoinInfo{newServer("s3", 3, "s1", "s2", "s3"), newServer("s1", 3, "s1", "s2")},
			want:    "wait: waiting for server s1 to find the same servers (s1, s2, s3)",
		},
		{
			name:    "three agree: the lowest ID's proposal names the cluster",
			self:    s2,
			answers: []httpapi.JoinInfo{newServer("s3", 3, "s1", "s2", "s3"), newServer("s1", 3, "s1", "s2", "s3")},
			want:    "bootstrap s1@s1:7471 s2@s2:7471 s3@s3:7471 as c-s1",
		},
		{
			name:    "this server listed in its own --join",
			self:    s2,
			answers: []httpapi.JoinInfo{s2, newServer("s3", 3, "s1", "s2", "s3"), newServer("s1", 3, "s1", "s2", "s3")},
			want:    "bootstrap s1@s1:7471 s2@s2:7471 s3@s3:7471 as c-s1",
		},
		{
			name:    "a server answering twice counts once",
			self:    s2,
			answers: []httpapi.JoinInfo{newServer("s1", 3, "s1", "s2"), newServer("s1", 3, "s1", "s2")},
			want:    "wait: found 2 of 3 servers: s1, s2",
		},
		{
			name: "more servers than expected",
			self: s2,
			answers: []httpapi.JoinInfo{newServer("s1", 3, "s1", "s2", "s3"), newServer("s3", 3, "s1", "s2", "s3"),
				newServer("s4", 3, "s2", "s3", "s4")},
			want: "wait: found 4 servers waiting to form a cluster of 3 (s1, s2, s3, s4): start exactly 3 servers with --bootstrap-expect 3",
		},
		{
			name:    "another --bootstrap-expect",
			self:    s2,
			answers: []httpapi.JoinInfo{newServer("s1", 5, "s1")},
			want:    "wait: server s1 expects 5 servers and this one 3: give every server the same --bootstrap-expect",
		},
		{
			name:    "a cluster with a leader is joined",
			self:    s2,
			answers: []httpapi.JoinInfo{newServer("s4", 3, "s4"), bootstrapped("s1", "c-x", "s3", 7, "s1", "s3", "s5")},
			want:    "join via s3:7470",
		},
		{
			name: "others bootstrapped with this server before it saw them agree",
			self: s2,
			answers: []httpapi.JoinInfo{bootstrapped("s1", "c-s1", "", 1, "s1", "s2", "s3"),
				newServer("s3", 3, "s1", "s2", "s3")},
			want: "start late in c-s1 via s1:7470",
		},
		{
			name:    "others bootstrapped with this server, and wrote since, before it saw them agree",
			self:    s2,
			answers: []httpapi.JoinInfo{bootstrapped("s1", "c-s1", "", 9, "s1", "s2", "s3")},
			want:    "start late in c-s1 via s1:7470",
		},
		{
			name:    "a leaderless cluster lists this server, which lost its state",
			self:    newServer("s2", 3),
			answers: []httpapi.JoinInfo{bootstrapped("s1", "c-s1", "", 9, "s1", "s2", "s3"), bootstrapped("s3", "c-s1", "", 9, "s1", "s2", "s3")},
			want:    "error: data directory lost its Raft state: server s2 is a member of the cluster at s1:7470 (Raft address s2:7471)",
		},
		{
			name:    "a cluster that has changed since this server found its servers",
			self:    s2,
			answers: []httpapi.JoinInfo{bootstrapped("s1", "c-s1", "", 9, "s1", "s2", "s4")},
			want:    "error: data directory lost its Raft state: server s2 is a member of the cluster at s1:7470",
		},
		{
			name:    "a leaderless cluster without this server",
			self:    s2,
			answers: []httpapi.JoinInfo{bootstrapped("s1", "c-s1", "", 1, "s1", "s3", "s4")},
			want:    "wait: server s1 belongs to a cluster that does not list this one and has no leader yet",
		},
		{
			name: "listed at another Raft address",
			self: s2,
			answers: []httpapi.JoinInfo{func() httpapi.JoinInfo {
				b := bootstrapped("s1", "c-s1", "", 1, "s1", "s2", "s3")
				b.Servers[1].RaftAddr = "elsewhere:7471"
				return b
			}()},
			want: "error: server s1 is in a cluster that lists this server, s2, at Raft address elsewhere:7471, not s2:7471",
		},
		{
			name: "another server with this server's ID",
			self: s2,
			answers: []httpapi.JoinInfo{func() httpapi.JoinInfo {
				twin := newServer("s2", 3)
				twin.HTTPAddr = "twin:7470"
				return twin
			}()},
			want: `error: two servers use the --node-id "s2" (one at twin:7470)`,
		},
		{
			name: "two others with one ID",
			self: s2,
			answers: []httpapi.JoinInfo{newServer("s1", 3), func() httpapi.JoinInfo {
				twin := newServer("s1", 3)
				twin.RaftAddr = "twin:7471"
				return twin
			}()},
			want: `error: two servers use the --node-id "s1"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := decideFormation(tt.self, 3, tt.answers)
			got := describe(d)
			if err != nil {
				got = "error: " + err.Error()
			}
			if !strings.HasPrefix(got, tt.want) || (err == nil && got != tt.want) {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// The servers a waiting server publishes are what it found, itself
// included, in ID order: the others compare them with theirs.
func TestDecideFormationPublishesWhatItFound(t *testing.T) {
	d, err := decideFormation(newServer("s2", 3), 3, []httpapi.JoinInfo{newServer("s3", 3), newServer("s1", 3)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range d.discovered {
		got = append(got, p.ID+"="+p.RaftAddr+"/"+p.HTTPAddr)
	}
	if want := "s1=s1:7471/s1:7470 s2=s2:7471/s2:7470 s3=s3:7471/s3:7470"; strings.Join(got, " ") != want {
		t.Errorf("discovered %v, want %s", got, want)
	}
}
