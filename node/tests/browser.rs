//! What runs outside Rust, driven from here so `cargo test` runs it: headless Chromium against a devnet
//! (scripts/browser-test.sh: the status page, cross-origin fetch and Range, a video that plays and seeks, a site
//! published with `floe site publish` loaded from another node on its own origin, cached on a second visit, and a
//! page of it reading blobs with the WebAssembly verifier through a lying gateway, and the site by its name,
//! revalidated on a second visit and showing the new version after `floe site update`) and a
//! js-libp2p peer pinging a node (scripts/js-peer-test.sh). Each script installs what it needs (Debian's
//! chromium, npm packages) and fails, saying why, when it cannot; neither is skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn run_script(script: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let output = Command::new("bash")
        .arg(root.join(script))
        .env("FLOE_BIN", env!("CARGO_BIN_EXE_floe"))
        .current_dir(root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{stderr}"
    );
}

#[test]
fn chromium_reads_blobs_across_origins_and_renders_the_status_page() {
    run_script("scripts/browser-test.sh");
}

#[test]
fn a_js_libp2p_peer_pings_a_fresh_floe_node() {
    run_script("scripts/js-peer-test.sh");
}
