package network

import (
	"context"
	"encoding/json"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

// TestMasqueradeLeavingTheCluster: with a cluster range, the bridge plugin
// masquerades nothing and one rule masquerades the node's pods' traffic
// leaving the range; DeleteBridge removes the rule.
func TestMasqueradeLeavingTheCluster(t *testing.T) {
	n0, opts := testNet(t)
	if err := n0.DeleteBridge(); err != nil {
		t.Fatal(err)
	}
	opts.ClusterCIDR = netip.PrefixFrom(opts.Subnet.Addr(), 16).Masked()
	n, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.DeleteBridge(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	conf, err := Conflist(opts)
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(conf, &parsed); err != nil {
		t.Fatal(err)
	}
	if masq := parsed.Plugins[0]["ipMasq"]; masq != false {
		t.Errorf("bridge ipMasq = %v, want false with a cluster range", masq)
	}
	rule := append([]string{"-t", "nat", "-C"}, n.masqueradeRule()...)
	for i := 0; i < 2; i++ {
		if err := n.EnsureBridge(); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := iptables(rule...); err != nil || !ok {
		t.Fatalf("masquerade rule missing after EnsureBridge: %v", err)
	}
	out, err := exec.Command("iptables", "-w", "-t", "nat", "-S", "POSTROUTING").Output()
	if err != nil {
		t.Fatal(err)
	}
	if c := strings.Count(string(out), "pods of "+opts.NetworkName+" leaving the cluster"); c != 1 {
		t.Errorf("%d masquerade rules after two EnsureBridge, want 1", c)
	}
	if _, _, err := n.Setup(context.Background(), "masq-pod", nil); err != nil {
		t.Fatal(err)
	}
	if err := n.Teardown(context.Background(), "masq-pod"); err != nil {
		t.Fatal(err)
	}
	if err := n.DeleteBridge(); err != nil {
		t.Fatal(err)
	}
	if ok, err := iptables(rule...); err != nil || ok {
		t.Fatalf("masquerade rule left after DeleteBridge (%v)", err)
	}
}
