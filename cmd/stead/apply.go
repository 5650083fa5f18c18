package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stead-io/stead/api"
)

func newApplyCmd(g *globals) *cobra.Command {
	var (
		files   []string
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update objects from Kubernetes manifests (StatefulSet, Service)",
		Long: `Apply reads Kubernetes manifests, YAML or JSON with any number of documents,
validates them all and applies them at once: if one object is invalid, nothing
changes. Objects already in the cluster with the same spec are left unchanged.`,
		Example: `  stead apply -f web.yaml
  stead apply -f manifests/
  cat web.yaml | stead apply -f -
  stead apply -n staging -f web.yaml
  stead apply -f web.yaml --wait      # follow each set's rollout until it is complete`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return fmt.Errorf("must name the manifests with -f FILE, -f DIR or -f - for standard input")
			}
			data, err := readManifests(files, cmd.InOrStdin())
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			res, err := c.Apply(ctx, data, g.namespace)
			if err != nil {
				return err
			}
			for _, it := range res.Items {
				r, err := api.LookupResource(it.Resource)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", r.Ref(it.Name), it.Action)
			}
			if !wait {
				return nil
			}
			wctx, wcancel := context.WithTimeout(cmd.Context(), timeout)
			defer wcancel()
			for _, it := range res.Items {
				if it.Resource != "statefulsets" {
					continue
				}
				if err := rolloutStatus(wctx, c, it.Namespace, it.Name, true, newProgress(cmd.OutOrStdout())); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "manifest file, directory of .yaml/.yml/.json files, or - for standard input")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until every applied StatefulSet has rolled out, showing progress")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "with --wait, give up after this long")
	return cmd
}

// readManifests joins the named files (a directory stands for its YAML and
// JSON files, in name order) into one multi-document stream.
func readManifests(names []string, stdin io.Reader) ([]byte, error) {
	var docs [][]byte
	for _, name := range names {
		if name == "-" {
			data, err := io.ReadAll(io.LimitReader(stdin, api.MaxBodyBytes+1))
			if err != nil {
				return nil, fmt.Errorf("read standard input: %w", err)
			}
			docs = append(docs, data)
			continue
		}
		st, err := os.Stat(name)
		if err != nil {
			return nil, fmt.Errorf("the path %q does not exist", name)
		}
		paths := []string{name}
		if st.IsDir() {
			paths = nil
			entries, err := os.ReadDir(name)
			if err != nil {
				return nil, err
			}
			for _, e := range entries {
				switch strings.ToLower(filepath.Ext(e.Name())) {
				case ".yaml", ".yml", ".json":
					if !e.IsDir() {
						paths = append(paths, filepath.Join(name, e.Name()))
					}
				}
			}
			sort.Strings(paths)
			if len(paths) == 0 {
				return nil, fmt.Errorf("directory %s holds no .yaml, .yml or .json files", name)
			}
		}
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			docs = append(docs, data)
		}
	}
	return bytes.Join(docs, []byte("\n---\n")), nil
}
