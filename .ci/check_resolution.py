"""Check that atm's declared dependencies install on the Pythons it claims (Colab's included).

CI runs on Python 3.11 with the exact pins of requirements.lock; Colab runs 3.12 (and soon 3.13),
where pip resolves setup.py's ranges afresh. This script, with no interpreter for those versions:

1. reads CORE and EXTRAS out of setup.py (as literals, without running setup());
2. checks that every pin in requirements.lock for a declared package lies inside its declared range;
3. resolves CORE + every extra with uv's cross-version resolver for each target Python on
   Colab's platform (x86_64, glibc 2.35; libtpu needs manylinux_2_31 or newer).

It exits non-zero, printing the resolver's explanation, on the first failure.

    python .ci/check_resolution.py [--python 3.12 3.13]
"""
import argparse
import ast
import os
import subprocess
import sys
import tempfile
import time

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLATFORM = "x86_64-manylinux_2_35"


def declared(setup_py):
    """CORE and EXTRAS from setup.py's module-level assignments."""
    tree = ast.parse(open(setup_py).read(), setup_py)
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("CORE", "EXTRAS"):
                found[node.targets[0].id] = ast.literal_eval(node.value)
    missing = {"CORE", "EXTRAS"} - set(found)
    if missing:
        sys.exit(f"check_resolution: {setup_py} has no literal {sorted(missing)} list")
    return found["CORE"], found["EXTRAS"]


def lock_pins(lock_path):
    pins = {}
    for number, line in enumerate(open(lock_path), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "==" not in line:
            sys.exit(f"check_resolution: {lock_path}:{number}: {line!r} is not an exact pin (name==version)")
        name, version = line.split("==", 1)
        pins[canonicalize_name(name)] = version.strip()
    return pins


def check_lock(requirements, pins, lock_path):
    """Every declared package is pinned in the lock, inside its declared range."""
    errors = []
    for text in requirements:
        req = Requirement(text)
        version = pins.get(canonicalize_name(req.name))
        if version is None:
            errors.append(f"{req.name}: declared in setup.py ({text}) but not pinned in {lock_path}")
        elif not req.specifier.contains(version, prereleases=True):
            errors.append(f"{req.name}=={version} in {lock_path} lies outside setup.py's {text}")
    return errors


def resolve(requirements, python_version):
    with tempfile.TemporaryDirectory() as tmp:
        req_in = os.path.join(tmp, "requirements.in")
        with open(req_in, "w") as f:
            f.write("\n".join(requirements) + "\n")
        cmd = [sys.executable, "-m", "uv", "pip", "compile", "--quiet", "--no-header",
               "--python-version", python_version, "--python-platform", PLATFORM, req_in,
               "-o", os.path.join(tmp, "resolved.txt")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        resolved = open(os.path.join(tmp, "resolved.txt")).read() if proc.returncode == 0 else ""
    return proc, resolved


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", nargs="+", default=["3.12", "3.13"], help="target Python versions")
    args = parser.parse_args()
    setup_py = os.path.join(ROOT, "setup.py")
    lock_path = os.path.join(ROOT, "requirements.lock")
    core, extras = declared(setup_py)
    # jax[tpu] and jax[cuda12] name jax itself: only the extras' own packages are lock-checked
    # ("tpu"/"cuda" are not in the CPU lock).
    lock_errors = check_lock(core + extras.get("test", []), lock_pins(lock_path), lock_path)
    if lock_errors:
        print("check_resolution: FAILED: requirements.lock disagrees with setup.py:", file=sys.stderr)
        for error in lock_errors:
            print("  " + error, file=sys.stderr)
        return 1
    everything = core + [r for name in sorted(extras) for r in extras[name]]
    for version in args.python:
        start = time.time()
        proc, resolved = resolve(everything, version)
        if proc.returncode != 0:
            print(f"check_resolution: FAILED: setup.py's dependencies (core + extras {sorted(extras)}) do not "
                  f"resolve for Python {version} on {PLATFORM}:\n{proc.stdout}{proc.stderr}", file=sys.stderr)
            return 1
        count = sum(1 for line in resolved.splitlines() if "==" in line and not line.startswith("#"))
        print(f"check_resolution: Python {version} ({PLATFORM}): core + extras {sorted(extras)} resolve "
              f"to {count} packages in {time.time() - start:.1f}s")
    print(f"check_resolution: requirements.lock pins lie inside setup.py's ranges ({len(core)} core, "
          f"{len(extras.get('test', []))} test)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
