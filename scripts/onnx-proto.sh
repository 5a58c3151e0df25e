#!/usr/bin/env bash
# Regenerates src/checkpoint/onnx_proto.rs from src/checkpoint/onnx.proto (ONNX's message
# definitions) with prost-build, in a throwaway crate. Needs protoc (Debian: protobuf-compiler).
# Usage: scripts/onnx-proto.sh   (then review the diff; keep the file's header comment)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/out"
cp "$root/src/checkpoint/onnx.proto" "$work/"
cat > "$work/Cargo.toml" <<'TOML'
[package]
name = "onnx-proto-gen"
version = "0.0.0"
edition = "2021"
[dependencies]
prost-build = "0.14"
TOML
cat > "$work/src/main.rs" <<'RS'
fn main() {
    prost_build::Config::new().out_dir("out").compile_protos(&["onnx.proto"], &["."]).expect("protoc");
}
RS
(cd "$work" && cargo run -q)
header=$(sed -n '1,/^$/p' "$root/src/checkpoint/onnx_proto.rs")
{ printf '%s\n' "$header"; cat "$work/out/onnx.rs"; } > "$root/src/checkpoint/onnx_proto.rs"
echo "wrote src/checkpoint/onnx_proto.rs"
