package main

// Readiness, stopping and watchdog notifications to systemd, through the
// datagram socket named by $NOTIFY_SOCKET (sd_notify(3)). The units in
// deploy/systemd are Type=notify with WatchdogSec=30s. Outside systemd, or
// under a unit that is not Type=notify, the variables are unset and every
// function here does nothing, so `stead server` in a terminal and `stead dev`
// behave as before.

import (
	"context"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/go-hclog"
)

// notifyReady tells systemd that the service has started (READY=1). Under
// Type=notify, `systemctl start` returns, and units ordered after this one
// start, only then; systemd's watchdog also starts counting from it.
func notifyReady(log hclog.Logger) {
	sent, err := daemon.SdNotify(false, daemon.SdNotifyReady)
	switch {
	case err != nil:
		log.Warn("could not tell systemd that the service is ready", "socket", os.Getenv("NOTIFY_SOCKET"), "error", err)
	case sent:
		log.Debug("told systemd that the service is ready")
	}
}

// notifyStopping tells systemd that the service is shutting down
// (STOPPING=1), so that the shutdown shows as such in `systemctl status`.
func notifyStopping() {
	daemon.SdNotify(false, daemon.SdNotifyStopping)
}

// watchdogPinger sends WATCHDOG=1 to systemd at half of the unit's
// WatchdogSec (WATCHDOG_USEC), once at the start and then every interval,
// each time healthy() returns true, until ctx ends. It blocks; run it with
// `go`. It returns at once when systemd asked this process for no watchdog
// pings (WATCHDOG_USEC unset, or WATCHDOG_PID naming another process).
//
// healthy is called from the pinger's goroutine, once per interval. Without
// pings for WatchdogSec, systemd kills the service with SIGABRT and, with
// Restart=on-failure, starts it again: so healthy() should return false, or
// block, only when the process cannot recover by itself (a loop that has
// stopped making progress), never for a passing condition such as having
// no leader.
func watchdogPinger(ctx context.Context, healthy func() bool) {
	interval := watchdogInterval()
	if interval <= 0 {
		return
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	pingWatchdog(ctx, ticker.C, healthy, notifyWatchdog)
}

// notifyWatchdog sends one WATCHDOG=1.
func notifyWatchdog() {
	daemon.SdNotify(false, daemon.SdNotifyWatchdog)
}

// watchdogInterval is how often to ping systemd's watchdog: half of
// WATCHDOG_USEC, as sd_watchdog_enabled(3) advises, or 0 when this process
// is not to ping it.
func watchdogInterval() time.Duration {
	timeout, err := daemon.SdWatchdogEnabled(false)
	if err != nil || timeout <= 0 {
		return 0
	}
	return timeout / 2
}

// pingWatchdog calls ping now and on every tick for which healthy()
// returns true, until ctx ends.
func pingWatchdog(ctx context.Context, ticks <-chan time.Time, healthy func() bool, ping func()) {
	for {
		if healthy() {
			ping()
		}
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
	}
}
