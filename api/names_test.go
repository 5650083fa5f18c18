package api

import "testing"

func TestParseOrdinal(t *testing.T) {
	tests := []struct {
		name   string
		parent string
		ord    int
		ok     bool
	}{
		{"web-0", "web", 0, true},
		{"web-12", "web", 12, true},
		{"my-db-3", "my-db", 3, true},
		{"web-", "", -1, false},
		{"web", "", -1, false},
		{"web-x1", "", -1, false},
		{"web-1a", "", -1, false},
		{"-4", "", 4, true},
		{"web-99999999999999999999999", "", -1, false},
	}
	for _, tt := range tests {
		parent, ord, ok := ParseOrdinal(tt.name)
		if ok != tt.ok || (ok && (parent != tt.parent || ord != tt.ord)) {
			t.Errorf("ParseOrdinal(%q) = %q, %d, %v; want %q, %d, %v", tt.name, parent, ord, ok, tt.parent, tt.ord, tt.ok)
		}
	}
}

func TestNames(t *testing.T) {
	if got := ReplicaName("web", 2); got != "web-2" {
		t.Errorf("ReplicaName = %q", got)
	}
	if got := VolumeName("www", "web", 0); got != "www-web-0" {
		t.Errorf("VolumeName = %q", got)
	}
	if got := PodFQDN("web-0", "nginx", "default", DefaultClusterDomain); got != "web-0.nginx.default.svc.cluster.local" {
		t.Errorf("PodFQDN = %q", got)
	}
}
