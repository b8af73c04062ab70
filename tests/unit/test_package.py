"""What the installed package promises without running anything: its public names and schema head."""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import grimp

import outbox_worker
from outbox_worker import migrate


def test_schema_head_is_the_newest_shipped_revision() -> None:
    """The worker's start-up check expects the revision alembic finds last in the versions."""
    assert migrate.head_revision() == migrate.SCHEMA_HEAD


def test_schema_history_is_the_shipped_history() -> None:
    """The start-up check tells an older schema from a newer one by the history alembic walks."""
    assert list(migrate.SCHEMA_HISTORY) == migrate.history()


def test_public_api_names_resolve() -> None:
    """Every name in __all__ resolves, including the lazily imported RegistrationUpdate."""
    for name in outbox_worker.__all__:
        assert getattr(outbox_worker, name) is not None
    assert outbox_worker.RegistrationUpdate.__name__ == "RegistrationUpdate"


def _readme_python() -> str:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(encoding="utf-8"), flags=re.S)
    return "\n".join(blocks)


def _readme_imports() -> list[tuple[str, str | None]]:
    """(module, name) for each `from outbox_worker... import name` and `import outbox_worker...`."""
    found: list[tuple[str, str | None]] = []
    for line in _readme_python().splitlines():
        if match := re.match(r"\s*import (outbox_worker[\w.]*)", line):
            found.append((match.group(1), None))
    for module, names in re.findall(
        r"from (outbox_worker[\w.]*) import \(?([\w\s,]+?)\)?\n(?!\s+\w+,)", _readme_python()
    ):
        found.extend((module, name.strip()) for name in names.split(",") if name.strip())
    return found


def test_every_name_the_readme_imports_resolves() -> None:
    """Each module and name the README's Python examples import exists where they say."""
    imports = _readme_imports()
    assert ("outbox_worker.payload", "RegistrationUpdate") in imports
    assert ("outbox_worker.django", "enqueue") in imports
    for module, name in imports:
        imported = importlib.import_module(module)
        if name is not None:
            assert getattr(imported, name) is not None, f"{module}.{name}"


def test_every_outbox_worker_attribute_the_readme_uses_resolves() -> None:
    """`outbox_worker.enqueue(...)` and friends in the README name real attributes."""
    used = set(re.findall(r"\boutbox_worker\.(\w+)\b(?!\.)", _readme_python()))
    assert {"enqueue", "enqueue_async"} <= used
    for name in used:
        assert hasattr(outbox_worker, name) or importlib.util.find_spec(f"outbox_worker.{name}")


def _wing(module: str) -> str:
    """A module's node in the package graph: its folder under the root, or the root module."""
    return ".".join(module.split(".")[:2])


def test_the_package_graph_has_no_circle_and_nothing_imports_the_root() -> None:
    """Folders and root modules import each other one way only, and never the public root."""
    graph = grimp.build_graph("outbox_worker")
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if _wing(module) != _wing(imported):
                edges.setdefault(_wing(module), set()).add(_wing(imported))
    importers_of_root = {m for m, targets in edges.items() if "outbox_worker" in targets}
    assert importers_of_root <= {"outbox_worker.__main__"}, importers_of_root
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"import circle: {' -> '.join((*path, node))}"
        if node in done:
            return
        for target in edges.get(node, ()):
            visit(target, (*path, node))
        done.add(node)

    for node in list(edges):
        visit(node, ())


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    """No two modules of the package import each other, even inside TYPE_CHECKING or a function."""
    graph = grimp.build_graph("outbox_worker")
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            assert not graph.direct_import_exists(importer=imported, imported=module), (
                module,
                imported,
            )


def test_importing_the_package_imports_no_optional_driver() -> None:
    """psycopg, psycopg2 and Django stay unimported until a caller passes their objects."""
    probe = (
        "import sys, outbox_worker, outbox_worker.drivers, outbox_worker.enqueue\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in OPTIONAL)\n"
        "print(loaded)\n"
    )
    optional = "OPTIONAL = {'psycopg', 'psycopg2', 'django'}\n"
    done = subprocess.run(
        [sys.executable, "-c", optional + probe], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_outbox_worker_django_without_django_names_the_extra() -> None:
    """Where Django is not installed, importing outbox_worker.django says which extra to install."""
    probe = (
        "import sys\n"
        "sys.modules['django'] = None  # as if Django were not installed\n"
        "try:\n"
        "    import outbox_worker.django\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == (
        "outbox_worker.django needs Django: pip install 'outbox-worker[django]'"
    )
