//! The offline CLI as a new user would drive it: right, wrong, missing and hostile arguments and files.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn floe(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("floe runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn ok(output: Output) -> Output {
    assert!(output.status.success(), "floe failed: {}", stderr(&output));
    output
}

fn fails_with(output: Output, needle: &str) {
    assert!(
        !output.status.success(),
        "floe should have failed: {}",
        stdout(&output)
    );
    assert!(
        stderr(&output).contains(needle),
        "stderr lacks {needle:?}: {}",
        stderr(&output)
    );
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

#[test]
fn blob_id_is_deterministic_and_depends_on_the_options() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("f"), pseudo_random(5000, 1)).unwrap();
    let a = stdout(&ok(floe(&["blob-id", "f"], dir.path())));
    let b = stdout(&ok(floe(&["blob-id", "f"], dir.path())));
    assert_eq!(a, b);
    assert_eq!(a.len(), 43);
    let c = stdout(&ok(floe(&["blob-id", "f", "--shards", "20"], dir.path())));
    let d = stdout(&ok(floe(
        &["blob-id", "f", "--encoding", "novelpoly"],
        dir.path(),
    )));
    assert_ne!(a, c);
    assert_ne!(a, d);
    // encode prints the same ID blob-id does.
    let e = stdout(&ok(floe(
        &["slivers", "encode", "f", "--out", "s"],
        dir.path(),
    )));
    assert_eq!(a, e);
}

#[test]
fn any_third_of_the_sliver_files_rebuilds_the_file() {
    for (encoding, len) in [
        ("rs-simd", 0usize),
        ("rs-simd", 1),
        ("novelpoly", 1),
        ("rs-simd", 70_001),
        ("novelpoly", 20_000),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = pseudo_random(len, len as u64);
        fs::write(dir.path().join("f"), &data).unwrap();
        let id = stdout(&ok(floe(
            &[
                "slivers",
                "encode",
                "f",
                "--out",
                "s",
                "--shards",
                "12",
                "--encoding",
                encoding,
                "--segment-size",
                "16384",
            ],
            dir.path(),
        )));
        // Keep only the last k = 4 of 12 (all parity for rs-simd): the hardest case.
        let k = 4;
        for index in 0..12 - k {
            fs::remove_file(dir.path().join(format!("s/sliver-{index:04}.floe"))).unwrap();
        }
        fs::remove_file(dir.path().join("s/blob.meta")).unwrap();
        ok(floe(
            &["slivers", "decode", "s", "--blob-id", &id, "--out", "g"],
            dir.path(),
        ));
        assert_eq!(
            fs::read(dir.path().join("g")).unwrap(),
            data,
            "{encoding} {len}"
        );
    }
}

#[test]
fn corrupt_sliver_files_are_named_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(40_000, 3);
    fs::write(dir.path().join("f"), &data).unwrap();
    let id = stdout(&ok(floe(
        &[
            "slivers",
            "encode",
            "f",
            "--out",
            "s",
            "--segment-size",
            "16384",
        ],
        dir.path(),
    )));
    // Flip one bit in the data of sliver 0, truncate sliver 1, replace sliver 2 with garbage.
    let p0 = dir.path().join("s/sliver-0000.floe");
    let mut bytes = fs::read(&p0).unwrap();
    bytes[100] ^= 1;
    fs::write(&p0, bytes).unwrap();
    let p1 = dir.path().join("s/sliver-0001.floe");
    let bytes = fs::read(&p1).unwrap();
    fs::write(&p1, &bytes[..bytes.len() / 2]).unwrap();
    fs::write(dir.path().join("s/sliver-0002.floe"), pseudo_random(300, 9)).unwrap();
    let out = ok(floe(
        &["slivers", "decode", "s", "--blob-id", &id, "--out", "g"],
        dir.path(),
    ));
    let log = stderr(&out);
    assert!(
        log.contains("sliver-0000.floe") && log.contains("does not match its proof"),
        "{log}"
    );
    assert!(log.contains("sliver-0001.floe"), "{log}");
    assert!(log.contains("sliver-0002.floe"), "{log}");
    assert_eq!(fs::read(dir.path().join("g")).unwrap(), data);
}

#[test]
fn too_few_slivers_fail_cleanly_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("f"), pseudo_random(10_000, 4)).unwrap();
    let id = stdout(&ok(floe(
        &["slivers", "encode", "f", "--out", "s"],
        dir.path(),
    )));
    for index in 0..9 {
        fs::remove_file(dir.path().join(format!("s/sliver-{index:04}.floe"))).unwrap();
    }
    fails_with(
        floe(
            &["slivers", "decode", "s", "--blob-id", &id, "--out", "g"],
            dir.path(),
        ),
        "3 valid slivers but 4 are needed",
    );
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "f" && n != "s")
        .collect();
    assert!(leftovers.is_empty(), "left behind {leftovers:?}");
}

#[test]
fn wrong_missing_and_hostile_arguments_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("f"), b"hello").unwrap();
    fails_with(floe(&["blob-id", "missing"], d), "missing");
    fails_with(floe(&["blob-id", "f", "--shards", "3"], d), "3");
    fails_with(floe(&["blob-id", "f", "--shards", "5000"], d), "5000");
    fails_with(
        floe(&["blob-id", "f", "--shards", "-1"], d),
        "unexpected argument",
    );
    fails_with(
        floe(&["blob-id", "f", "--encoding", "zfec"], d),
        "unknown encoding",
    );
    fails_with(
        floe(&["blob-id", "f", "--segment-size", "10"], d),
        "segment size",
    );
    fails_with(floe(&["blob-id"], d), "FILE");
    fails_with(floe(&["blob-id", "."], d), "not a regular file");
    fails_with(floe(&["blob-id", "/dev/null"], d), "not a regular file");
    let id = stdout(&ok(floe(&["slivers", "encode", "f", "--out", "s"], d)));
    fails_with(
        floe(&["slivers", "encode", "f", "--out", "s"], d),
        "already holds sliver files",
    );
    fails_with(
        floe(
            &["slivers", "decode", "s", "--blob-id", "nope", "--out", "g"],
            d,
        ),
        "43 characters",
    );
    // One blob ID in 64 starts with '-': it is an ID, not an option.
    let dashed = format!("-{}", &id.trim()[1..]);
    fails_with(
        floe(
            &["slivers", "decode", "s", "--blob-id", &dashed, "--out", "g"],
            d,
        ),
        "no sliver file",
    );
    fails_with(
        floe(
            &[
                "slivers",
                "decode",
                "s",
                "--blob-id",
                &"A".repeat(43),
                "--out",
                "g",
            ],
            d,
        ),
        "holds metadata for blob",
    );
    fails_with(
        floe(
            &[
                "slivers",
                "decode",
                "missing-dir",
                "--blob-id",
                &id,
                "--out",
                "g",
            ],
            d,
        ),
        "missing-dir",
    );
    fails_with(
        floe(
            &["slivers", "decode", "s", "--blob-id", &id, "--out", "f"],
            d,
        ),
        "already exists",
    );
    // A hostile trailer that claims an enormous metadata record is refused without allocating it.
    let mut hostile = vec![0u8; 64];
    hostile.extend_from_slice(&u64::MAX.to_le_bytes());
    hostile.extend_from_slice(b"FLOESLV1");
    fs::write(d.join("s/sliver-0000.floe"), hostile).unwrap();
    let out = ok(floe(
        &["slivers", "decode", "s", "--blob-id", &id, "--out", "g"],
        d,
    ));
    assert!(stderr(&out).contains("out of range"), "{}", stderr(&out));
    assert_eq!(fs::read(d.join("g")).unwrap(), b"hello");
}
