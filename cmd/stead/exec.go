package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/stead-io/stead/api"
)

// exitProcess ends the CLI with a command's exit code; tests replace it.
var exitProcess = os.Exit

func newExecCmd(g *globals) *cobra.Command {
	var (
		container string
		stdin     bool
		tty       bool
	)
	cmd := &cobra.Command{
		Use:   "exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARGS...]",
		Short: "Run a command in a container of a pod",
		Long: `Run a command in a running container of a pod, as kubectl exec does, through
the agent of the pod's node. stead exits with the command's exit code.`,
		Example: `  stead exec web-0 -- cat /etc/hosts
  stead exec -it web-0 -- /bin/sh`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return errors.New("give the pod, then -- and the command: stead exec POD -- COMMAND [ARGS...]")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			ac, err := agentOfPod(ctx, g, c, g.ns(), args[0])
			if err != nil {
				return err
			}
			opts := api.ExecOptions{Container: container, Command: args[1:], TTY: tty, Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()}
			if stdin {
				opts.Stdin = cmd.InOrStdin()
			}
			restore := func() {}
			if tty {
				if f, ok := cmd.InOrStdin().(*os.File); ok {
					if r, err := rawTerminal(int(f.Fd())); err == nil {
						restore = r
						opts.Resize = watchSize(int(f.Fd()))
					}
				}
			}
			code, err := ac.Exec(ctx, g.ns(), args[0], opts)
			restore()
			if err != nil {
				return err
			}
			if code != 0 {
				// As kubectl: say so, and exit with the command's code.
				fmt.Fprintf(cmd.ErrOrStderr(), "command terminated with exit code %d\n", code)
				exitProcess(code)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&container, "container", "c", "", "container name (default: the pod's only container)")
	f.BoolVarP(&stdin, "stdin", "i", false, "pass standard input to the command")
	f.BoolVarP(&tty, "tty", "t", false, "give the command a terminal")
	return cmd
}

// rawTerminal puts the terminal fd in raw mode and returns how to restore it.
func rawTerminal(fd int) (func(), error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// watchSize sends the terminal's size now and whenever it changes.
func watchSize(fd int) <-chan [2]uint16 {
	ch := make(chan [2]uint16, 1)
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	send := func() {
		if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil {
			select {
			case ch <- [2]uint16{ws.Col, ws.Row}:
			default:
			}
		}
	}
	send()
	go func() {
		for range winch {
			send()
		}
	}()
	return ch
}
