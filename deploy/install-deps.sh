#!/usr/bin/env bash
# Installs the Debian packages Stead uses, only those that are missing.
set -euo pipefail

packages=(
	containerd runc containernetworking-plugins # the container runtime and CNI plugins
	iptables nftables iproute2                  # pod networking and the cluster tests' partitions
	dnsutils                                    # dig, for the DNS tests
	busybox-static e2fsprogs                    # test images and image volumes
	openssh-server openssh-client              # the install-over-ssh test
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages ${missing[*]}; run as root (sudo make run) or install them" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
