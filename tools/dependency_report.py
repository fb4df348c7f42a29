"""Which direct dependencies a venv resolved, beside the newest release on the registry.

    python tools/dependency_report.py [--python VENV/bin/python] [--held-back FILE] [PYPROJECT ...]

The direct dependencies are those the project's pyproject.toml files declare (the package's
and the integrations', optional extras included; the project's own packages left out). For
each, the table gives the range declared, the version installed in the venv (``-`` when an
extra that needs it is not installed there), and the newest release on the registry
(``pip index versions`` through that venv's pip, so the same indexes as its installs).

Exit status 1 when an installed direct dependency is older than the newest release (held
back by a range of ours or by the resolver) and requirements/held_back.toml gives no reason
for it; 2 when the registry could not be asked. `make test-latest` runs this after its install.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HELD_BACK = ROOT / "requirements" / "held_back.toml"


def pyproject_files() -> list[Path]:
    return [ROOT / "pyproject.toml", *sorted(ROOT.glob("integrations/*/pyproject.toml"))]


def direct_dependencies(files: list[Path]) -> dict[str, dict]:
    """name -> {"specs": set of ranges, "where": set of "package[extra]"}, own packages left out."""
    projects = [tomllib.loads(f.read_text(encoding="utf-8"))["project"] for f in files]
    own = {canonicalize_name(p["name"]) for p in projects}
    deps: dict[str, dict] = {}
    for project in projects:
        groups = {"": project.get("dependencies", []), **project.get("optional-dependencies", {})}
        for extra, requirements in groups.items():
            for text in requirements:
                req = Requirement(text)
                name = canonicalize_name(req.name)
                if name in own:
                    continue
                entry = deps.setdefault(name, {"specs": set(), "where": set()})
                if str(req.specifier):
                    entry["specs"].add(str(req.specifier))
                entry["where"].add(f"{project['name']}[{extra}]" if extra else project["name"])
    return deps


def installed_versions(python: str) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json\n"
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}))"
    )
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout
    return {canonicalize_name(name): version for name, version in json.loads(out).items()}


def newest_on_registry(python: str, name: str) -> str | None:
    """The newest release ``pip index versions`` lists (pre-releases left out, as pip does)."""
    proc = subprocess.run(
        [python, "-m", "pip", "index", "versions", name], capture_output=True, text=True
    )
    match = re.search(r"^\S+ \(([^)]+)\)", proc.stdout, re.M)
    return match.group(1) if match else None


def _version(text: str | None) -> Version | None:
    try:
        return Version(text) if text else None
    except InvalidVersion:
        return None


def held_back_reasons(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {canonicalize_name(name): entry for name, entry in data.items() if isinstance(entry, dict)}


def recorded_reason(entry: dict | None, installed: dict[str, str]) -> str | None:
    """The reason an entry gives, if it applies in this venv (``only_with``: a package that
    must be installed for the reason to hold, e.g. the extra that caps the dependency)."""
    if not entry or not str(entry.get("reason", "")).strip():
        return None
    only_with = entry.get("only_with")
    if only_with and canonicalize_name(only_with) not in installed:
        return None
    return " ".join(str(entry["reason"]).split())


def report(python: str, files: list[Path], held_back_file: Path, jobs: int = 8) -> int:
    deps = direct_dependencies(files)
    installed = installed_versions(python)
    reasons = held_back_reasons(held_back_file)
    names = sorted(deps)
    asked = [name for name in names if name in installed]  # an extra not installed here: not asked
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        newest = dict(zip(asked, pool.map(lambda n: newest_on_registry(python, n), asked)))

    rows, unexplained, unreachable, explained = [], [], [], set()
    for name in names:
        have, latest = installed.get(name), newest.get(name)
        ranges = ", ".join(sorted(deps[name]["specs"])) or "any"
        if have is None:
            status = f"not installed ({', '.join(sorted(deps[name]['where']))})"
        elif latest is None:
            status = "registry: no answer"
            unreachable.append(name)
        elif _version(have) is not None and _version(latest) is not None and _version(have) < _version(latest):
            reason = recorded_reason(reasons.get(name), installed)
            if reason:
                status = "held back (recorded)"
                explained.add(name)
            else:
                status = "HELD BACK, no reason recorded"
                unexplained.append(name)
        else:
            status = "newest"
        rows.append((name, ranges, have or "-", latest or ("?" if have else "-"), status))

    header = ("direct dependency", "range", "resolved", "newest on registry", "")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())

    for name in sorted(explained):
        print(f"\n{name}: {recorded_reason(reasons[name], installed)}")
    stale = sorted(set(reasons) - explained)
    if stale:
        notes = [name + (f" (recorded for venvs with {reasons[name]['only_with']})" if reasons[name].get("only_with") else "")
                 for name in stale]
        print(f"\nrecorded in {held_back_file.name} but not held back in this venv: {', '.join(notes)}")
    if unreachable:
        print(f"\nthe registry gave no versions for: {', '.join(unreachable)}", file=sys.stderr)
        return 2
    if unexplained:
        print(
            f"\nheld back without a recorded reason: {', '.join(unexplained)}. Widen the range and "
            f"test it, or record why in {held_back_file.relative_to(ROOT) if held_back_file.is_relative_to(ROOT) else held_back_file}.",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pyproject", nargs="*", type=Path, help="pyproject.toml files (default: the package's and the integrations')")
    parser.add_argument("--python", default=sys.executable, help="the venv's python (default: this one)")
    parser.add_argument("--held-back", type=Path, default=DEFAULT_HELD_BACK, help="reasons for held-back dependencies")
    parser.add_argument("--jobs", type=int, default=8, help="registry queries run at once")
    args = parser.parse_args(argv)
    return report(args.python, args.pyproject or pyproject_files(), args.held_back, args.jobs)


if __name__ == "__main__":
    sys.exit(main())
