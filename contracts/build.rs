//! Generates the admin gRPC contract (`flywheel.admin.v1`) from `proto/`: protox compiles the
//! .proto in pure Rust (no system protoc), tonic-prost-build writes the messages, the client and
//! the server, and the encoded file descriptor set is kept for server reflection.

use std::path::PathBuf;

const PROTO: &str = "flywheel/admin/v1/admin.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut compiler = protox::Compiler::new(["proto"])?;
    // Source info carries the .proto's comments into the generated docs and into reflection.
    compiler.include_source_info(true);
    compiler.open_file(PROTO)?;
    std::fs::write(out.join("admin_descriptor.bin"), compiler.encode_file_descriptor_set())?;
    tonic_prost_build::configure()
        // Callers bring their own channel (the CLI adds the admin token to every call).
        .build_transport(false)
        // `flywheel admin --json` prints the answers as they are.
        .message_attribute(".flywheel.admin.v1", "#[derive(serde::Serialize)]")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
