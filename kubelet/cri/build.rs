fn main() {
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["proto/api.proto"], &["proto"])
        .expect("compiling proto/api.proto (needs protoc: apt-get install protobuf-compiler)");
}
