"""Regenerate the committed Python code for protos/ (``make protos``).

protoc names Python modules after the proto package (``sagascope.orders.v1``),
but the code lives under ``sagascope/api/<domain>/v1/`` so that the one import
package holds the API beside the services (temporalio's ``temporalio/api`` is
the model). The proto packages and wire names stay as they are: only the Python
module paths move, so this generator runs protoc into a scratch folder, then
rewrites the generated imports and module names for the new location.
``generate(out_dir)`` is also used by the drift test, which generates into a
temporary folder and compares.
"""

from __future__ import annotations

import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO_ROOT / "protos"
API_PACKAGE = Path("sagascope") / "api"

# Python module references only: `from sagascope.orders.v1 import`, the module name handed to the
# protobuf builder ('sagascope.orders.v1.orders_pb2') and the version-check message's file path.
# Wire names (/sagascope.orders.v1.OrderService/…) and the serialized descriptor stay untouched.
_MODULE_REFERENCES = (
    (re.compile(r"\bfrom sagascope\.(\w+)\.v1 import\b"), r"from sagascope.api.\1.v1 import"),
    (re.compile(r"'sagascope\.(\w+)\.v1\.(\w+_pb2)'"), r"'sagascope.api.\1.v1.\2'"),
    (re.compile(r"generated code in sagascope/(\w+)/v1/"), r"generated code in sagascope/api/\1/v1/"),
)


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.glob("sagascope/**/*.proto"))


def _run_protoc(out_dir: Path, files: list[str]) -> None:
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")


def relocate(source: str) -> str:
    """Rewrite protoc's module references from ``sagascope.<domain>.v1`` to ``sagascope.api.<domain>.v1``."""
    for pattern, replacement in _MODULE_REFERENCES:
        source = pattern.sub(replacement, source)
    return source


def _ensure_packages(out_dir: Path, package_dir: Path) -> None:
    # Regular packages (not namespace ones) so setuptools and mypy find them.
    relative = package_dir.relative_to(out_dir)
    for parent in [relative, *relative.parents]:
        if parent != Path(".") and parent != Path("sagascope"):
            init = out_dir / parent / "__init__.py"
            if not init.exists():
                init.write_text("")


def generate(out_dir: Path) -> list[Path]:
    """Run protoc for every proto file and place the relocated modules under ``out_dir``; return them."""
    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as scratch:
        _run_protoc(Path(scratch), files)
        for proto in files:
            domain_version = Path(proto).parent.relative_to("sagascope")  # e.g. orders/v1
            target = out_dir / API_PACKAGE / domain_version
            target.mkdir(parents=True, exist_ok=True)
            _ensure_packages(out_dir, target)
            for generated in sorted((Path(scratch) / Path(proto).parent).glob("*_pb2*.py*")):
                destination = target / generated.name
                destination.write_text(relocate(generated.read_text()))
                written.append(destination)
    return sorted(set(written))


def main() -> int:
    for path in generate(REPO_ROOT):
        print(path.relative_to(REPO_ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
