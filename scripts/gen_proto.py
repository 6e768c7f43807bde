"""Generate (or, with --check, verify) the kubelet gRPC Python code from proto/."""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "proto"
OUT_ROOT = REPO / "libs" / "kubelet_pb" / "src"
PACKAGE = "hostdev_kubelet_pb"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", ".pyi")


def proto_files() -> list[Path]:
    """Every .proto under proto/, relative to the import root, in a stable order."""
    return sorted(p.relative_to(PROTO_ROOT) for p in PROTO_ROOT.rglob("*.proto"))


def run_protoc(out_dir: Path) -> None:
    """Compile all protos into out_dir with the protobuf, grpc and mypy-protobuf generators."""
    protos = proto_files()
    if not protos:
        raise SystemExit(f"gen_proto: no .proto files under {PROTO_ROOT}")
    bin_dir = Path(sys.executable).parent
    # The mypy plugins are console scripts of the same environment as this interpreter.
    env = dict(os.environ, PATH=os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]))
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        "-I",
        str(PROTO_ROOT),
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *(str(p) for p in protos),
    ]
    # Relative proto paths keep absolute checkout paths out of the generated descriptors.
    result = subprocess.run(cmd, cwd=PROTO_ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        # mypy-protobuf chatters on stderr on success; show the output only when it matters.
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"gen_proto: protoc failed with exit code {result.returncode}")


def generated_files(root: Path) -> set[Path]:
    """Generated files under root/hostdev_kubelet_pb, relative to root."""
    pkg = root / PACKAGE
    if not pkg.is_dir():
        return set()
    return {
        p.relative_to(root)
        for p in pkg.rglob("*")
        if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)
    }


def package_dirs(root: Path) -> list[Path]:
    """Directories under root/hostdev_kubelet_pb (inclusive) that hold generated code."""
    dirs: set[Path] = set()
    for rel in generated_files(root):
        parent = rel.parent
        while parent != Path("."):
            dirs.add(parent)
            parent = parent.parent
    return sorted(dirs)


def init_docstring(package_dir: Path) -> str:
    dotted = ".".join(package_dir.parts)
    return f'"""Generated kubelet gRPC code: {dotted}."""\n'


def ensure_package_files(root: Path) -> list[Path]:
    """Create missing __init__.py files and py.typed; return what was created."""
    created: list[Path] = []
    for rel_dir in package_dirs(root):
        init = root / rel_dir / "__init__.py"
        if not init.exists():
            init.write_text(init_docstring(rel_dir))
            created.append(init)
    marker = root / PACKAGE / "py.typed"
    if not marker.exists():
        marker.write_text("")
        created.append(marker)
    return created


def compare(fresh_root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """Generated files that are missing, extra and stale in OUT_ROOT compared to fresh_root."""
    fresh = generated_files(fresh_root)
    committed = generated_files(OUT_ROOT)
    stale = [
        rel
        for rel in sorted(fresh & committed)
        if not filecmp.cmp(fresh_root / rel, OUT_ROOT / rel, shallow=False)
    ]
    return sorted(fresh - committed), sorted(committed - fresh), stale


def generate() -> int:
    # Generating aside and copying only what changed removes outputs of deleted protos and
    # leaves untouched files (and their mtimes) alone.
    with tempfile.TemporaryDirectory(prefix="gen_proto-") as tmp:
        fresh_root = Path(tmp)
        run_protoc(fresh_root)
        missing, extra, stale = compare(fresh_root)
        for rel in [*missing, *stale]:
            target = OUT_ROOT / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fresh_root / rel, target)
            print(f"wrote {target.relative_to(REPO)}")
        for rel in extra:
            (OUT_ROOT / rel).unlink()
            print(f"removed {(OUT_ROOT / rel).relative_to(REPO)}")
        total = len(generated_files(fresh_root))
    for path in ensure_package_files(OUT_ROOT):
        print(f"created {path.relative_to(REPO)}")
    print(f"{total} generated files under {OUT_ROOT.relative_to(REPO)} are up to date")
    return 0


def check() -> int:
    with tempfile.TemporaryDirectory(prefix="gen_proto-") as tmp:
        fresh_root = Path(tmp)
        run_protoc(fresh_root)
        missing, extra, stale = compare(fresh_root)
        problems = [f"missing: {rel}" for rel in missing]
        problems += [f"extra: {rel}" for rel in extra]
        problems += [f"stale: {rel}" for rel in stale]
        for rel_dir in package_dirs(fresh_root):
            if not (OUT_ROOT / rel_dir / "__init__.py").is_file():
                problems.append(f"missing: {rel_dir / '__init__.py'}")
        if not (OUT_ROOT / PACKAGE / "py.typed").is_file():
            problems.append(f"missing: {Path(PACKAGE) / 'py.typed'}")
        total = len(generated_files(fresh_root))
    for line in problems:
        print(line)
    if problems:
        print("generated kubelet code is out of date; run scripts/gen_proto.py", file=sys.stderr)
        return 1
    print(f"generated kubelet code is up to date ({total} files)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check",
        action="store_true",
        help="generate into a temporary directory and compare with the committed files",
    )
    args = parser.parse_args(argv)
    return check() if args.check else generate()


if __name__ == "__main__":
    sys.exit(main())
