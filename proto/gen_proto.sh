#!/usr/bin/env bash
# Regenerates the committed Python stubs next to the .proto files (or into $1, which the
# drift test uses). Pinned generators (grpcio-tools, mypy-protobuf in pyproject's dev
# extra) keep the output byte-stable, so regeneration leaving a diff is a test failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-proto}
BIN=$(dirname "$PY")
mkdir -p "$OUT/numbind/v1"
rm -f "$OUT"/numbind/v1/*_pb2*.py "$OUT"/numbind/v1/*_pb2*.pyi
"$PY" -m grpc_tools.protoc -I proto \
  --python_out="$OUT" --grpc_python_out="$OUT" \
  --mypy_out=quiet:"$OUT" --mypy_grpc_out=quiet:"$OUT" \
  --plugin=protoc-gen-mypy="$BIN/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$BIN/protoc-gen-mypy_grpc" \
  proto/numbind/v1/*.proto
touch "$OUT/numbind/v1/__init__.py"
