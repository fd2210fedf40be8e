"""The .proto contracts: they compile, follow buf's STANDARD lint rules, and document every element."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[3]
PROTO = ROOT / "proto"
PROTOS = sorted(PROTO.rglob("*.proto"))


def test_every_service_has_a_versioned_contract() -> None:
    names = {p.relative_to(PROTO).as_posix() for p in PROTOS}
    for svc in ("common", "encoder", "trainer", "describer", "reporter"):
        assert f"trajlab/{svc}/v1/{svc}.proto" in names


def test_contracts_compile_with_package_qualified_imports(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO}", f"--python_out={tmp_path}",
           f"--grpc_python_out={tmp_path}", *map(str, PROTOS)]
    subprocess.run(cmd, check=True, capture_output=True)
    gen = (tmp_path / "trajlab/encoder/v1/encoder_pb2.py").read_text()
    assert "from trajlab.common.v1 import common_pb2" in gen


def test_every_rpc_message_and_field_has_a_comment() -> None:
    decl = re.compile(r"^\s*(rpc |message |enum |service |(repeated |optional )?[\w.]+(<[\w, .]+>)? \w+ = \d+;|\w+ = \d+;)")
    missing = []
    for path in PROTOS:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if decl.match(line) and not line.strip().startswith("//"):
                prev = lines[i - 1].strip() if i else ""
                if not prev.startswith("//"):
                    missing.append(f"{path.relative_to(ROOT)}:{i + 1}: {line.strip()}")
    assert not missing, "undocumented contract elements:\n" + "\n".join(missing)


def test_buf_lint_passes() -> None:
    buf = shutil.which("buf") or str(ROOT / ".tools/node_modules/.bin/buf")
    if not Path(buf).exists():
        msg = "buf is not installed (make lint installs it with npm)"
        if IN_CI:
            pytest.fail(f"CI must not skip: {msg}")
        pytest.skip(msg)
    out = subprocess.run([buf, "lint"], cwd=PROTO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
