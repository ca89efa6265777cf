"""What `pip install .` puts beside the installed packages: the shipped models and the demo.

Model names are looked for beside the installed ``engine`` package first
(engine.runtime.model), so an install used from any folder finds them only if the wheel
carries every file of their folders.
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("resources/demo", "resources/models/default", "resources/models/teacher")


def test_the_wheel_carries_every_file_of_the_shipped_models_and_the_demo() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = set(tool["packages"]["find"]["include"])
    data = tool["package-data"]
    for folder in SHIPPED:
        package = folder.replace("/", ".")
        assert package in packages, package
        patterns = [*data.get(package, []), *data.get("*", [])]
        files = [p.name for p in (ROOT / folder).iterdir() if p.is_file()]
        assert files, folder
        for name in files:
            assert any(fnmatch.fnmatch(name, pat) for pat in patterns), f"{folder}/{name}"
