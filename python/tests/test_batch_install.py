"""The package installs: ``pip install ./python`` into a fresh virtualenv gives ``qilin_shm`` (the
stdlib reader, nothing compiled, no numpy) importable from outside the repository, and
``pip install "./python[numpy]"`` adds numpy and ``qilin_shm.batch``.

pip reaches the package index for the build backend (setuptools) and numpy, as a user's pip does.
It installs from a copy of python/ so that the build leaves nothing (egg-info, build/) in the
checkout."""

import os
import shutil
import subprocess
import sys

from conftest import PYTHON_DIR

TIMEOUT = 900  # seconds: downloads; a watchdog, not a speed check


def run(*cmd, cwd):
    out = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
                         env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")})
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_pip_install_then_import_from_outside_the_repo(tmp_path):
    source = tmp_path / "src" / "python"
    shutil.copytree(PYTHON_DIR, source, ignore=shutil.ignore_patterns(
        "tests", "examples", "__pycache__", "*.egg-info", "build", "requirements-test.txt"))
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(venv), cwd=tmp_path)
    python = str(venv / "bin" / "python")
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source), cwd=tmp_path)
    check = ("import sys, qilin_shm\n"
             "print(qilin_shm.__file__)\n"
             "print(qilin_shm.FINGERPRINT == qilin_shm._layout_fingerprint(qilin_shm.LAYOUT.items(), qilin_shm.COUNTERS), "
             "qilin_shm.RECORD_SIZE)\n"
             "try:\n    import numpy\nexcept ImportError:\n    print('no numpy')\n"
             "try:\n    import qilin_shm.batch\nexcept ImportError:\n    print('no batch')\n")
    lines = run(python, "-c", check, cwd=outside).splitlines()
    assert lines[0].startswith(str(venv)), f"imported from the venv, not the checkout: {lines[0]}"
    assert lines[1:] == ["True 376", "no numpy", "no batch"]
    layout = run(python, "-m", "qilin_shm", "layout", cwd=outside)
    assert '"fingerprint"' in layout

    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{source}[numpy]", cwd=tmp_path)
    check = ("import numpy, qilin_shm\n"
             "from qilin_shm.batch import TICK_DTYPE, Reader\n"
             "print(qilin_shm.batch.__file__)\n"
             "print(TICK_DTYPE.itemsize, TICK_DTYPE['bid_price'].shape)\n")
    lines = run(python, "-c", check, cwd=outside).splitlines()
    assert lines[0].startswith(str(venv)), lines[0]
    assert lines[1] == "376 (5,)"
