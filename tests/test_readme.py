"""The README stays true: its config reference is the generated one, it names every command,
and the repository paths it names exist."""

from __future__ import annotations

import argparse
import re
import runpy
from pathlib import Path

from daemon.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
REF = runpy.run_path(str(ROOT / "scripts" / "config_reference.py"), run_name="config_reference")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            out.update(action.choices)
    return out


def test_config_reference_block_is_current() -> None:
    block = REF["readme_block"](README)
    assert block, "README.md lacks the config-reference markers"
    assert block == REF["reference"](), (
        "README config reference is stale: run "
        "`.venv/bin/python scripts/config_reference.py --write README.md`")


def test_every_config_key_has_a_doc() -> None:
    assert REF["undocumented"]() == []


def test_every_subcommand_is_in_the_readme() -> None:
    missing = []
    for name, sub in _subcommands(build_parser()).items():
        if f"anchord {name}" not in README:
            missing.append(f"anchord {name}")
        missing += [f"anchord {name} {n}" for n in _subcommands(sub)
                    if f"anchord {name} {n}" not in README]
    assert missing == []


def test_named_repository_paths_exist() -> None:
    pattern = re.compile(r"(?<![\w/<>.-])((?:daemon|adapters|scripts|tests)/[\w./-]*\w)")
    missing = [(i, m) for i, line in enumerate(README.splitlines(), 1)
               if "<!-- pending -->" not in line
               for m in pattern.findall(line) if not (ROOT / m).exists()]
    assert missing == []
