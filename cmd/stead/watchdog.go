package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/watchdog"
)

func newWatchdogCmd() *cobra.Command {
	var (
		dataDir  string
		socket   string
		ns       string
		interval time.Duration
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "watchdog",
		Short: "Kill this node's containers when the agent's lease is not renewed",
		Long: `The watchdog is the node's self-fence. The agent starts it in a session of its
own and writes its lease to DATA_DIR/lease after every heartbeat; when the
lease runs out (the agent is dead, paused or cut off from the servers) the
watchdog kills every task in Stead's containerd namespace, through containerd
and through runc, and keeps killing whatever starts until the lease is
renewed. Each expiry is recorded in DATA_DIR/fenced.

One watchdog runs per data directory: a second one exits at once.`,
		Example: `  stead watchdog --data-dir /var/lib/stead/agent --containerd-socket /run/containerd/containerd.sock`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" {
				return errors.New("--data-dir is required: the agent's data directory, which holds the lease file")
			}
			log := hclog.New(&hclog.LoggerOptions{
				Name:   "watchdog",
				Level:  hclog.LevelFromString(logLevel),
				Output: os.Stderr,
			})
			paths := watchdog.PathsIn(filepath.Clean(dataDir))
			unlock, err := watchdog.Lock(paths.PidFile)
			if errors.Is(err, watchdog.ErrRunning) {
				fmt.Fprintf(cmd.OutOrStdout(), "%v; exiting\n", err)
				return nil
			}
			if err != nil {
				return err
			}
			defer unlock()

			if moved, err := watchdog.LeaveFreezer(); err != nil {
				log.Warn("cannot leave the agent's freezer cgroup: freezing the agent freezes the watchdog", "error", err)
			} else if moved {
				log.Info("left the agent's freezer cgroup")
			}

			if err := watchdog.ProtectFromOOMKiller(); err != nil {
				log.Warn("the OOM killer may pick the watchdog", "error", err)
			}

			// Nothing but SIGTERM or SIGINT stops the watchdog: not a
			// closed terminal, not a reader of its output going away.
			signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()

			rt := &watchdog.Containerd{Socket: socket, Namespace: ns, Logger: log.Named("runtime")}
			defer rt.Close()
			log.Info("starting", "pid", os.Getpid(), "data_dir", dataDir, "containerd", socket, "namespace", ns)
			err = watchdog.Run(ctx, watchdog.Config{
				LeasePath: paths.Lease,
				FencePath: paths.Fence,
				Interval:  interval,
				Runtime:   rt,
				Logger:    log,
			})
			log.Warn("stopped: this node is no longer fenced when its lease runs out")
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "", "the agent's data directory (holds lease, fenced, watchdog.pid)")
	f.StringVar(&socket, "containerd-socket", containerd.DefaultSocket, "containerd's socket")
	f.StringVar(&ns, "containerd-namespace", containerd.DefaultNamespace, "containerd namespace of Stead's containers")
	f.DurationVar(&interval, "interval", watchdog.DefaultInterval, "how often to read the lease")
	f.StringVar(&logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	return cmd
}
