package network

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
)

// masqueradeRule is the iptables nat rule that masquerades the node's pods'
// traffic leaving the cluster's pod range (Options.ClusterCIDR).
func (n *Network) masqueradeRule() []string {
	return []string{"POSTROUTING", "-s", n.opts.Subnet.String(), "!", "-d", n.opts.ClusterCIDR.Masked().String(),
		"-m", "comment", "--comment", "stead: pods of " + n.opts.NetworkName + " leaving the cluster", "-j", "MASQUERADE"}
}

// ensureMasquerade installs the masquerade rule once, when a cluster range
// is set.
func (n *Network) ensureMasquerade() error {
	if !n.opts.ClusterCIDR.IsValid() {
		return nil
	}
	if ok, err := iptables(append([]string{"-t", "nat", "-C"}, n.masqueradeRule()...)...); err != nil || ok {
		return err
	}
	if _, err := iptables(append([]string{"-t", "nat", "-A"}, n.masqueradeRule()...)...); err != nil {
		return err
	}
	return nil
}

// deleteMasquerade removes the masquerade rule; a missing one is not an
// error.
func (n *Network) deleteMasquerade() error {
	if !n.opts.ClusterCIDR.IsValid() {
		return nil
	}
	for {
		ok, err := iptables(append([]string{"-t", "nat", "-D"}, n.masqueradeRule()...)...)
		if err != nil || !ok {
			return err
		}
	}
}

// iptables runs iptables (waiting for its lock, as the CNI plugins do) and
// reports whether the rule matched: exit status 1 means "no such rule".
func iptables(args ...string) (bool, error) {
	cmd := exec.Command("iptables", append([]string{"-w"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return false, nil
	}
	return false, fmt.Errorf("iptables %v: %w: %s", args, err, bytes.TrimSpace(out.Bytes()))
}
