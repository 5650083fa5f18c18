package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/agent/image"
	"github.com/stead-io/stead/api"
)

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Load, build and list images on the nodes, without a registry",
		Long: `Nodes keep images in containerd. Without a registry, images get there by
import (an OCI or Docker archive, sent to every node or one), by dropping an
archive into an agent's DATA_DIR/images/ before it starts, or by building a
minimal image from a static binary.`,
	}
	cmd.AddCommand(newImageImportCmd(g), newImageBuildCmd(g), newImageListCmd(g))
	return cmd
}

func newImageImportCmd(g *globals) *cobra.Command {
	var node string
	cmd := &cobra.Command{
		Use:   "import FILE [--node NODE]",
		Short: "Import an OCI or Docker image archive into every node, or one",
		Example: `  stead image import web.tar
  docker save nginx:1.27 > nginx.tar && stead image import nginx.tar --node node-a`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			return importEverywhere(cmd.Context(), g, node, data, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "import into this node only")
	return cmd
}

func newImageBuildCmd(g *globals) *cobra.Command {
	var (
		o      image.BuildOptions
		output string
		node   string
		files  []string
	)
	cmd := &cobra.Command{
		Use:   "build --binary PATH --tag NAME [-o FILE]",
		Short: "Build a minimal image from a static binary",
		Long: `Build an OCI image holding one static binary (at /<its name>, the
entrypoint), /etc/passwd, /etc/group, /tmp and the files given with --file.
With -o the archive is written to FILE ("-" for standard output), to import
later or to drop into an agent's DATA_DIR/images/; without it, the image is
imported into every node (or --node).`,
		Example: `  CGO_ENABLED=0 go build -o web ./examples/webserver
  stead image build --binary web --tag stead.local/examples/web:1 -o web.tar
  stead image build --binary web --tag stead.local/examples/web:1 --file ./index.html:/usr/share/nginx/html/index.html`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Binary == "" || o.Tag == "" {
				return errors.New("--binary and --tag are required")
			}
			if len(files) > 0 {
				o.ExtraFiles = map[string]string{}
				for _, f := range files {
					src, dst, ok := strings.Cut(f, ":")
					if !ok || src == "" || !strings.HasPrefix(dst, "/") {
						return fmt.Errorf("--file %q is not HOST_PATH:/IMAGE_PATH", f)
					}
					o.ExtraFiles[dst] = src
				}
			}
			switch output {
			case "-":
				_, err := image.BuildFromBinary(cmd.OutOrStdout(), o)
				return err
			case "":
				var buf bytes.Buffer
				name, err := image.BuildFromBinary(&buf, o)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "built %s\n", name)
				return importEverywhere(cmd.Context(), g, node, buf.Bytes(), cmd.OutOrStdout())
			default:
				name, err := image.BuildFile(output, o)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "built %s into %s\n", name, output)
				return nil
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Binary, "binary", "", "static executable to put in the image")
	f.StringVar(&o.Tag, "tag", "", "image name with its tag, e.g. stead.local/web:1")
	f.StringVarP(&output, "output", "o", "", `write the archive to this file ("-": standard output) instead of importing it`)
	f.StringVar(&node, "node", "", "without -o, import into this node only")
	f.StringSliceVar(&o.Entrypoint, "entrypoint", nil, "the image's ENTRYPOINT (default: the binary)")
	f.StringArrayVar(&o.Cmd, "cmd", nil, "an argument of the image's CMD (repeatable)")
	f.StringArrayVar(&o.Env, "env", nil, "KEY=VALUE in the image's environment (repeatable)")
	f.StringVar(&o.StopSignal, "stop-signal", "", "the image's STOPSIGNAL (default SIGTERM)")
	f.StringArrayVar(&files, "file", nil, "HOST_PATH:/IMAGE_PATH of a file to add (repeatable)")
	return cmd
}

func newImageListCmd(g *globals) *cobra.Command {
	var node string
	cmd := &cobra.Command{
		Use:     "ls [--node NODE]",
		Aliases: []string{"list"},
		Short:   "List the images on every node, or one",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			agents, err := agentsOf(ctx, g, node)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "NODE\tIMAGE")
			var errs []error
			for _, a := range agents {
				if a.err != nil {
					errs = append(errs, fmt.Errorf("node %s: %w", a.node, a.err))
					continue
				}
				l, err := a.client.ListImages(ctx)
				if err != nil {
					errs = append(errs, fmt.Errorf("node %s: %w", a.node, err))
					continue
				}
				for _, img := range l.Images {
					fmt.Fprintf(tw, "%s\t%s\n", a.node, img)
				}
			}
			tw.Flush()
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "list this node's images only")
	return cmd
}

// nodeAgent is the agent of one node, or why it cannot be reached.
type nodeAgent struct {
	node   string
	client *api.AgentClient
	err    error
}

// agentsOf returns the agents of every node, or of node when set.
func agentsOf(ctx context.Context, g *globals, node string) ([]nodeAgent, error) {
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	var nodes []*corev1.Node
	if node != "" {
		var n corev1.Node
		if _, err := c.Get(ctx, nodesRes, "", node, &n); err != nil {
			return nil, err
		}
		nodes = []*corev1.Node{&n}
	} else if nodes, err = allNodes(ctx, c); err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return nil, errors.New("no nodes: start an agent (stead agent, or stead dev) first")
	}
	out := make([]nodeAgent, 0, len(nodes))
	for _, n := range nodes {
		ac, err := agentClientOf(g, n)
		out = append(out, nodeAgent{node: n.Name, client: ac, err: err})
	}
	return out, nil
}

// importEverywhere sends an image archive to every node's agent (or
// node's) and says what each imported; an agent that fails does not stop
// the others.
func importEverywhere(ctx context.Context, g *globals, node string, archive []byte, out io.Writer) error {
	agents, err := agentsOf(ctx, g, node)
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range agents {
		if a.err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", a.node, a.err))
			continue
		}
		l, err := a.client.ImportImage(ctx, bytes.NewReader(archive))
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", a.node, err))
			continue
		}
		for _, img := range l.Images {
			fmt.Fprintf(out, "%s: imported %s\n", a.node, img)
		}
	}
	return errors.Join(errs...)
}
