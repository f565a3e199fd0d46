"""binder/ installs everything the teaching notebooks import, with the CPU build of PyTorch."""
from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _binder_lines() -> list[str]:
    lines = (BINDER / "requirements.txt").read_text().splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def _installed_by_binder() -> set[str]:
    """Distributions binder/requirements.txt asks for: its own lines plus the package's (and extras') dependencies."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names: set[str] = set()
    for line in _binder_lines():
        if line.startswith("--"):
            continue
        local = re.fullmatch(r"(?:-e\s+)?\.(?:\[([\w,\s-]+)\])?", line)
        if not local:
            names.add(_canonical(Requirement(line).name))
            continue
        names.add(_canonical(project["name"]))
        requirements = list(project["dependencies"])
        for extra in filter(None, (local.group(1) or "").replace(" ", "").split(",")):
            requirements += project["optional-dependencies"][extra]
        for spec in requirements:
            if not spec.startswith(project["name"]):  # "gptoss_lab[plots]" inside another extra
                names.add(_canonical(Requirement(spec).name))
    return names


def _notebook_imports() -> dict[str, set[str]]:
    """Top-level modules each notebook imports or loads as an IPython extension (standard library left out)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        modules: set[str] = set()
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] != "code" or source.startswith("%%"):
                continue  # a %%gptoss cell's body is a prompt, not Python
            python = []
            for line in source.splitlines():
                if line.lstrip().startswith(("%", "!")):
                    if m := re.match(r"\s*%load_ext\s+([\w.]+)", line):
                        modules.add(m.group(1).split(".")[0])
                    python.append("")
                else:
                    python.append(line)
            for node in ast.walk(ast.parse("\n".join(python))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules.add(node.module.split(".")[0])
        found[path.name] = modules - set(sys.stdlib_module_names)
    return found


def test_binder_installs_every_module_the_notebooks_import() -> None:
    installed = _installed_by_binder()
    providers = {module: {_canonical(d) for d in dists} for module, dists in packages_distributions().items()}
    imports = _notebook_imports()
    assert sorted(imports) == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))  # every notebook is read
    missing = {
        f"{name}: {module}"
        for name, modules in imports.items()
        for module in modules
        if not providers.get(module, {_canonical(module)}) & installed
    }
    assert not missing, f"imported by the notebooks but not installed by binder/requirements.txt: {sorted(missing)}"


def test_binder_uses_cpu_torch_and_a_python_the_package_supports() -> None:
    """binder/ asked for `torch>=2.4,<3` and got the newest torch (2.14.1), which no test had run on: it installs the
    one `.ci/run` tests."""
    lines = _binder_lines()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    torch = [Requirement(line) for line in lines if not line.startswith(("-", ".")) and Requirement(line).name == "torch"]
    tested = re.search(r"torch==([\w.+]+)", (ROOT / ".ci" / "run").read_text())
    assert tested and [str(r.specifier) for r in torch] == [f"=={tested.group(1)}"], (torch, tested)
    runtime = (BINDER / "runtime.txt").read_text().strip()
    version = re.fullmatch(r"python-(3\.\d+)", runtime)
    assert version, f"binder/runtime.txt should read python-3.X, not {runtime!r}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(version.group(1) + ".0"), (runtime, requires)


def test_the_lowest_python_the_package_allows_runs_its_dependencies_lowest_versions() -> None:
    """requires-python said >=3.10, but transformers 5.25 (its lowest allowed) needs 3.11: on 3.10 pip found no
    transformers to install. Each dependency installed at its lowest allowed version says which Pythons it runs on."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lowest = min(Version(s.version) for s in SpecifierSet(project["requires-python"]) if s.operator == ">=")
    specs = [*project["dependencies"], *(s for extra in project["optional-dependencies"].values() for s in extra)]
    refused = []
    for requirement in (Requirement(spec) for spec in specs if not spec.startswith(project["name"])):
        floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        try:
            installed = distribution(requirement.name)
        except PackageNotFoundError:
            continue
        runs_on = installed.metadata.get("Requires-Python")
        if floors and Version(installed.version) == max(floors) and runs_on and lowest not in SpecifierSet(runs_on):
            refused.append(f"{requirement.name} {installed.version} needs Python {runs_on}")
    assert not refused, f"requires-python {project['requires-python']} allows {lowest}, but: {refused}"
