"""pytest set-up shared by python/tests: the package on sys.path (the tests run from a checkout, not
an installed copy) and the workspace's binaries.

``scripts/test`` runs pytest with ``QILIN_BIN_DIR=<target>/debug`` after ``cargo test`` built the
binaries. A test that needs one (``qilinctl``, ``qilin-core``) fails naming what is missing; it never
skips.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.abspath(os.path.join(HERE, ".."))
REPO = os.path.abspath(os.path.join(PYTHON_DIR, ".."))
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def qilin_bin(name):
    """Path of a workspace binary in $QILIN_BIN_DIR; raises (fails the test) if it is not there."""
    bin_dir = os.environ.get("QILIN_BIN_DIR")
    if not bin_dir:
        raise AssertionError(
            f"QILIN_BIN_DIR is not set: it names the cargo target directory holding {name} "
            f"(scripts/test sets it; by hand: cargo build --workspace --bins, then "
            f"QILIN_BIN_DIR=target/debug)")
    path = os.path.join(bin_dir, name)
    if not os.access(path, os.X_OK):
        raise AssertionError(f"{path} is missing: build it (cargo build --workspace --bins) or fix QILIN_BIN_DIR")
    return path
