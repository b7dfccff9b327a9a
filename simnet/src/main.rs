//! `floe-simnet`: the deterministic discrete-event simulator that will drive floe-protocol's state machines
//! (issue 5). It has no simulation yet, and says so instead of pretending.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "floe-simnet {}: the simulator is not built yet. It will drive the protocol core's write, read and \
         repair state machines under virtual time (see docs/architecture.md).",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
