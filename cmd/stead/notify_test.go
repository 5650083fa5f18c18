package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// listenNotify listens on a unixgram socket as systemd does and points
// NOTIFY_SOCKET at it.
func listenNotify(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

// readNotify returns the next datagram, waiting up to timeout; "" when
// none came.
func readNotify(t *testing.T, conn *net.UnixConn, timeout time.Duration) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// drainNotify returns the datagrams already queued on conn.
func drainNotify(t *testing.T, conn *net.UnixConn) []string {
	t.Helper()
	var got []string
	for {
		msg := readNotify(t, conn, time.Millisecond)
		if msg == "" {
			return got
		}
		got = append(got, msg)
	}
}

func TestNotifyReadyAndStopping(t *testing.T) {
	conn := listenNotify(t)
	notifyReady(hclog.NewNullLogger())
	if got := readNotify(t, conn, 5*time.Second); got != "READY=1" {
		t.Fatalf("after notifyReady got %q, want READY=1", got)
	}
	notifyStopping()
	if got := readNotify(t, conn, 5*time.Second); got != "STOPPING=1" {
		t.Fatalf("after notifyStopping got %q, want STOPPING=1", got)
	}
}

func TestNotifyWithoutSystemdDoesNothing(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	t.Setenv("WATCHDOG_PID", "")
	notifyReady(hclog.NewNullLogger())
	notifyStopping()

	done := make(chan struct{})
	go func() {
		watchdogPinger(context.Background(), func() bool { return true })
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("watchdogPinger kept running without WATCHDOG_USEC")
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	tests := []struct {
		name      string
		usec, pid string
		want      time.Duration
	}{
		{"half of WatchdogSec=30s", "30000000", self, 15 * time.Second},
		{"no WATCHDOG_PID means this process", "30000000", "", 15 * time.Second},
		{"meant for another process", "30000000", strconv.Itoa(os.Getpid() + 1), 0},
		{"no watchdog", "", "", 0},
		{"not a number", "thirty", self, 0},
		{"zero", "0", self, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tt.usec)
			t.Setenv("WATCHDOG_PID", tt.pid)
			if got := watchdogInterval(); got != tt.want {
				t.Errorf("watchdogInterval() with WATCHDOG_USEC=%q WATCHDOG_PID=%q = %v, want %v", tt.usec, tt.pid, got, tt.want)
			}
		})
	}
}

// TestPingWatchdogFollowsHealth drives the pinger one tick at a time and
// checks after each which health checks were followed by a ping.
func TestPingWatchdogFollowsHealth(t *testing.T) {
	tests := []struct {
		name   string
		health []bool // answers of healthy(): the first at the start, then one per tick
	}{
		{"always healthy", []bool{true, true, true}},
		{"unhealthy for two ticks, then healthy again", []bool{true, false, false, true, false, true}},
		{"unhealthy from the start", []bool{false, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := listenNotify(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ticks := make(chan time.Time)
			checking := make(chan struct{})
			answers := make(chan bool)
			healthy := func() bool {
				checking <- struct{}{}
				return <-answers
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				pingWatchdog(ctx, ticks, healthy, notifyWatchdog)
			}()

			// The pinger sends the ping of one check before it waits for
			// the next tick, so once check i has begun, the datagrams
			// queued are those of check i-1. The last check is flushed by
			// cancelling and waiting for the pinger to return.
			var pinged []bool
			collect := func(check int) {
				msgs := drainNotify(t, conn)
				for _, m := range msgs {
					if m != "WATCHDOG=1" {
						t.Fatalf("check %d: got datagram %q, want WATCHDOG=1", check, m)
					}
				}
				if len(msgs) > 1 {
					t.Fatalf("check %d: %d pings, want at most 1", check, len(msgs))
				}
				pinged = append(pinged, len(msgs) == 1)
			}
			for i, answer := range tt.health {
				if i > 0 {
					ticks <- time.Time{}
				}
				<-checking
				if i > 0 {
					collect(i - 1)
				}
				answers <- answer
			}
			cancel()
			<-done
			collect(len(tt.health) - 1)
			if !slices.Equal(pinged, tt.health) {
				t.Errorf("pinged after checks %v, want exactly after the healthy ones %v", pinged, tt.health)
			}
		})
	}
}

func TestWatchdogPingerPingsSystemd(t *testing.T) {
	conn := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		watchdogPinger(ctx, func() bool { return true })
	}()
	for i := range 3 {
		if got := readNotify(t, conn, 10*time.Second); got != "WATCHDOG=1" {
			t.Fatalf("ping %d: got %q, want WATCHDOG=1", i, got)
		}
	}
	// One ping at the start, then one per 100 ms tick: the third cannot
	// come before two ticks.
	if elapsed := time.Since(start); elapsed < 200*time.Millisecond {
		t.Errorf("3 pings in %v, want no faster than one per 100ms after the first", elapsed)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("watchdogPinger did not return after its context ended")
	}
}
