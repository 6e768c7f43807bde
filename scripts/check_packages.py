"""Check that every workspace package declares what it imports, and that each service installs alone.

    check_packages.py imports   every import in libs/*/src and services/*/src names a distribution
                                the package declares in its pyproject.toml (or the stdlib, or itself)
    check_packages.py installs  each service synced alone from uv.lock into a throwaway environment
                                imports its app module

The workspace .venv holds every package, so an undeclared import works there and breaks only in
an image or a venv built for one service; these checks catch it before that.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Package:
    name: str  # normalised distribution name, `hostdev-gateway`
    module: str  # import name, `hostdev_gateway`
    src: Path  # the module's directory
    declared: frozenset[str]  # normalised names from [project].dependencies
    is_service: bool


def normalise(distribution: str) -> str:
    """PEP 503 normalisation, so `PyYAML` and `pyyaml` compare equal."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise SystemExit(f"check_packages: unreadable requirement {requirement!r}")
    return normalise(match.group(1))


def workspace() -> list[Package]:
    packages = []
    for kind in ("libs", "services"):
        for pyproject in sorted((REPO / kind).glob("*/pyproject.toml")):
            project = tomllib.loads(pyproject.read_text())["project"]
            (src,) = [p for p in (pyproject.parent / "src").iterdir() if p.is_dir()]
            declared = frozenset(requirement_name(r) for r in project.get("dependencies", []))
            packages.append(
                Package(normalise(project["name"]), src.name, src, declared, kind == "services")
            )
    return packages


# --- imports ----------------------------------------------------------------------------------


def imported_modules(source: Path) -> set[str]:
    """Absolute imports, with `from a import b` also giving `a.b` (b may be a submodule)."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


class Owners:
    """Which installed distribution a module comes from."""

    def __init__(self, packages: list[Package]) -> None:
        self._workspace = {p.module: p.name for p in packages}
        self._by_top = importlib.metadata.packages_distributions()

    def owner(self, module: str) -> str | None:
        """The distribution of `module`; None for a name that is not a module (an attribute)."""
        top = module.partition(".")[0]
        if top in self._workspace:
            return self._workspace[top]
        candidates = {normalise(d) for d in self._by_top.get(top, ())}
        if len(candidates) <= 1:
            return candidates.pop() if candidates else f"<not installed: {top}>"
        return self._owner_in_namespace(module, candidates)

    @staticmethod
    def _owner_in_namespace(module: str, candidates: set[str]) -> str | None:
        """A namespace package (`google`, `opentelemetry`): the dist holding the module's file."""
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return None
        if spec is None or spec.origin is None or not spec.has_location:
            return None
        origin = Path(spec.origin).resolve()
        for name in sorted(candidates):
            dist = importlib.metadata.distribution(name)
            if any(Path(str(dist.locate_file(f))).resolve() == origin for f in dist.files or ()):
                return name
        return f"<unowned: {origin}>"


def undeclared_imports(packages: list[Package]) -> list[str]:
    owners = Owners(packages)
    stdlib = sys.stdlib_module_names
    problems = []
    for package in packages:
        missing: dict[str, set[str]] = {}
        for source in sorted(package.src.rglob("*.py")):
            for module in imported_modules(source):
                top = module.partition(".")[0]
                if top in stdlib or top == package.module or top == "__future__":
                    continue
                owner = owners.owner(module)
                if owner is not None and owner not in package.declared:
                    missing.setdefault(owner, set()).add(source.relative_to(REPO).as_posix())
        problems += [
            f"{package.name} imports {owner} without declaring it ({', '.join(sorted(files))})"
            for owner, files in sorted(missing.items())
        ]
    return problems


# --- installs ---------------------------------------------------------------------------------


def install_and_import(package: Package, uv: str) -> tuple[str, float, str | None]:
    """Sync `package` alone from uv.lock into a temp venv and import its app; the error if any."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"{package.module}-") as scratch:
        env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(Path(scratch) / "venv")}
        env.pop("VIRTUAL_ENV", None)
        sync = [uv, "sync", "--quiet", "--locked", "--no-dev", "--package", package.name]
        sync += ["--python", sys.executable]
        # Offline first: every wheel is in the uv cache once the workspace .venv was synced.
        done = subprocess.run([*sync, "--offline"], cwd=REPO, env=env, capture_output=True)
        if done.returncode != 0:
            done = subprocess.run(sync, cwd=REPO, env=env, capture_output=True)
        if done.returncode != 0:
            return package.name, time.monotonic() - started, done.stderr.decode()
        python = Path(scratch) / "venv" / "bin" / "python"
        app = f"{package.module}.app"
        done = subprocess.run(
            [str(python), "-c", f"import {app}"], env=env, capture_output=True, cwd=scratch
        )
        error = None if done.returncode == 0 else f"import {app}: {done.stderr.decode()}"
        return package.name, time.monotonic() - started, error


def check_installs(packages: list[Package]) -> list[str]:
    uv = shutil.which("uv", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if uv is None:
        raise SystemExit("check_packages: uv not found (run through ./dev)")
    services = [p for p in packages if p.is_service]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        results = list(pool.map(lambda p: install_and_import(p, uv), services))
    for name, seconds, error in results:
        print(f"  {name}: {'ok' if error is None else 'FAILED'} in {seconds:.1f} s")
    print(f"check_packages: {len(services)} services in {time.monotonic() - started:.1f} s")
    return [f"{name} does not install and import alone:\n{e}" for name, _, e in results if e]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=["imports", "installs"])
    args = parser.parse_args()
    packages = workspace()
    problems = undeclared_imports(packages) if args.check == "imports" else check_installs(packages)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
