# dra-driver-hostdev: every command a developer or CI runs. Run through ./dev, which sets up .venv.
set shell := ["bash", "-euo", "pipefail", "-c"]

py := ".venv/bin/python"

# List the recipes.
default:
    @just --list

# Install the workspace into .venv exactly as uv.lock says.
[group('setup')]
sync:
    uv sync --locked

# Format the code.
[group('dev')]
fmt:
    ruff format .
    ruff check --fix .

# ruff, mypy --strict and the import contracts.
[group('check')]
lint:
    ruff format --check .
    ruff check .
    mypy libs/*/src services/*/src scripts tests bench libs/*/tests/*.py services/*/tests/*.py
    lint-imports

# Regenerate the kubelet gRPC code from proto/.
[group('proto')]
proto:
    {{py}} scripts/gen_proto.py

# Fail when the generated kubelet code differs from what proto/ produces.
[group('proto')]
proto-check:
    {{py}} scripts/gen_proto.py --check

# The whole pytest suite (flows on a real nats-server, real unix sockets).
[group('check')]
test *args:
    {{py}} -m pytest -q {{args}}

# The fuzz tests in the long mode (HOSTDEV_FUZZ=long: 10,000 inputs per entry point, or
# HOSTDEV_FUZZ_EXAMPLES), in four processes; prints the inputs fed to each entry point.
[group('check')]
fuzz *args:
    {{py}} scripts/fuzz_long.py {{args}}

# Each package declares what it imports; each service installs from uv.lock alone and imports.
[group('check')]
packages:
    {{py}} scripts/check_packages.py imports
    {{py}} scripts/check_packages.py installs

# Everything CI runs: lint, proto-check, the package checks and the tests.
[group('check')]
ci: lint proto-check packages test

# The demo on a simulated node: NATS, API emulator, five services, kubelet simulator.
[group('run')]
demo *args:
    {{py}} -m hostdev_testing.demo {{args}}

# Benchmarks on the real services and a real nats-server (--short for a quick pass).
[group('run')]
bench *args:
    {{py}} bench/run.py {{args}}

# The hostdev command (inventory, slices, claims, prepare, unprepare, doctor).
[group('run')]
[positional-arguments]
hostdev *args:
    .venv/bin/hostdev "$@"

# The fault-injection campaign: SIGKILL every process at every point it waits (--short: a spread).
[group('run')]
chaos *args:
    {{py}} -m hostdev_testing.chaos {{args}}
