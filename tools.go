//go:build tools

package tools

import (
	_ "github.com/containerd/containerd"
	_ "github.com/containerd/go-cni"
	_ "github.com/hashicorp/go-hclog"
	_ "github.com/hashicorp/go-immutable-radix/v2"
	_ "github.com/hashicorp/raft"
	_ "github.com/hashicorp/raft-boltdb/v2"
	_ "github.com/miekg/dns"
	_ "github.com/spf13/cobra"
	_ "k8s.io/api/apps/v1"
	_ "k8s.io/apimachinery/pkg/util/validation"
	_ "sigs.k8s.io/yaml"
)
