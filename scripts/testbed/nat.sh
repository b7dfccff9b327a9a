# Sourced by scripts: a small internet in network namespaces, with home routers doing NAT (issue 17).
#
#   nat_up            # builds it (needs root; installs iproute2, nftables and miniupnpd with apt-get if missing)
#   nat_hosts         # prints "name namespace address port" for every host a node can run on, one per line
#   nat_down          # removes everything nat_up made (call it from the script's EXIT trap)
#
# The internet is one bridge (namespace $nat_tag-inet); on it, public hosts at 198.51.100.11-13 (a documentation
# range) and the routers' outside addresses at 198.18.R.1, each router in its own /24 as home routers are (floe
# spreads a blob's slivers over /24s). 198.18.0.0/15 is reserved for network benchmarks (RFC 2544), never routed
# on the internet, and has the /24s the documentation ranges lack. Everything is on-link for everyone. Each
# router has a home network 192.168.R.0/24 (its own bridge) and NATs it with nftables:
#
#   router  outside        home hosts            NAT
#   cone1   198.18.1.1    192.168.1.11-12       endpoint-independent mapping
#   cone2   198.18.2.1    192.168.2.11-12       endpoint-independent mapping
#   upnp    198.20.3.1    192.168.3.11-12       endpoint-independent mapping, and miniupnpd for port mappings
#   sym     198.18.4.1    192.168.4.11-13       address-and-port-dependent mapping (masquerade random)
#
# The upnp router alone has an outside address in no reserved range: miniupnpd maps no port behind a reserved
# outside address, nor does libp2p's UPnP client use a mapping on one (either means a NAT behind another NAT).
# It exists only inside these namespaces, which have no route out. miniupnpd learns it by asking a STUN server
# (scripts/testbed/stun.py, on pub1's namespace), as a router behind a modem does.
#
# Endpoint-independent mapping, as a home router gives a host's listening port: host .1i listens on port 4000+i
# (the port nat_hosts prints), and that port (TCP and UDP) leaves as the router's same port to every destination.
# Plain masquerade is not enough: it keeps a port only while the outside tuple is free, so it maps the same
# inside port differently per destination once two flows collide. Hosts share no port, as libp2p's identify
# guesses a node's outside address from its listen port (its observed port is used only when the two match):
# two hosts behind one router listening on the same port would each be advertised at that port, and one of
# them wrongly. Other ports are masqueraded.
#
# Every router filters like a home router: replies to what went out come in (conntrack), nothing else (except
# what miniupnpd forwards), and unsolicited packets are dropped, not answered (a reset would end a hole punch
# whose other half has not left yet). Home hosts reach the internet; nothing reaches a home host unsolicited. Addresses
# exist only inside the namespaces; every namespace and process made here is removed by nat_down.

nat_tag=floe-nat-$$
nat_namespaces=()
nat_pids=()

nat_ns() { echo "$nat_tag-$1"; }

nat_hosts() {
  local i r
  for i in 1 2 3; do echo "pub$i $(nat_ns "pub$i") 198.51.100.1$i 4001"; done
  for r in cone1:1:2 cone2:2:2 upnp:3:2 sym:4:3; do
    IFS=: read -r name net count <<< "$r"
    for i in $(seq 1 "$count"); do echo "$name-h$i $(nat_ns "$name-h$i") 192.168.$net.1$i $((4000 + i))"; done
  done
}

nat_add_ns() {
  ip netns add "$1" || return 1
  nat_namespaces+=("$1")
  ip -n "$1" link set lo up
}

nat_up() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "nat testbed: needs root to create network namespaces" >&2; return 1
  fi
  local missing=()
  command -v ip > /dev/null || missing+=(iproute2)
  command -v nft > /dev/null || missing+=(nftables)
  command -v miniupnpd > /dev/null || missing+=(miniupnpd)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "nat testbed: installing ${missing[*]} with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null \
      || { echo "nat testbed: apt-get install ${missing[*]} failed" >&2; return 1; }
  fi
  local inet; inet=$(nat_ns inet)
  nat_add_ns "$inet" || { echo "nat testbed: cannot create network namespaces" >&2; return 1; }
  ip -n "$inet" link add br0 type bridge
  ip -n "$inet" link set br0 up
  local i ns
  for i in 1 2 3; do
    ns=$(nat_ns "pub$i")
    nat_add_ns "$ns"
    ip -n "$inet" link add "p$i" type veth peer name eth0 netns "$ns"
    ip -n "$inet" link set "p$i" master br0 up
    ip -n "$ns" addr add "198.51.100.1$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add 198.18.0.0/15 dev eth0
    ip -n "$ns" route add 198.20.3.0/24 dev eth0
  done
  local r name net count
  for r in cone1:1:2:cone cone2:2:2:cone upnp:3:2:cone sym:4:3:symmetric; do
    IFS=: read -r name net count kind <<< "$r"
    ns=$(nat_ns "$name")
    nat_add_ns "$ns"
    ip -n "$inet" link add "w$net" type veth peer name eth0 netns "$ns"
    ip -n "$inet" link set "w$net" master br0 up
    local outside="198.18.$net.1"
    [ "$name" = upnp ] && outside="198.20.$net.1"
    ip -n "$ns" addr add "$outside/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add 198.51.100.0/24 dev eth0
    ip -n "$ns" route add 198.18.0.0/15 dev eth0
    [ "$name" = upnp ] || ip -n "$ns" route add 198.20.3.0/24 dev eth0
    ip -n "$ns" link add lan0 type bridge
    ip -n "$ns" addr add "192.168.$net.1/24" dev lan0
    ip -n "$ns" link set lan0 up
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
    local masquerade="masquerade" fixed="" i proto
    [ "$kind" = symmetric ] && masquerade="masquerade random"
    if [ "$kind" = cone ]; then
      for i in $(seq 1 "$count"); do
        for proto in tcp udp; do
          fixed+="    oifname eth0 ip saddr 192.168.$net.1$i $proto sport $((4000 + i)) snat to $outside:$((4000 + i))"$'\n'
        done
      done
    fi
    ip netns exec "$ns" nft -f - << NFT || { echo "nat testbed: nft failed in $name" >&2; return 1; }
table ip nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
$fixed    oifname "eth0" $masquerade
  }
}
table ip filter {
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "eth0" ct state established,related accept
    iifname "eth0" drop
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan0" oifname "eth0" accept
    ct status dnat accept
  }
}
NFT
    for i in $(seq 1 "$count"); do
      local host; host=$(nat_ns "$name-h$i")
      nat_add_ns "$host"
      ip -n "$ns" link add "h$i" type veth peer name eth0 netns "$host"
      ip -n "$ns" link set "h$i" master lan0 up
      ip -n "$host" addr add "192.168.$net.1$i/24" dev eth0
      ip -n "$host" link set eth0 up
      ip -n "$host" route add default via "192.168.$net.1"
    done
  done
  ip netns exec "$(nat_ns pub1)" python3 "$(dirname "${BASH_SOURCE[0]}")/stun.py" 198.51.100.11 3478 &
  nat_pids+=($!)
  nat_start_miniupnpd "$(nat_ns upnp)"
}

# miniupnpd on the upnp router: hosts of 192.168.3.0/24 may map ports 1024-65535 to themselves.
nat_start_miniupnpd() {
  local ns=$1 dir="/tmp/$nat_tag-miniupnpd"
  mkdir -p "$dir"
  cat > "$dir/miniupnpd.conf" << CONF
ext_ifname=eth0
ext_perform_stun=yes
ext_stun_host=198.51.100.11
ext_stun_port=3478
upnp_table_name=miniupnpd
upnp_nat_table_name=miniupnpd
listening_ip=lan0
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
notify_interval=60
clean_ruleset_interval=600
uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b
allow 1024-65535 192.168.3.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
CONF
  # The chains miniupnpd adds its rules to (Debian's nft_init.sh wants iptables): DNAT in prerouting, and
  # its own forward chain, which only adds accepts (the filter table already passes DNATed connections).
  ip netns exec "$ns" nft -f - << NFT || { echo "nat testbed: nft failed for miniupnpd" >&2; return 1; }
table inet miniupnpd {
  chain forward { type filter hook forward priority filter; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump prerouting_miniupnpd; }
  chain prerouting_miniupnpd { }
  chain postrouting { type nat hook postrouting priority srcnat; policy accept; jump postrouting_miniupnpd; }
  chain postrouting_miniupnpd { }
}
NFT
  ip netns exec "$ns" miniupnpd -d -f "$dir/miniupnpd.conf" > "$dir/miniupnpd.log" 2>&1 &
  nat_pids+=($!)
  # Ready once it has its outside address from STUN (a few seconds): a node asking earlier finds no router
  # and does not ask again.
  local tries=0
  until grep -q "Listening for NAT-PMP" "$dir/miniupnpd.log" 2> /dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -gt 150 ]; then
      echo "nat testbed: miniupnpd did not start; its log follows" >&2; cat "$dir/miniupnpd.log" >&2; return 1
    fi
    sleep 0.1
  done
}

nat_down() {
  local pid ns
  for pid in "${nat_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${nat_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in "${nat_namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "/tmp/$nat_tag-miniupnpd"
}
