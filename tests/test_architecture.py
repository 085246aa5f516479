"""The layer rules of docs/architecture.md, checked on the source: which module may import which.

Every module of chip/ and reader/ is parsed, never imported, and each import statement is
resolved to the module it names: `import x.y`, `from x import y` (x.y when that is a module,
else x), relative imports, and imports inside functions or under `if TYPE_CHECKING:` alike.
Importing a package by name also imports what its `__init__` imports (`from chip import Card`
brings chip.card). One test per rule, parametrized by the modules the rule binds; the last
tests feed the checker sources that break a rule, so a checker that sees nothing fails.
"""

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from helpers import ROOT

LAYERED = ("chip", "reader")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for top in LAYERED for path in sorted((ROOT / top).rglob("*.py"))}
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def direct_imports(source: str, module: str, is_package: bool = False) -> dict[str, int]:
    """The modules `source` (the text of `module`) names in its import statements: name -> first line."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if node.level > len(here):
                    raise ValueError(f"{module}:{node.lineno}: relative import beyond the top-level package")
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for name in names:
            found.setdefault(name, node.lineno)
    return found


@cache
def package_imports(package: str) -> dict[str, int]:
    return direct_imports(MODULES[package].read_text(encoding="utf-8"), package, is_package=True)


def imports(source: str, module: str, is_package: bool = False) -> dict[str, int]:
    """What importing `module` brings, by name: its own imports, and for each package among them
    what that package's `__init__` imports (through further packages too). Name -> line in `source`."""
    found = direct_imports(source, module, is_package)
    todo = list(found.items())
    while todo:
        name, line = todo.pop()
        if name in PACKAGES and name != module:
            for inner in package_imports(name):
                if inner not in found:
                    found[inner] = line
                    todo.append((inner, line))
    return found


@dataclass(frozen=True)
class Rule:
    """Modules under `subjects` (but not under `exempt`) never import under `forbidden`; and when
    `within` is set, whatever they import under `within` is under one of `allowed`."""

    text: str
    subjects: tuple
    forbidden: tuple = ()
    within: str | None = None
    allowed: tuple = ()
    exempt: tuple = ()

    def binds(self, module: str) -> bool:
        return (any(under(module, p) for p in self.subjects)
                and not any(under(module, p) for p in self.exempt))

    def broken_by(self, target: str) -> bool:
        if any(under(target, p) for p in self.forbidden):
            return True
        return (self.within is not None and under(target, self.within)
                and not any(under(target, p) for p in self.allowed))

    def violations(self, module: str, source: str | None = None) -> list[str]:
        """One line per import of `module` that breaks the rule (source: the module's file)."""
        if not self.binds(module):
            return []
        is_package = module in PACKAGES
        if source is None:
            source = MODULES[module].read_text(encoding="utf-8")
        return [f"{module} line {line} imports {target}: {self.text}"
                for target, line in sorted(imports(source, module, is_package).items(), key=lambda kv: kv[1])
                if self.broken_by(target)]


CHIP_NOT_READER = Rule("chip never imports reader", ("chip",), forbidden=("reader",))
ISO = Rule("chip.iso imports nothing else of chip", ("chip.iso",), within="chip", allowed=("chip.iso",))
KERNEL = Rule("chip.kernel imports only chip.iso", ("chip.kernel",), within="chip",
              allowed=("chip.iso", "chip.kernel"))
APPS = Rule("chip.apps imports only chip.iso and chip.kernel", ("chip.apps",), within="chip",
            allowed=("chip.iso", "chip.kernel", "chip.apps"))
CONTACTS = Rule("chip.contacts imports only chip.iso and chip.kernel", ("chip.contacts",), within="chip",
                allowed=("chip.iso", "chip.kernel", "chip.contacts"))
PERSONALIZATION = Rule("chip.personalization imports neither chip.card nor chip.faults nor chip.fleet",
                       ("chip.personalization",), forbidden=("chip.card", "chip.faults", "chip.fleet"))
LINK = Rule("reader.link imports none of reader.terminals, traces, decode, cli, pcsc", ("reader.link",),
            forbidden=("reader.terminals", "reader.traces", "reader.decode", "reader.cli", "reader.pcsc"))
TERMINALS = Rule("reader.terminals imports none of reader.cli, decode, traces, pcsc", ("reader.terminals",),
                 forbidden=("reader.cli", "reader.decode", "reader.traces", "reader.pcsc"))
CCID = Rule("reader.ccid (the CCID reader firmware) imports none of reader.terminals, traces, decode, cli, pcsc",
            ("reader.ccid",), forbidden=("reader.terminals", "reader.traces", "reader.decode", "reader.cli", "reader.pcsc"))
PIN_PAD = ("reader.ccid.pinpad", "reader.ccid.messages")  # sans-I/O, imported by the bottom layer (docs/architecture.md)
BOTTOM = Rule("reader.base and reader.sim import, of reader, only each other and the PIN pad", ("reader.base", "reader.sim"),
              within="reader", allowed=("reader.base", "reader.sim", *PIN_PAD))
PINPAD = Rule("the PIN pad (reader.ccid.pinpad, reader.ccid.messages) imports nothing else of reader", PIN_PAD,
              within="reader", allowed=PIN_PAD)
CLI = Rule("only reader.cli imports reader.cli", LAYERED, forbidden=("reader.cli",), exempt=("reader.cli",))
WEB = Rule("only reader.cli imports reader.web (the bench view sits on serve, never under it)", LAYERED,
           forbidden=("reader.web",), exempt=("reader.cli", "reader.web"))
RULES = (CHIP_NOT_READER, ISO, KERNEL, APPS, CONTACTS, PERSONALIZATION, LINK, TERMINALS, CCID, BOTTOM, PINPAD, CLI, WEB)


def bound(rule: Rule) -> list[str]:
    return [module for module in MODULES if rule.binds(module)]


def check(rule: Rule, module: str) -> None:
    found = rule.violations(module)
    assert not found, "\n".join(found)


RULE_NAMES = {CHIP_NOT_READER: "chip-not-reader", ISO: "iso", KERNEL: "kernel", APPS: "apps",
              CONTACTS: "contacts", PERSONALIZATION: "personalization", LINK: "link",
              TERMINALS: "terminals", CCID: "ccid", BOTTOM: "bottom", PINPAD: "pinpad", CLI: "cli", WEB: "web"}
BOUND = [pytest.param(rule, module, id=f"{RULE_NAMES[rule]}:{module}") for rule in RULES for module in bound(rule)]


@pytest.mark.parametrize(("rule", "module"), BOUND)
def test_each_layer_keeps_its_import_rule(rule, module):
    """One case per rule and module it binds (docs/architecture.md, "What may import what")."""
    check(rule, module)


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.text)
def test_every_rule_binds_modules_of_the_tree(rule):
    assert len(bound(rule)) >= 2, f"{rule.text}: binds {bound(rule)}; was a layer renamed?"


# -- the checker itself -------------------------------------------------------------------------

BREAKING = [
    (CONTACTS, "chip.contacts.t0", "from chip.card import Card\n", "chip.card"),
    (CONTACTS, "chip.contacts.t0", "from ..card import Card\n", "chip.card"),
    (CONTACTS, "chip.contacts.t0", "from .. import card\n", "chip.card"),
    (KERNEL, "chip.kernel.store", "def later():\n    import chip.apps.ssse\n", "chip.apps.ssse"),
    (KERNEL, "chip.kernel.store", "from chip import Card\n", "chip.card"),
    (ISO, "chip.iso.sw", "if False:\n    from chip.kernel import store\n", "chip.kernel.store"),
    (PERSONALIZATION, "chip.personalization.profile", "from chip.faults import parse_fault\n", "chip.faults"),
    (CHIP_NOT_READER, "chip.card", "import reader.sim as sim\n", "reader.sim"),
    (LINK, "reader.link.t1", "from reader.pcsc import PcscReader\n", "reader.pcsc"),
    (TERMINALS, "reader.terminals.flows", "from reader.traces.format import parse\n", "reader.traces.format"),
    (CLI, "reader.terminals.demo", "from reader.cli import main\n", "reader.cli"),
    (CCID, "reader.ccid.firmware", "from reader.terminals.ssse import SsseTerminal\n", "reader.terminals.ssse"),
    (WEB, "reader.pcsc.serve", "from reader.web.bench import Bench\n", "reader.web.bench"),
    (CLI, "reader.web.bench", "from reader.cli.errors import UsageError\n", "reader.cli.errors"),
    (CLI, "reader.pcsc.serve", "from reader import cli\n", "reader.cli"),
    (BOTTOM, "reader.sim", "from reader.ccid.firmware import Firmware\n", "reader.ccid.firmware"),
    (PINPAD, "reader.ccid.pinpad", "from reader.base import Reader\n", "reader.base"),
]


@pytest.mark.parametrize("rule, module, source, target", BREAKING,
                         ids=[f"{module}: {source.strip().splitlines()[-1].strip()}" for _, module, source, _ in BREAKING])
def test_the_checker_catches_a_violation(rule, module, source, target):
    found = rule.violations(module, source)
    assert any(f"imports {target}:" in line for line in found), found


@pytest.mark.parametrize("rule, module, source", [
    (CONTACTS, "chip.contacts.t0", "from chip.kernel.store import Store\nfrom . import atr\nimport os\n"),
    (APPS, "chip.apps.ssse", "from chip.iso import sw\nfrom chip.kernel import fs\nfrom .purse import Purse\n"),
    (CLI, "reader.cli.parser", "from reader.cli import main\n"),
    (LINK, "reader.link.t0", "from reader.base import Reader\nfrom chip.iso.sw import SW_OK\n"),
    (BOTTOM, "reader.base", "from reader.ccid import pinpad\nfrom reader.ccid.messages import PIN_TIMEOUT\n"),
])
def test_the_checker_lets_allowed_imports_pass(rule, module, source):
    assert rule.violations(module, source) == []


def test_a_relative_import_beyond_the_top_package_is_an_error():
    with pytest.raises(ValueError, match="beyond the top-level package"):
        direct_imports("from ... import x\n", "chip.card")
