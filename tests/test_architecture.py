"""The house rules, checked on the source: imports go down only, `media` stands alone, only
the composition root knows the HTTP face, each room is a package a newcomer can find.

Read from the files with `ast` (every import, including the ones under TYPE_CHECKING and
inside functions), so a rule broken anywhere fails here with the module and the line.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("server", "signaling", "media")

# Layers from the top down. A module may import its own layer or any layer below it.
LAYERS: list[tuple[str, ...]] = [
    # the composition root; server.workers runs it as a front and worker processes
    ("server.__main__", "server.cli", "server.app", "server.workers"),
    ("signaling",),  # the HTTP face
    ("server.tools",),  # the `call` client
    ("server.cluster",),  # shared state and the call registry
    ("server.ops",),  # monitor, quality, metrics, logs
    ("server.calls", "server.translation"),  # the live calls; live interpretation
    ("server.call",),  # one call: session, transport, client events
    ("server.reply",),  # response runs, speculation, heard text, clauses
    ("server.store", "server.persona"),  # durable memory; persona files
    ("server.protocol",),  # wire shapes: events, session config, items
    ("server.turns",),  # turn taking and its options
    ("server.engines",),  # STT, LLM, TTS behind small protocols
    ("server.config", "server.errors"),  # leaves
    ("media",),  # audio plumbing, no project imports
]
COMPOSITION_ROOT = LAYERS[0]


def in_composition_root(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in COMPOSITION_ROOT)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = modules()


def layer_of(module: str) -> int:
    if module in PACKAGES:
        return len(LAYERS) - 1  # a top-level package's (empty) __init__
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer: add its room to LAYERS")


def project_imports(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import of the project's own packages."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from server.protocol import events` imports server.protocol.events.
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in MODULES
                else node.module
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                found.append((name, node.lineno))
    return found


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_imports_go_down_only() -> None:
    wrong = []
    for module, path in MODULES.items():
        here = layer_of(module)
        for imported, line in project_imports(path):
            if layer_of(imported) < here:
                wrong.append(f"{module}:{line} imports {imported} (a layer above)")
    assert not wrong, "\n".join(wrong)


def test_media_imports_nothing_of_the_project() -> None:
    wrong = [
        f"{module}:{line} imports {imported}"
        for module, path in MODULES.items()
        if module.startswith("media")
        for imported, line in project_imports(path)
        if not imported.startswith("media")
    ]
    assert not wrong, "\n".join(wrong)


def test_only_the_composition_root_imports_signaling() -> None:
    wrong = [
        f"{module}:{line} imports {imported}"
        for module, path in MODULES.items()
        if module.startswith("server") and not in_composition_root(module)
        for imported, line in project_imports(path)
        if imported.startswith("signaling")
    ]
    assert not wrong, "\n".join(wrong)


def test_leaves_import_nothing_of_the_project() -> None:
    for leaf in LAYERS[-2]:
        assert project_imports(MODULES[leaf]) == [], leaf


def test_no_module_grows_into_two_concepts() -> None:
    """A module past ~400 lines is usually two; 500 is the hard ceiling."""
    long = {
        module: n
        for module, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > 500
    }
    assert not long, long


def test_no_two_classes_share_a_name() -> None:
    seen: dict[str, str] = {}
    clashes = []
    for module, path in MODULES.items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                if node.name in seen:
                    clashes.append(f"{node.name}: {seen[node.name]} and {module}")
                seen[node.name] = module
    assert not clashes, "\n".join(clashes)


def test_the_domain_raises_no_http_errors() -> None:
    """Statuses belong to `signaling`; the domain names what went wrong (server.errors)."""
    wrong = []
    for module, path in MODULES.items():
        if not module.startswith("server") or in_composition_root(module):
            continue
        source = path.read_text()
        for needle in ("ApiError", "web.HTTP", "status=4", "status=5"):
            if needle in source:
                wrong.append(f"{module} mentions {needle}")
    assert not wrong, "\n".join(wrong)


def test_a_call_state_is_computed_never_assigned() -> None:
    """`RealtimeSession.state` is a property of the call's parts; nothing sets it."""
    from server.call.session import RealtimeSession

    assert isinstance(RealtimeSession.__dict__["state"], property)
    for module, path in MODULES.items():
        if not module.startswith(("server.call", "server.ops")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr == "state":
                    owner = ast.unparse(target.value)
                    assert owner not in ("self", "session"), f"{module}:{node.lineno}"


def test_each_config_default_is_written_once() -> None:
    """Reading an empty environment gives each setting's declared default: the reader has
    no defaults of its own (the generated keys, secret and node id aside)."""
    from server.config import Config

    generated = {
        "api_keys",
        "api_key_generated",
        "admin_keys",
        "admin_key_generated",
        "jwt_secret",
        "jwt_secret_generated",
        "node_id",
        "node_url",
    }
    empty = Config.from_env({})
    declared = Config()
    for spec in dataclasses.fields(Config):
        if spec.name not in generated:
            assert getattr(empty, spec.name) == getattr(declared, spec.name), spec.name
        if spec.metadata.get("env"):
            assert spec.metadata["env"].startswith("HARK_"), spec.name


def test_turn_defaults_have_one_home() -> None:
    """A server left alone gives sessions the turn-taking options' own defaults."""
    from server.config import Config
    from server.turns.options import InterruptionOptions, server_turn_detection

    turn = server_turn_detection(Config.from_env({}))
    assert turn.interruption == InterruptionOptions()
    overridden = server_turn_detection(Config.from_env({"HARK_MIN_INTERRUPTION_MS": "700"}))
    assert overridden.interruption.min_duration_ms == 700
    numbers = ("min_duration_ms", "false_interruption_timeout_ms", "min_words")
    for module, path in MODULES.items():
        if module == "server.turns.options":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(
                "InterruptionOptions"
            ):
                for keyword in node.keywords:
                    value = keyword.value
                    literal = isinstance(value, ast.Constant)
                    assert not (keyword.arg in numbers and literal), f"{module}:{node.lineno}"


@pytest.mark.parametrize(
    "room", ["protocol", "turns", "reply", "call", "calls", "cluster", "ops", "store", "persona"]
)
def test_rooms_are_packages(room: str) -> None:
    assert (ROOT / "server" / room / "__init__.py").exists()
