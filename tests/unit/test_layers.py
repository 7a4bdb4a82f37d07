"""The packages import one way: inventory -> plan -> run -> output, drivers and labs beside.

ARCHITECTURE.md draws the same map. Every import counts, lazy ones inside functions and
those under TYPE_CHECKING too: they all couple the modules. A new cycle or an import
against the flow fails here with the modules named.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import rollup

ROOT = Path(rollup.__file__).parent

# The shared vocabulary every layer may use.
BASE = (
    "rollup",
    "rollup.errors",
    "rollup.model",
    "rollup.codec",
    "rollup.bundled",
    "rollup.values",
    "rollup.text.*",
)
DRIVER_CONTRACT = ("rollup.drivers", "rollup.drivers.registry")
# Module (or package.*) -> what it may import besides itself and its own package.
RULES: dict[str, tuple[str, ...]] = {
    "rollup": (),
    "rollup.errors": BASE,
    "rollup.model": BASE,
    "rollup.codec": BASE,
    "rollup.bundled": BASE,
    "rollup.values": BASE,
    "rollup.text.*": BASE,
    "rollup.remote.*": BASE,
    "rollup.drivers": (*BASE, "rollup.remote"),
    "rollup.drivers.registry": (
        *BASE,
        "rollup.drivers",
        "rollup.drivers.xenapi",
        "rollup.drivers.libvirt",
        "rollup.drivers.proxmox",
    ),
    "rollup.drivers.run_lock": (*BASE, "rollup.remote.*", "rollup.drivers"),
    # What drivers that reach hosts over SSH share: a command, a lock in a file.
    "rollup.drivers.host_shell": (*BASE, "rollup.remote.*"),
    "rollup.drivers.host_file_lock": (*BASE, "rollup.remote.*", "rollup.drivers.host_shell"),
    "rollup.drivers.xenapi.*": (
        *BASE,
        "rollup.remote.*",
        "rollup.drivers",
        "rollup.drivers.run_lock",
    ),
    "rollup.drivers.libvirt.*": (
        *BASE,
        "rollup.remote.*",
        "rollup.drivers",
        "rollup.drivers.run_lock",
        "rollup.drivers.host_shell",
        "rollup.drivers.host_file_lock",
    ),
    "rollup.drivers.proxmox.*": (
        *BASE,
        "rollup.remote.*",
        "rollup.drivers",
        "rollup.drivers.run_lock",
        "rollup.drivers.host_shell",
        "rollup.drivers.host_file_lock",
    ),
    "rollup.lab": BASE,
    "rollup.lab.*": (*BASE, "rollup.remote.*", "rollup.lab"),
    "rollup.lab.xapi.*": (*BASE, "rollup.remote.*", "rollup.lab", "rollup.lab.*"),
    "rollup.lab.libvirt.*": (*BASE, "rollup.remote.*", "rollup.lab", "rollup.lab.*"),
    # The Proxmox lab is the same simulated pool behind another API.
    "rollup.lab.proxmox.*": (*BASE, "rollup.remote.*", "rollup.lab", "rollup.lab.*"),
    "rollup.config.*": (*BASE, "rollup.remote", *DRIVER_CONTRACT, "rollup.lab"),
    "rollup.plan.*": (*BASE, "rollup.config.*", *DRIVER_CONTRACT),
    "rollup.run.*": (*BASE, "rollup.remote", "rollup.config.*", "rollup.plan.*", *DRIVER_CONTRACT),
    "rollup.output.*": (*BASE, "rollup.config.*", "rollup.plan.*", "rollup.run.*"),
    # The TUI reads events and the plan and sends commands; it never drives a host.
    "rollup.tui.*": (
        *BASE,
        "rollup.plan.*",
        "rollup.output.*",
        "rollup.run.events",
        "rollup.run.follow",
        "rollup.run.journal",
    ),
    "rollup.commands.*": ("rollup.*",),
    "rollup.cli": (*BASE, "rollup.commands.*", "rollup.config.inventory", "rollup.run.journal"),
    "rollup.__main__": ("rollup.cli",),
}
# Siblings that must not know each other even where a rule's wildcard would allow it.
STRANGERS = (
    ("rollup.drivers.xenapi", "rollup.drivers.libvirt"),
    ("rollup.drivers.xenapi", "rollup.drivers.proxmox"),
    ("rollup.drivers.libvirt", "rollup.drivers.proxmox"),
    ("rollup.lab.xapi", "rollup.lab.libvirt"),
    ("rollup.lab.proxmox", "rollup.lab.libvirt"),
)


def module_names(root: Path = ROOT) -> dict[str, Path]:
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names[name] = path
    return names


def _typing_only(tree: ast.Module) -> set[int]:
    """Ids of the import nodes under `if TYPE_CHECKING:`."""
    nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            nodes.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return nodes


def imports(modules: Mapping[str, Path], typing: bool = True) -> dict[str, set[str]]:
    """Module -> the rollup modules it imports (a package's names resolved to modules).

    `typing=False` leaves out what is imported for annotations only (`if TYPE_CHECKING`).
    """
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        tree = ast.parse(path.read_text())
        skip = set() if typing else _typing_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                submodules = {f"{base}.{a.name}" for a in node.names} & modules.keys()
                found.update(submodules)
                # `from package import submodule` uses no name of the package's __init__:
                # only names defined there make the package itself a dependency.
                if base in modules and len(submodules) < len(node.names):
                    found.add(base)
        found.discard(name)
        graph[name] = found
    return graph


def _matches(module: str, pattern: str) -> bool:
    if pattern.endswith(".*"):
        stem = pattern[:-2]
        return module == stem or module.startswith(stem + ".")
    return module == pattern


def _rule(module: str) -> tuple[str, tuple[str, ...]] | None:
    """The most specific rule for `module`: an exact name first, then the longest package."""
    if module in RULES:
        return module, RULES[module]
    best = None
    for pattern, allowed in RULES.items():
        longer = best is None or len(pattern) > len(best[0])
        if pattern.endswith(".*") and _matches(module, pattern) and longer:
            best = (pattern, allowed)
    return best


def against_the_flow(graph: Mapping[str, Iterable[str]]) -> list[str]:
    wrong = []
    for module, targets in sorted(graph.items()):
        rule = _rule(module)
        if rule is None:
            wrong.append(f"{module} has no place in the layer rules: add it to RULES")
            continue
        pattern, allowed = rule
        own = pattern[:-2] if pattern.endswith(".*") else module
        for target in sorted(targets):
            if _matches(target, own + ".*"):
                continue
            if any(_matches(target, p) for p in allowed):
                continue
            wrong.append(f"{module} imports {target}")
        for a, b in STRANGERS:
            for left, right in ((a, b), (b, a)):
                if module.startswith(left):
                    wrong += [f"{module} imports {t}" for t in targets if t.startswith(right)]
    return sorted(set(wrong))


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    # A part of the lab's pool names the pool in its annotations only (TYPE_CHECKING):
    # not a cycle when the program runs. The layer rules below see those imports too.
    assert cycles(imports(module_names(), typing=False)) == []


def test_imports_follow_the_flow():
    assert against_the_flow(imports(module_names())) == []


def test_the_checks_catch_a_cycle_and_an_import_against_the_flow():
    # The rules above would be worthless if they could not fail: the old faults.
    graph = {
        "rollup.cli": {"rollup.commands.run"},
        "rollup.commands.run": {"rollup.cli"},
        "rollup.plan.checks": {"rollup.output.report"},
        "rollup.tui.state": {"rollup.run.host_upgrade"},
        "rollup.remote.patcher": {"rollup.run.context"},
        "rollup.drivers.libvirt.lock": {"rollup.drivers.xenapi.lock"},
        "rollup.output.report": set(),
        "rollup.run.host_upgrade": set(),
        "rollup.run.context": set(),
        "rollup.drivers.xenapi.lock": set(),
    }
    assert cycles(graph) == [["rollup.cli", "rollup.commands.run"]]
    assert against_the_flow(graph) == [
        "rollup.cli imports rollup.commands.run"
        if False
        else "rollup.drivers.libvirt.lock imports rollup.drivers.xenapi.lock",
        "rollup.plan.checks imports rollup.output.report",
        "rollup.remote.patcher imports rollup.run.context",
        "rollup.tui.state imports rollup.run.host_upgrade",
    ]


def test_every_exception_class_is_in_errors():
    # The lab's simulated xapi and PVE API raise their own wire errors: the servers', not
    # ours.
    allowed = {"rollup.errors", "rollup.lab.xapi.failure", "rollup.lab.proxmox.failure"}
    elsewhere = []
    for name, path in module_names().items():
        if name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name)
                and (b.id.endswith(("Error", "Exception")) or b.id in _ERRORS)
                for b in node.bases
            ):
                elsewhere.append(f"{name}.{node.name}")
    assert elsewhere == []


_ERRORS = {"BadInput", "Refused", "LockHeld", "HostFailed", "HostSkipped", "Problem", "RollupError"}


def test_no_module_is_over_400_lines():
    long = {
        name: n
        for name, path in module_names().items()
        if (n := len(path.read_text().splitlines())) > 400
    }
    assert long == {}
