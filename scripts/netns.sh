#!/usr/bin/env bash
# A private provisioning network for trying Dragonfly's DHCP: a network namespace holding a
# bridge, with Dragonfly's side of it as a veth in this namespace. Nothing else on the host
# is touched: no existing interface, route or firewall rule changes, and the subnet is
# refused when the host already routes it. The end-to-end DHCP tests and
# `scripts/lab.sh --network bridge` use it.
#
#   scripts/netns.sh up NAME [PREFIX]   PREFIX: the /24's first three octets, default 10.213.0
#   scripts/netns.sh down NAME
#   scripts/netns.sh tap NAME TAP       a tap device on the bridge, for one QEMU VM
#   scripts/netns.sh dnsmasq NAME DIR   the "site's" DHCP server: addresses only, no boot
#                                       options (pid in DIR/dnsmasq.pid, log DIR/dnsmasq.log)
#
# The network PREFIX.0/24:
#   namespace NAME        bridge br0, which every VM's tap joins
#   namespace NAME-site   site0, PREFIX.2: the site's DHCP server (dnsmasq), pool
#                         PREFIX.100-PREFIX.199
#   namespace NAME-cli    cli0, PREFIX.3: a plain client
#                         (`ip netns exec NAME-cli dragonfly dhcp probe --interface cli0`)
#   this host             veth NAME, PREFIX.1: Dragonfly listens there
#                         (`--dhcp proxy --dhcp-interface NAME`)
# Each host on its own namespace: a packet from an address of the receiving namespace
# itself would be dropped as a martian.
set -euo pipefail

cmd="${1:-}"
name="${2:-}"
if [ -z "$cmd" ] || [ -z "$name" ]; then
  sed -n '2,20p' "$0" >&2
  exit 2
fi
case "$name" in
  -* | *[!a-z0-9-]* | ????????????????*) echo "netns.sh: NAME must be 1-15 of a-z, 0-9, '-', not starting with '-'" >&2; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
  echo "netns.sh: network namespaces need root" >&2
  exit 1
fi
in_ns() { ip netns exec "$name" "$@"; }

# A host on the bridge in its own namespace NAME-$1: veth END (addressed) there, ENDp on br0.
ns_host() {
  local ns="$name-$1"
  ip netns add "$ns"
  ip netns exec "$ns" ip link set lo up
  in_ns ip link add "$2" type veth peer name "$2p"
  in_ns ip link set "$2p" master br0 up
  in_ns ip link set "$2" netns "$ns"
  ip netns exec "$ns" ip addr add "$3/24" dev "$2"
  ip netns exec "$ns" ip link set "$2" up
}

case "$cmd" in
  up)
    prefix="${3:-10.213.0}"
    # Any route of this host but the default one that covers the subnet (a /24, a VPN's 10/8...)
    routes=$(ip -4 route show match "$prefix.1/32")
    if awk '!/^default/ && NF { found = 1 } END { exit !found }' <<< "$routes"; then
      echo "netns.sh: this host already routes $prefix.0/24; choose another PREFIX" >&2
      exit 1
    fi
    if ip link show "$name" >/dev/null 2>&1 || [ -e "/run/netns/$name" ]; then
      echo "netns.sh: $name exists already (scripts/netns.sh down $name)" >&2
      exit 1
    fi
    ip netns add "$name"
    in_ns ip link set lo up
    in_ns ip link add br0 type bridge
    # Forward at once: no spanning-tree listening delay before a VM's first DHCP packet.
    in_ns ip link set br0 type bridge forward_delay 0 stp_state 0
    in_ns ip link set br0 up
    ip link add "$name" type veth peer name up0 netns "$name"
    in_ns ip link set up0 master br0 up
    ip addr add "$prefix.1/24" dev "$name"
    ip link set "$name" up
    ns_host site site0 "$prefix.2"
    ns_host cli cli0 "$prefix.3"
    echo "netns.sh: $name up: host side $name $prefix.1/24, bridge br0 inside"
    ;;
  tap)
    tap="${3:?TAP name}"
    in_ns ip tuntap add "$tap" mode tap
    in_ns ip link set "$tap" master br0 up
    ;;
  dnsmasq)
    dir="${3:?DIR for the pid, lease and log files}"
    site=(ip netns exec "$name-site")
    prefix="$("${site[@]}" ip -4 -o addr show dev site0 | awk '{print $4}' | cut -d/ -f1 | cut -d. -f1-3)"
    # Addresses only: no DNS (port 0), no boot options, this interface only; no ping before
    # an offer (the network is new: nobody to collide with, and VMs boot 3 s sooner).
    "${site[@]}" dnsmasq --no-ping --conf-file=/dev/null --port=0 --interface=site0 --bind-interfaces \
      --except-interface=lo --dhcp-range="$prefix.100,$prefix.199,255.255.255.0,10m" \
      --dhcp-leasefile="$dir/dnsmasq.leases" --pid-file="$dir/dnsmasq.pid" \
      --log-dhcp --log-facility="$dir/dnsmasq.log" --user=root
    ;;
  down)
    for ns in "$name-site" "$name-cli" "$name"; do
      if [ -f "/run/netns/$ns" ]; then
        # Whatever still runs in there (dnsmasq, QEMU) goes with it.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
        ip netns del "$ns"
      fi
    done
    ip link del "$name" 2>/dev/null || true
    ;;
  *)
    echo "netns.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac
