package bench

import "fmt"

// PlacementSet is the StatefulSet the placement benchmark submits, as
// YAML: replicas pods of a small request, started all at once (Parallel),
// in namespace "bench".
func PlacementSet(name string, replicas int) []byte {
	return fmt.Appendf(nil, `apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: %[1]s
  namespace: bench
spec:
  serviceName: %[1]s
  replicas: %[2]d
  podManagementPolicy: Parallel
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      containers:
      - name: app
        image: busybox
        command: ["sleep", "3600"]
        resources:
          requests: {cpu: 100m, memory: 64Mi}
`, name, replicas)
}
