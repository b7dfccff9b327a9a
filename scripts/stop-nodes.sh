# Sourced by the benchmark scripts: stops the floe nodes that were started under a work directory, by the PID
# each wrote to its node.json, never by matching command lines. A PID is killed only while its command line
# still names that work directory, so a PID reused by another process after its node exited is left alone.
#
#   stop_nodes_under DIR
stop_nodes_under() {
  local dir=$1 info pid
  while IFS= read -r -d '' info; do
    pid=$(python3 -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["pid"]))' "$info" 2>/dev/null) || continue
    if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$dir"; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  done < <(find "$dir" -name node.json -print0 2>/dev/null)
}

# The PID in DIR/node.json, once the node has written it.
node_pid() {
  python3 -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["pid"]))' "$1/node.json"
}
