"""The benchmark suite (issue #7): `python -m bench.run [--short] [--report PATH]` from the repo root.

A plain folder of scripts, not a workspace package; see bench/README.md.
"""
