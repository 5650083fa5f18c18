package clustertest

import (
	"testing"
	"time"
)

func TestClusterUp(t *testing.T) {
	c := startCluster(t, Options{})
	w := Workload{Name: "jw", Replicas: 3}
	if err := c.Deploy(w, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLive(w, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	res, err := c.CheckC1(w, false)
	if err != nil {
		t.Fatal(err)
	}
	for ord := range w.Replicas {
		if res.Journal.Writes[ord] == 0 {
			t.Errorf("ordinal %d wrote nothing", ord)
		}
	}
	if v := res.Violations(); len(v) > 0 {
		t.Fatalf("C1: %v", v)
	}
	if _, err := c.WaitFSMConverged(20 * time.Second); err != nil {
		t.Fatal(err)
	}
}
