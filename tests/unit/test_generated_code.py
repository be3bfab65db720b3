"""The committed generated code must match protos/: regenerate into a temp folder and compare."""

from __future__ import annotations

from pathlib import Path

from tools.gen_protos import REPO_ROOT, generate, proto_files


def test_every_proto_has_committed_generated_code_that_matches(tmp_path: Path) -> None:
    assert proto_files(), "no .proto files found under protos/"
    written = generate(tmp_path)
    assert written, "protoc wrote nothing"
    drifted = []
    for fresh in written:
        relative = fresh.relative_to(tmp_path)
        committed = REPO_ROOT / relative
        if not committed.exists() or committed.read_bytes() != fresh.read_bytes():
            drifted.append(str(relative))
    assert not drifted, f"generated code is stale, run `make protos`: {drifted}"
