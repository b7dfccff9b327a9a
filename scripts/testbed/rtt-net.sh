# Sourced by scripts: network namespaces whose traffic between each other crosses a router that delays it
# (scripts/testbed/delay-router.py), for measurements with real round-trip times on a kernel without sch_netem.
#
#   rtt_net_up COUNT RTT_MS    # namespaces floe-rtt-$$-0 … COUNT-1 at 10.78.I.2/24; the router at 10.78.I.1
#   rtt_net_ns I               # the name of namespace I
#   rtt_net_down               # removes everything rtt_net_up made (call it from the script's EXIT trap)
#
# Needs root. Each namespace is its own /24, so floe's network diversity counts them apart. Addresses exist only
# inside the namespaces. The router's TUN device and links use a 65,000-byte MTU, so the Python forwarder moves
# large packets and does not become the bottleneck at loopback-like bandwidth.

rtt_net_tag=floe-rtt-$$
rtt_net_count=0
rtt_net_router_pid=

rtt_net_ns() { echo "$rtt_net_tag-$1"; }

rtt_net_up() {
  local count=$1 rtt=$2 i ns router="$rtt_net_tag-r"
  if [ "$(id -u)" -ne 0 ]; then
    echo "rtt-net: needs root to create network namespaces" >&2; return 1
  fi
  if ! command -v ip > /dev/null; then
    apt-get update -qq && apt-get install -y -qq iproute2 > /dev/null
  fi
  if [ ! -c /dev/net/tun ]; then
    echo "rtt-net: /dev/net/tun is missing; the delaying router needs a TUN device" >&2; return 1
  fi
  ip netns add "$router" || { echo "rtt-net: cannot create network namespaces" >&2; return 1; }
  rtt_net_count=$count
  ip -n "$router" link set lo up
  ip netns exec "$router" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$router" sysctl -qw net.ipv4.conf.all.rp_filter=0
  ip netns exec "$router" sysctl -qw net.ipv4.conf.default.rp_filter=0
  # Half the round trip each way.
  local half
  half=$(python3 -c "import sys; print(float(sys.argv[1]) / 2)" "$rtt")
  ip netns exec "$router" python3 "$(dirname "${BASH_SOURCE[0]}")/delay-router.py" floedelay "$half" \
    > "/tmp/$rtt_net_tag-router.log" 2>&1 &
  rtt_net_router_pid=$!
  for _ in $(seq 1 50); do grep -q ready "/tmp/$rtt_net_tag-router.log" 2>/dev/null && break; sleep 0.1; done
  ip -n "$router" link set floedelay mtu 65000 up
  # Packets from the nodes go to the TUN device (main table); what the forwarder writes back comes in on it and
  # goes out to its node (table 100).
  ip -n "$router" route add 10.78.0.0/16 dev floedelay
  ip -n "$router" rule add iif floedelay lookup 100
  for i in $(seq 0 $((count - 1))); do
    ns=$(rtt_net_ns "$i")
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$router" link add "r$i" mtu 65000 type veth peer name eth0 netns "$ns"
    ip -n "$router" addr add "10.78.$i.1/24" dev "r$i" noprefixroute
    ip -n "$router" link set "r$i" up
    ip netns exec "$router" sysctl -qw "net.ipv4.conf.r$i.rp_filter=0"
    ip -n "$router" route add "10.78.$i.0/24" dev "r$i" table 100
    ip -n "$ns" link set eth0 mtu 65000
    ip -n "$ns" addr add "10.78.$i.2/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "10.78.$i.1"
  done
}

rtt_net_down() {
  local i
  [ -n "$rtt_net_router_pid" ] && { kill "$rtt_net_router_pid" 2>/dev/null || true; wait "$rtt_net_router_pid" 2>/dev/null || true; }
  for i in $(seq 0 $((rtt_net_count - 1))); do ip netns del "$(rtt_net_ns "$i")" 2>/dev/null || true; done
  ip netns del "$rtt_net_tag-r" 2>/dev/null || true
  rm -f "/tmp/$rtt_net_tag-router.log"
}
