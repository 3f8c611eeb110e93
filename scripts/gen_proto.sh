#!/usr/bin/env bash
# Regenerates the committed Python stubs next to the .proto files. Pinned generators
# (grpcio-tools, mypy-protobuf in pyproject's dev extra) keep the output byte-stable,
# so `make proto && git diff --exit-code` is a test.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
rm -f proto/numbind/v1/*_pb2*.py proto/numbind/v1/*_pb2*.pyi
"$PY" -m grpc_tools.protoc -I proto \
  --python_out=proto --grpc_python_out=proto \
  --mypy_out=proto --mypy_grpc_out=proto \
  --plugin=protoc-gen-mypy="$(dirname "$PY")/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$(dirname "$PY")/protoc-gen-mypy_grpc" \
  proto/numbind/v1/*.proto
touch proto/numbind/__init__.py proto/numbind/v1/__init__.py
