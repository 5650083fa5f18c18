// Package installtest tests what deploy/ ships: install.sh, run against a
// real sshd in a network namespace the test creates, the systemd units,
// checked with systemd-analyze, and the example configurations, checked
// against the flags of the stead binary. It holds no code of its own.
package installtest
