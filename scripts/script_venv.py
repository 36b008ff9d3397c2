"""The virtual environment of an optional Python script (verify-gguf.py, kvpress-parity.py).

Each script names its environment, the packages to install into it and the modules it needs;
`ensure_venv` returns when those modules import, and otherwise makes the environment on first
use, installs the packages from the package index and re-executes the script inside it.
"""
import importlib
import os
import subprocess
import sys
from pathlib import Path


def ensure_venv(venv, packages, modules, tag, note=""):
    """Returns if `modules` import here; else re-runs the calling script in `venv` (made if needed).

    tag prefixes the messages (the script's name); note is added to the install message.
    """
    try:
        for module in modules:
            importlib.import_module(module)
        return
    except ImportError:
        pass
    venv = Path(venv)
    python = venv / "bin" / "python"
    if Path(sys.prefix).resolve() == venv.resolve():
        sys.exit(f"{tag}: {venv} lacks {'/'.join(modules)} even after installing them")
    if not python.exists():
        print(f"{tag}: creating {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if subprocess.run([str(python), "-c", "import " + ", ".join(modules)], capture_output=True).returncode != 0:
        print(f"{tag}: installing {' '.join(packages)} into {venv}{note}", file=sys.stderr)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *packages],
                       check=True)
    script = os.path.abspath(sys.modules["__main__"].__file__)
    os.execv(str(python), [str(python), script, *sys.argv[1:]])
