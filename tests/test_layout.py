"""The app's layout: no import cycle among its modules, counting the imports made inside functions."""

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
