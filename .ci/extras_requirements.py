"""Print the requirements of the given extras of pyproject.toml (core dependencies included), one a line.

The Dockerfile installs them from constraints.txt in a layer of their own, before the code is copied, so a
code change does not reinstall the dependencies. References to the project's own extras
(``annotate-anyone[perception-runtime]``) are expanded. Usage: python extras_requirements.py perception-runtime,review
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def requirements(pyproject: dict, extras: list[str]) -> list[str]:
    project = pyproject["project"]
    own = re.compile(rf"^{re.escape(project['name'])}\[([^\]]+)\]\s*$", re.IGNORECASE)
    out: list[str] = list(project["dependencies"])
    seen: set[str] = set()
    todo = [e.strip() for e in extras if e.strip()]
    while todo:
        extra = todo.pop(0)
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in project["optional-dependencies"]:
            raise SystemExit(f"unknown extra {extra!r}; known: {', '.join(project['optional-dependencies'])}")
        for req in project["optional-dependencies"][extra]:
            match = own.match(req)
            if match:
                todo.extend(match.group(1).split(","))
            elif req not in out:
                out.append(req)
    return out


def main() -> None:
    path = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("pyproject.toml")
    extras = sys.argv[1].split(",") if len(sys.argv) > 1 else []
    print("\n".join(requirements(tomllib.loads(path.read_text()), extras)))


if __name__ == "__main__":
    main()
