# Sourced by scripts: builds floe and sets $floe to the binary. FLOE_PROFILE=dev uses a debug build (CI has one).
if [ "${FLOE_PROFILE:-release}" = dev ]; then
  cargo build --quiet -p floe-node; floe=$PWD/target/debug/floe
else
  cargo build --release --quiet -p floe-node; floe=$PWD/target/release/floe
fi
