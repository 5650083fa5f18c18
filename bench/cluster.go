package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/stead-io/stead/api"
)

// ClusterConfig says how to start a cluster of Stead servers, each its own
// process, on loopback.
type ClusterConfig struct {
	// Command runs one server, before its flags: {"bin/stead", "server"} or
	// {"benchserver"}. The server takes the flags of `stead server`
	// (--node-id, --data-dir, --http-addr, --raft-addr, --bootstrap,
	// --join).
	Command []string
	// Args are extra flags for every server.
	Args []string
	// Dir holds each server's data directory and log.
	Dir string
	// Servers is how many to start; the first bootstraps and leads.
	Servers int
	// ExtraHTTP, when set, gives each server a second address (the
	// flag's value is a free loopback address), such as a profiling
	// endpoint: {"--pprof-addr"}.
	ExtraHTTP string
}

// Server is one running server of a Cluster.
type Server struct {
	ID, HTTPAddr, RaftAddr string
	// ExtraAddr is the address given to ClusterConfig.ExtraHTTP.
	ExtraAddr string
	Proc      *Process
}

// URL returns the server's API URL for path.
func (s *Server) URL(path string) string { return "http://" + s.HTTPAddr + path }

// Cluster is a set of running servers. Servers[0] is the leader.
type Cluster struct {
	Servers []*Server
}

// StartCluster starts the servers one by one: the first bootstraps a new
// cluster, the others join it. It returns once the first one leads a Raft
// group of all of them and every one of them is ready.
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	c := &Cluster{}
	hc := &http.Client{Timeout: 5 * time.Second}
	for i := range cfg.Servers {
		s := &Server{ID: fmt.Sprintf("s%d", i+1)}
		var err error
		if s.HTTPAddr, err = FreeAddr(); err != nil {
			c.Stop()
			return nil, err
		}
		if s.RaftAddr, err = FreeAddr(); err != nil {
			c.Stop()
			return nil, err
		}
		dir := filepath.Join(cfg.Dir, s.ID)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			c.Stop()
			return nil, fmt.Errorf("server %s: %w", s.ID, err)
		}
		argv := append([]string{}, cfg.Command...)
		argv = append(argv, "--node-id", s.ID, "--data-dir", filepath.Join(dir, "data"),
			"--http-addr", s.HTTPAddr, "--raft-addr", s.RaftAddr)
		if cfg.ExtraHTTP != "" {
			if s.ExtraAddr, err = FreeAddr(); err != nil {
				c.Stop()
				return nil, err
			}
			argv = append(argv, cfg.ExtraHTTP, s.ExtraAddr)
		}
		if i == 0 {
			argv = append(argv, "--bootstrap")
		} else {
			argv = append(argv, "--join", c.Servers[0].HTTPAddr)
		}
		argv = append(argv, cfg.Args...)
		if s.Proc, err = Start("server "+s.ID, filepath.Join(dir, "server.log"), argv...); err != nil {
			c.Stop()
			return nil, err
		}
		c.Servers = append(c.Servers, s)
		if i == 0 {
			// The others join through the first, so it must lead first.
			err = WaitFor(ctx, 50*time.Millisecond, "server s1 to lead", func() (bool, error) {
				if err := c.exited(); err != nil {
					return false, err
				}
				st, err := Status(ctx, hc, s)
				return err == nil && st.Leader == s.ID && st.LeaderAddr != "", err
			})
			if err != nil {
				c.Stop()
				return nil, err
			}
		}
	}
	err := WaitFor(ctx, 50*time.Millisecond, fmt.Sprintf("%d voters", cfg.Servers), func() (bool, error) {
		if err := c.exited(); err != nil {
			return false, err
		}
		st, err := Status(ctx, hc, c.Servers[0])
		if err != nil {
			return false, err
		}
		voters := 0
		for _, m := range st.Servers {
			if m.Voter {
				voters++
			}
		}
		if voters != cfg.Servers || st.Leader != c.Servers[0].ID {
			return false, nil
		}
		for _, s := range c.Servers {
			if ok, err := GetOK(ctx, hc, s.URL("/v1/ready")); !ok {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// exited returns an error if a server has exited.
func (c *Cluster) exited() error {
	for _, s := range c.Servers {
		select {
		case <-s.Proc.Done():
			return fmt.Errorf("server %s exited: see %s", s.ID, s.Proc.LogPath)
		default:
		}
	}
	return nil
}

// Leader returns the server that leads.
func (c *Cluster) Leader() *Server { return c.Servers[0] }

// Stop stops every server, the last started first.
func (c *Cluster) Stop() error {
	var errs []error
	for i := len(c.Servers) - 1; i >= 0; i-- {
		errs = append(errs, c.Servers[i].Proc.Stop(10*time.Second))
	}
	return errors.Join(errs...)
}

// Status reads /v1/status of s.
func Status(ctx context.Context, hc *http.Client, s *Server) (api.ClusterStatus, error) {
	var st api.ClusterStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL("/v1/status"), nil)
	if err != nil {
		return st, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status of %s: %s", s.ID, resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}
