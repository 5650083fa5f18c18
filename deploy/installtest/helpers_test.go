package installtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// repoRoot is the source tree's top directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "deploy", "install.sh")); err != nil {
		t.Fatalf("not in a Stead source tree: %v", err)
	}
	return root
}

// run runs a command and returns its combined output, failing the test
// on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// steadBinary builds ./cmd/stead once for the package's tests.
func steadBinary(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "stead-installtest-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, "stead"), "./cmd/stead")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/stead: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "stead")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

var flagLine = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9-]+)`)

// roleFlags returns the flags `stead ROLE` takes itself (not the global
// ones), or ok false when the binary has no such command.
func roleFlags(t *testing.T, stead, role string) (flags map[string]bool, ok bool) {
	t.Helper()
	out, err := exec.Command(stead, role, "--help").CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("unknown command")) {
			return nil, false
		}
		t.Fatalf("stead %s --help: %v\n%s", role, err, out)
	}
	flags = map[string]bool{}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "Flags:":
			in = true
		case !strings.HasPrefix(line, " "):
			in = false
		case in:
			if m := flagLine.FindStringSubmatch(line); m != nil {
				flags[m[1]] = true
			}
		}
	}
	delete(flags, "help")
	if len(flags) == 0 {
		t.Fatalf("stead %s --help lists no flags:\n%s", role, out)
	}
	return flags, true
}

// needRoot skips the test unless it runs as root with the given programs.
func needRoot(t *testing.T, programs ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs root, a network namespace and sshd; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace and run sshd")
	}
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s is missing: install openssh-server, openssh-client and iproute2 (deploy/install-deps.sh)", p)
		}
	}
}

// netns is a network namespace joined to the host by a veth pair, with a
// /30 between them.
type netns struct {
	name           string
	hostIP, nsIP   string
	hostIf, nsIf   string
	prefixLen      int
	removeOnFinish bool
}

// newNetns makes a namespace and its veth pair, removed when the test
// ends, on a /30 of 10.254.77.0/24 that no interface of the host uses.
func newNetns(t *testing.T) *netns {
	t.Helper()
	used := run(t, "ip", "-4", "-o", "addr", "show")
	pid := os.Getpid()
	var n *netns
	for i := range 64 {
		base := 4 * ((pid + i) % 64)
		hostIP := fmt.Sprintf("10.254.77.%d", base+1)
		nsIP := fmt.Sprintf("10.254.77.%d", base+2)
		if strings.Contains(used, " "+hostIP+"/") || strings.Contains(used, " "+nsIP+"/") {
			continue
		}
		id := (pid + i) % 100000
		n = &netns{
			name:   fmt.Sprintf("stead-install-%d", id),
			hostIP: hostIP, nsIP: nsIP,
			hostIf: fmt.Sprintf("sti%dh", id), nsIf: fmt.Sprintf("sti%dn", id),
			prefixLen: 30,
		}
		break
	}
	if n == nil {
		t.Fatal("every /30 of 10.254.77.0/24 is in use on this host")
	}
	run(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() {
		// Deleting the namespace destroys the veth end inside it, and
		// with it the host's end; the second delete covers a setup that
		// failed before the move.
		exec.Command("ip", "netns", "delete", n.name).Run()
		exec.Command("ip", "link", "delete", n.hostIf).Run()
	})
	run(t, "ip", "link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf)
	run(t, "ip", "link", "set", n.nsIf, "netns", n.name)
	run(t, "ip", "addr", "add", fmt.Sprintf("%s/%d", n.hostIP, n.prefixLen), "dev", n.hostIf)
	run(t, "ip", "link", "set", n.hostIf, "up")
	run(t, "ip", "netns", "exec", n.name, "ip", "link", "set", "lo", "up")
	run(t, "ip", "netns", "exec", n.name, "ip", "addr", "add", fmt.Sprintf("%s/%d", n.nsIP, n.prefixLen), "dev", n.nsIf)
	run(t, "ip", "netns", "exec", n.name, "ip", "link", "set", n.nsIf, "up")
	return n
}

// sshd is an OpenSSH server the test started in a namespace.
type sshd struct {
	addr, port string
	// opts are the client's ssh options for it (-o values).
	opts []string
}

// startSSHD starts /usr/sbin/sshd in ns on port 2222 of the namespace's
// address, taking only a key the test generates for root, and waits until
// it accepts connections.
func startSSHD(t *testing.T, ns *netns) *sshd {
	t.Helper()
	dir := t.TempDir()
	keygen := func(file string) {
		run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "stead-installtest", "-f", filepath.Join(dir, file))
	}
	keygen("host_key")
	keygen("id")
	pub, err := os.ReadFile(filepath.Join(dir, "id.pub"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "authorized_keys"), pub, 0o600)
	hostPub, err := os.ReadFile(filepath.Join(dir, "host_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	port := "2222"
	writeFile(t, filepath.Join(dir, "known_hosts"), fmt.Appendf(nil, "[%s]:%s %s", ns.nsIP, port, hostPub), 0o600)
	config := fmt.Sprintf(`ListenAddress %s:%s
HostKey %s/host_key
AuthorizedKeysFile %s/authorized_keys
PidFile none
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
AllowUsers root
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
LogLevel VERBOSE
`, ns.nsIP, port, dir, dir)
	writeFile(t, filepath.Join(dir, "sshd_config"), []byte(config), 0o600)

	// sshd refuses to start without its privilege separation directory,
	// which is made at boot on a host that runs it.
	if _, err := os.Stat("/run/sshd"); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove("/run/sshd") })
	}
	run(t, "/usr/sbin/sshd", "-t", "-f", filepath.Join(dir, "sshd_config"))

	var log bytes.Buffer
	cmd := exec.Command("ip", "netns", "exec", ns.name, "/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	cmd.Stdout = &log
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("sshd's log:\n%s", log.String())
		}
	})

	addr := net.JoinHostPort(ns.nsIP, port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("sshd exited:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd does not accept connections on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &sshd{
		addr: ns.nsIP, port: port,
		opts: []string{
			"IdentityFile=" + filepath.Join(dir, "id"),
			"IdentitiesOnly=yes",
			"UserKnownHostsFile=" + filepath.Join(dir, "known_hosts"),
			"GlobalKnownHostsFile=/dev/null",
			"StrictHostKeyChecking=yes",
			"LogLevel=ERROR",
		},
	}
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}
