package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/scheduler/httpapi"
)

// snapshotTimeout bounds one save or restore.
const snapshotTimeout = 10 * time.Minute

func newSnapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save, check and restore snapshots of the cluster state",
		Long: `A snapshot is the whole cluster state (every object, as of one Raft index)
in one checksummed file. Save them regularly; restore one to recover a
cluster whose state is lost or damaged. docs/operations/backup.md has the
procedure.`,
	}
	cmd.AddCommand(newSnapshotSaveCmd(g), newSnapshotInspectCmd(), newSnapshotRestoreCmd(g))
	return cmd
}

func newSnapshotSaveCmd(g *globals) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "Save a snapshot of the cluster state to a file",
		Long: `save asks the leader for a snapshot of the whole state, as of every write
committed so far, and writes it to FILE (through FILE.tmp, synced to disk,
then renamed, so FILE is always whole). It checks the checksums of what it
received before it keeps it.

With --stale the server asked answers from its own copy of the state, which
may lag behind the leader but works without one (after a loss of quorum).

The file holds every object, including the hashes of ACL tokens' secrets:
it is created readable by its owner only.`,
		Example: `  stead operator snapshot save backup.snap
  stead operator snapshot save /var/backups/stead/$(date +%F).snap
  stead --server 10.0.0.2:7470 operator snapshot save --stale rescue.snap`,
		Args: exactlyOneFile,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), snapshotTimeout)
			defer cancel()
			var q url.Values
			if stale {
				q = url.Values{"stale": {"true"}}
			}
			resp, err := c.Stream(ctx, http.MethodGet, "/v1/operator/snapshot", q, nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			info, size, err := saveSnapshotFile(args[0], resp.Body, resp.Header.Get(httpapi.HeaderSnapshotSHA256))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Saved the snapshot of index %d (%d objects) to %s: %d bytes, sha256 %s\n",
				info.Index, objectCount(info), args[0], size, info.SHA256)
			return nil
		},
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "save the asked server's copy of the state, without the leader")
	return cmd
}

// exactlyOneFile is the argument check of the snapshot commands.
func exactlyOneFile(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want one FILE, got %d arguments: %s", len(args), cmd.UseLine())
	}
	return nil
}

// saveSnapshotFile writes the snapshot read from r to path through
// path.tmp: written, synced, verified, then renamed. want is the
// checksum the server announced ("" if none).
func saveSnapshotFile(path string, r io.Reader, want string) (_ raftstore.BackupInfo, size int64, err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return raftstore.BackupInfo{}, 0, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if size, err = io.Copy(f, r); err != nil {
		return raftstore.BackupInfo{}, size, fmt.Errorf("receive snapshot after %d bytes: %w; nothing was saved, try again", size, err)
	}
	if err := f.Sync(); err != nil {
		return raftstore.BackupInfo{}, size, fmt.Errorf("sync %s: %w", tmp, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return raftstore.BackupInfo{}, size, err
	}
	info, err := raftstore.InspectBackup(bufio.NewReader(f))
	if err != nil {
		return info, size, fmt.Errorf("the server sent a damaged snapshot (%w); nothing was saved, try again", err)
	}
	if want != "" && info.SHA256 != want {
		return info, size, fmt.Errorf("the server announced a snapshot with sha256 %s and sent one with %s; nothing was saved, try again", want, info.SHA256)
	}
	if err := f.Close(); err != nil {
		return info, size, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return info, size, err
	}
	return info, size, syncDir(filepath.Dir(path))
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

func newSnapshotInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE",
		Short: "Check a snapshot file and show what it holds",
		Long: `inspect reads the whole of FILE, checks its checksums and decodes every
object, as restore would, without talking to a server. It prints the index
and cluster the snapshot was saved at and how many objects of each kind it
holds. A damaged file makes it fail.`,
		Example: `  stead operator snapshot inspect backup.snap`,
		Args:    exactlyOneFile,
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := inspectSnapshotFile(args[0])
			if err != nil {
				return err
			}
			return printSnapshotInfo(cmd.OutOrStdout(), args[0], info)
		},
	}
}

// inspectSnapshotFile verifies the snapshot in the file at path.
func inspectSnapshotFile(path string) (raftstore.BackupInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return raftstore.BackupInfo{}, err
	}
	defer f.Close()
	info, err := raftstore.InspectBackup(bufio.NewReader(f))
	if err != nil {
		return info, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

func printSnapshotInfo(w io.Writer, path string, info raftstore.BackupInfo) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "File:\t%s\n", path)
	fmt.Fprintf(tw, "Cluster:\t%s\n", info.ClusterID)
	fmt.Fprintf(tw, "Index:\t%d\n", info.Index)
	if info.Term != 0 {
		fmt.Fprintf(tw, "Term:\t%d\n", info.Term)
	}
	fmt.Fprintf(tw, "Size:\t%d bytes\n", info.Size)
	fmt.Fprintf(tw, "SHA-256:\t%s\n", info.SHA256)
	fmt.Fprintf(tw, "Objects:\t%d\n", objectCount(info))
	for _, k := range raftstore.Kinds {
		if n := info.Objects[k]; n > 0 {
			fmt.Fprintf(tw, "  %s\t%d\n", k, n)
		}
	}
	return tw.Flush()
}

func objectCount(info raftstore.BackupInfo) int {
	n := 0
	for _, c := range info.Objects {
		n += c
	}
	return n
}

func newSnapshotRestoreCmd(g *globals) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the whole cluster state with a snapshot",
		Long: `restore replaces the whole state of the cluster with the snapshot in FILE,
on every server: objects created since the snapshot are gone, and deleted
ones come back. The cluster keeps its own servers. Use it to recover a cluster
whose state is lost or damaged (docs/operations/backup.md), not to undo a
mistake in a healthy cluster: 'stead apply' does that.

restore checks the whole file before it sends anything, and the leader
checks it again before it changes anything. It asks for confirmation on a
terminal; elsewhere give --yes.`,
		Example: `  stead operator snapshot restore backup.snap
  stead --server 10.0.0.1:7470 operator snapshot restore --yes /var/backups/stead/2026-11-20.snap`,
		Args: exactlyOneFile,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			info, err := inspectSnapshotFile(path)
			if err != nil {
				return fmt.Errorf("%w; nothing was sent", err)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if !yes {
				if err := confirmRestore(cmd, c.Addr(), info); err != nil {
					return err
				}
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), snapshotTimeout)
			defer cancel()
			resp, err := c.Stream(ctx, http.MethodPut, "/v1/operator/snapshot", nil, bufio.NewReader(f))
			if err != nil {
				return explainRestoreError(err)
			}
			defer resp.Body.Close()
			var res httpapi.SnapshotRestoreResponse
			if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
				return fmt.Errorf("restore sent; read the answer: %w; check the state with 'stead get'", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Restored the snapshot of index %d (%d objects); the cluster state is now at index %d\n",
				res.SavedIndex, objectCount(info), res.Index)
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	cmd.Flags().SetAnnotation("yes", noConfigAnnotation, []string{"true"})
	return cmd
}

// inputIsTerminal reports whether r is a terminal a person can answer
// on; tests replace it.
var inputIsTerminal = func(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// confirmRestore asks the person at the terminal to confirm a restore.
func confirmRestore(cmd *cobra.Command, server string, info raftstore.BackupInfo) error {
	in := cmd.InOrStdin()
	if !inputIsTerminal(in) {
		return errors.New("restore replaces the whole cluster state: confirm with --yes (standard input is not a terminal to ask on)")
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "This replaces the whole state of the cluster at %s with the snapshot of index %d\n"+
		"saved from cluster %s (%d objects). Objects created since are lost.\nType yes to go on: ",
		server, info.Index, info.ClusterID, objectCount(info))
	line, _ := bufio.NewReader(in).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return errors.New("not confirmed; nothing was sent")
	}
	return nil
}

// explainRestoreError says whether a failed restore changed anything and
// what to do.
func explainRestoreError(err error) error {
	code := int32(0)
	var se *apierrors.StatusError
	if errors.As(err, &se) {
		code = se.ErrStatus.Code
	}
	switch {
	case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge:
		return fmt.Errorf("the server refused the snapshot: %w; nothing changed", err)
	case code == http.StatusServiceUnavailable:
		return fmt.Errorf("%w; nothing changed", err)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fmt.Errorf("%w; restoring needs a management token (--token or STEAD_TOKEN)", err)
	}
	return fmt.Errorf("restore: %w; the outcome is unknown: check the state with 'stead get', and run restore again if it is not the snapshot's (restoring twice is safe)", err)
}
