//! Compiles `proto/floe.proto` with prost. protox parses the file in Rust, so no `protoc` binary is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "../proto";
    let file = "../proto/floe.proto";
    println!("cargo:rerun-if-changed={file}");
    let descriptors = protox::compile([file], [proto_dir])?;
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    config.compile_fds(descriptors)?;
    Ok(())
}
