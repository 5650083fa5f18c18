package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/agent/containerd/containerdtest"
	"github.com/stead-io/stead/agent/network"
)

// devWebManifest is the example's shape (a headless service and a set whose
// pods mount a claim at the web root) with the example image and a
// readiness probe.
const devWebManifest = `apiVersion: v1
kind: Service
metadata:
  name: nginx
spec:
  clusterIP: None
  selector:
    app: nginx
  ports:
  - port: 80
    name: web
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  selector:
    matchLabels:
      app: nginx
  serviceName: nginx
  replicas: 2
  template:
    metadata:
      labels:
        app: nginx
    spec:
      terminationGracePeriodSeconds: 3
      containers:
      - name: nginx
        image: stead.local/examples/web:1
        ports:
        - containerPort: 80
          name: web
        readinessProbe:
          httpGet:
            path: /healthz
            port: web
          periodSeconds: 1
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 1Gi
`

// TestDevRunsPods runs `stead dev` with its agent, builds and imports the
// example's image with `stead image`, applies a set of the example's shape,
// and reaches its pods from the host, from each other by name, through
// `stead exec` and `stead logs`, and through the node's DNS.
func TestDevRunsPods(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	containerdtest.Skip(t)
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/cni", p)); err != nil {
			t.Skipf("needs CNI plugin %s: %v", p, err)
		}
	}
	bin := steadBinary(t)
	dir := t.TempDir()
	httpAddr, raftAddr, agentAddr, dnsAddr := freePort(t), freePort(t), freePort(t), freePort(t)
	var b [2]byte
	rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	cluster := fmt.Sprintf("10.249.%d.0/24", b[0])
	bridge := "stc" + suffix

	var log e2eLog
	dev := exec.Command(bin, "dev", "--data-dir", filepath.Join(dir, "data"), "--http-addr", httpAddr, "--raft-addr", raftAddr,
		"--agent-addr", agentAddr, "--dns-addr", dnsAddr, "--cluster-cidr", cluster, "--bridge", bridge,
		"--cni-network", "stead-cli-"+suffix, "--netns-dir", filepath.Join(dir, "netns"))
	dev.Stdout, dev.Stderr = &log, &log
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Stop the pods through the cluster, then the process, then what
		// the kernel still holds.
		stead(t, bin, httpAddr, "delete", "statefulset", "web")
		waitUntil(t, 30*time.Second, func() bool {
			out, _ := stead(t, bin, httpAddr, "get", "pods", "-o", "name")
			return strings.TrimSpace(out) == ""
		})
		dev.Process.Signal(syscall.SIGTERM)
		dev.Wait()
		// The agent leaves its bridge and masquerade rule for the next
		// run; the test removes them, with any pod network left.
		n, err := network.New(network.Options{Subnet: netip.MustParsePrefix(cluster), DataDir: filepath.Join(dir, "data", "agent", "network"),
			NetNSDir: filepath.Join(dir, "netns"), Bridge: bridge, NetworkName: "stead-cli-" + suffix, ClusterCIDR: netip.MustParsePrefix(cluster)})
		if err == nil {
			as, _ := n.List()
			for _, a := range as {
				n.Teardown(context.Background(), a.PodID)
			}
			if err := n.DeleteBridge(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		for _, mp := range containerdtest.MountsUnder(dir) {
			unix.Unmount(mp, unix.MNT_DETACH)
		}
		if t.Failed() {
			t.Logf("stead dev:\n%s", log.String())
		}
	})
	waitUntil(t, 60*time.Second, func() bool { return strings.Contains(log.String(), "runs pods") })
	if strings.Contains(log.String(), "no agent") {
		t.Fatalf("stead dev started without its agent:\n%s", log.String())
	}

	web := containerdtest.BuildProgram(t, "../../examples/webserver")
	archive := filepath.Join(dir, "web.tar")
	mustStead(t, bin, httpAddr, "image", "build", "--binary", web, "--tag", "stead.local/examples/web:1", "-o", archive)
	host, _ := os.Hostname()
	node := strings.ToLower(host)
	if out := mustStead(t, bin, httpAddr, "image", "import", archive); out != node+": imported stead.local/examples/web:1\n" {
		t.Errorf("image import said %q", out)
	}
	out := mustStead(t, bin, httpAddr, "image", "ls", "--node", node)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || strings.Join(strings.Fields(lines[1]), " ") != node+" stead.local/examples/web:1" {
		t.Errorf("image ls said %q", out)
	}

	manifest := filepath.Join(dir, "web.yaml")
	os.WriteFile(manifest, []byte(devWebManifest), 0o644)
	applyWhenReady(t, bin, httpAddr, manifest)
	var pods []corev1.Pod
	waitUntil(t, 90*time.Second, func() bool {
		out, err := stead(t, bin, httpAddr, "get", "pods", "-o", "json")
		if err != nil {
			return false
		}
		var l struct{ Items []corev1.Pod }
		json.Unmarshal([]byte(out), &l)
		pods = l.Items
		ready := 0
		for _, p := range pods {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.Status.Phase == corev1.PodRunning {
					ready++
				}
			}
		}
		return ready == 2
	})
	ips := map[string]string{}
	for _, p := range pods {
		ips[p.Name] = p.Status.PodIP
		if !netip.MustParsePrefix(cluster).Contains(netip.MustParseAddr(p.Status.PodIP)) {
			t.Errorf("%s has IP %s outside %s", p.Name, p.Status.PodIP, cluster)
		}
		// From the host, each pod answers on port 80 with its hostname.
		resp, err := http.Get("http://" + net.JoinHostPort(p.Status.PodIP, "80") + "/")
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		resp.Body.Close()
		if body.String() != p.Name+"\n" {
			t.Errorf("GET / of %s = %q", p.Name, body.String())
		}
	}
	if ips["web-0"] == ips["web-1"] {
		t.Fatalf("web-0 and web-1 share IP %s", ips["web-0"])
	}
	// From one pod to the other by name, through the node's DNS.
	if out := mustStead(t, bin, httpAddr, "exec", "web-0", "--", "/webserver", "get", "http://web-1.nginx/"); out != "web-1\n" {
		t.Errorf("web-0 to web-1.nginx: %q", out)
	}
	out, err := stead(t, bin, httpAddr, "exec", "web-1", "--", "/webserver", "get", "http://127.0.0.1:1/")
	if code := exitCode(err); code != 1 || !strings.Contains(out, "command terminated with exit code 1") {
		t.Errorf("exec of a failing command: exit %d, %q", code, out)
	}
	if out := mustStead(t, bin, httpAddr, "logs", "web-0", "--tail", "1"); !strings.Contains(out, "GET /") {
		t.Errorf("logs --tail 1 of web-0: %q", out)
	}
	// The host asks the node's DNS.
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, dnsAddr)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, "web-1.nginx.default.svc.cluster.local")
	if err != nil || !reflect.DeepEqual(addrs, []string{ips["web-1"]}) {
		t.Errorf("DNS web-1.nginx.default.svc.cluster.local = %v %v, want %s", addrs, err, ips["web-1"])
	}
	mustStead(t, bin, httpAddr, "delete", "statefulset", "web")
	waitUntil(t, 60*time.Second, func() bool {
		out, _ := stead(t, bin, httpAddr, "get", "pods", "-o", "name")
		return strings.TrimSpace(out) == ""
	})
}

// mustStead runs the CLI and fails the test when it fails.
func mustStead(t *testing.T, bin, addr string, args ...string) string {
	t.Helper()
	out, err := stead(t, bin, addr, args...)
	if err != nil {
		t.Fatalf("stead %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// waitUntil polls cond until it holds or timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestParseLabels(t *testing.T) {
	got, err := parseLabels([]string{"zone=a", "disk=ssd", "empty="})
	if err != nil || !reflect.DeepEqual(got, map[string]string{"zone": "a", "disk": "ssd", "empty": ""}) {
		t.Errorf("got %v %v", got, err)
	}
	if _, err := parseLabels([]string{"novalue"}); err == nil || err.Error() != `--node-label "novalue" is not KEY=VALUE` {
		t.Errorf("err %v", err)
	}
}
