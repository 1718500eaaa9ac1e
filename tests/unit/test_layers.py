"""Layer directions (issue 18): the domain core imports neither the stream layer nor the application.

Read from the code's own imports (``ast``, every import, also those inside functions):

- the **domain**: :mod:`monitor.core` and the modules it stands on (valuation, windows, forecast,
  profiles, schemas, errors, sensors, holidays, service calendar, geometry) import only each other,
  :mod:`rules`, the standard library and third-party libraries other than Kafka's;
- :mod:`rules` imports from :mod:`monitor` only the vocabulary (errors, schemas), never the core, so
  the two never import each other in both directions;
- nothing in :mod:`monitor` imports :mod:`streams` except the application entry point (the CLI).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

#: the domain modules besides monitor/core/ (dotted names)
DOMAIN = {
    "monitor.valuation",
    "monitor.windows",
    "monitor.forecast",
    "monitor.profiles",
    "monitor.schemas",
    "monitor.errors",
    "monitor.sensors",
    "monitor.holidays",
    "monitor.service_calendar",
    "monitor.geo",
}
#: what rules/ may take from monitor/: the vocabulary shared with the core
RULES_MAY_IMPORT = {"monitor.errors", "monitor.schemas"}
KAFKA_LIBRARIES = {"faust", "aiokafka", "kafka", "prometheus_client"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute dotted names), at any depth of the file."""
    return imports_in(path.read_text())


def imports_in(source: str) -> set[str]:
    """Every module a Python source text imports (absolute dotted names), at any depth."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def project(names: set[str]) -> set[str]:
    """The project's own modules among ``names`` (monitor, rules, streams)."""
    return {n for n in names if n.split(".")[0] in {"monitor", "rules", "streams"}}


def is_domain(name: str) -> bool:
    return (
        name == "monitor.core"
        or name.startswith("monitor.core.")
        or any(name == d or name.startswith(d + ".") for d in DOMAIN)
    )


def domain_files() -> list[Path]:
    files = sorted((ROOT / "monitor" / "core").glob("*.py"))
    files += [ROOT / (d.replace(".", "/") + ".py") for d in sorted(DOMAIN)]
    assert all(f.exists() for f in files), [f for f in files if not f.exists()]
    return files


def test_the_domain_imports_only_the_domain_and_rules_never_streams_or_the_application() -> None:
    wrong = {}
    for path in domain_files():
        names = imports_of(path)
        bad = {n for n in project(names) if not (is_domain(n) or n == "rules" or n.startswith("rules."))}
        bad |= {n for n in names if n.split(".")[0] in KAFKA_LIBRARIES}
        if bad:
            wrong[module_name(path)] = sorted(bad)
    assert not wrong, f"domain modules importing outside the domain: {wrong}"


def test_rules_take_only_the_vocabulary_from_monitor_never_the_core() -> None:
    wrong = {}
    for path in sorted((ROOT / "rules").glob("*.py")):
        bad = {
            n
            for n in project(imports_of(path))
            if n.startswith("monitor") and not any(n == m or n.startswith(m + ".") for m in RULES_MAY_IMPORT)
        }
        if bad:
            wrong[module_name(path)] = sorted(bad)
    assert not wrong, f"rules importing more of monitor than its vocabulary: {wrong}"


def test_only_the_cli_reaches_from_monitor_into_streams() -> None:
    reaching = sorted(
        module_name(p) for p in (ROOT / "monitor").rglob("*.py") if any(n.startswith("streams") for n in imports_of(p))
    )
    assert reaching in ([], ["monitor.cli"]), reaching


def test_the_layer_check_sees_a_violation() -> None:
    """The checks above can fail: an import of streams inside a function is found."""
    assert "streams.worker" in project(imports_in("def f():\n    from streams.worker import Node\n    return Node\n"))
