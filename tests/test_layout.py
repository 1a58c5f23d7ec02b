"""The app's layout: no import cycle among its modules, and no package importing one above it (counting
the imports made inside functions)."""

import ast
from pathlib import Path

import observers_app

APP_DIR = Path(observers_app.__file__).parent


def module_names(package_dir: Path) -> dict[str, Path]:
    """Every module of the package under ``package_dir``, by dotted name (a package by its own name)."""
    names: dict[str, Path] = {}
    for path in package_dir.rglob("*.py"):
        parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module ``name`` imports anywhere (at module level or in a function)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from x import y` imports the module x.y when there is one, else a name of x.
            found.update(
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
            )
    return {module for module in found if module in modules and module != name}


def import_cycle(package_dir: Path) -> list[str]:
    """One import cycle among the package's modules (its first module repeated at the end), or []."""
    modules = module_names(package_dir)
    graph = {name: sorted(imported_modules(name, path, modules)) for name, path in modules.items()}
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str]:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return []
        path.append(module)
        for imported in graph[module]:
            if cycle := visit(imported):
                return cycle
        path.pop()
        done.add(module)
        return []

    for module in sorted(graph):
        if cycle := visit(module):
            return cycle
    return []


# The app's layers, lowest first. A module may import its own layer and those below, never one above.
# The top-level modules every Django app has sit at both ends: the foundation that everything uses,
# and the surface that Django, Celery and host projects call (the public API among them).
FOUNDATION: tuple[str, ...] = ("conf", "exceptions", "deprecation", "db", "globs", "models", "querysets")
FOUNDATION += ("validation", "registry", "wiring", "signals", "aio")
PACKAGES: tuple[str, ...] = (
    "telemetry",
    "publishing",
    "history",
    "observers",
    "owners",
    "worker",
    "webhooks",
)
PACKAGES += ("upkeep", "sources", "streams")
SURFACE: tuple[str, ...] = ("manager", "admin", "tasks", "apps", "checks", "urls", "views", "management")
SURFACE += ("migrations",)
# Deprecated import paths (each a module ``__getattr__`` over deprecation.moved), removed in 0.4.
SURFACE += ("events", "session_store", "poison", "sender", "publisher", "backpressure")
LAYERS = (("observers_app",), FOUNDATION, *((package,) for package in PACKAGES), SURFACE)


def layer_of(module: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> int:
    """The index of the layer holding ``module`` (by its first part below the app's package)."""
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else parts[0]
    for index, members in enumerate(layers):
        if name in members:
            return index
    raise AssertionError(f"{module} is in no layer: add {name!r} to LAYERS in tests/test_layout.py")


def upward_imports(package_dir: Path, layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    """Every import from a module to one in a higher layer, as "importer -> imported"."""
    modules = module_names(package_dir)
    return sorted(
        f"{name} -> {imported}"
        for name, path in modules.items()
        for imported in imported_modules(name, path, modules)
        if layer_of(imported, layers) > layer_of(name, layers)
    )


def test_no_package_imports_a_higher_one():
    assert upward_imports(APP_DIR) == []


def test_an_upward_import_is_found(tmp_path: Path):
    package = tmp_path / "pkg"
    (package / "low").mkdir(parents=True)
    (package / "high").mkdir()
    for init in (package, package / "low", package / "high"):
        (init / "__init__.py").write_text("")
    (package / "base.py").write_text("")
    (package / "high" / "a.py").write_text("from ..low import b\nfrom .. import base\n")
    (package / "low" / "b.py").write_text("def f():\n    from ..high import a\n")
    layers = (("pkg",), ("base",), ("low",), ("high",))
    assert upward_imports(package, layers) == ["pkg.low.b -> pkg.high.a"]


def test_the_app_has_no_import_cycle():
    cycle = import_cycle(APP_DIR)
    assert not cycle, f"import cycle: {' -> '.join(cycle)}"


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "b.py").write_text("import pkg.c\n")
    (package / "c.py").write_text("def f():\n    from . import a\n")
    (package / "d.py").write_text("from pkg import c\n")
    assert import_cycle(package) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
