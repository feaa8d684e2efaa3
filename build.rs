//! Compiles `proto/helloworld.proto` for the examples and the tests.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/helloworld.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/helloworld.proto"], &["proto"])?;
    Ok(())
}
