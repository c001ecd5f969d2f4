"""Shared by the packaging tests: a copy of the checkout to build from, and ELF inspection."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def copy_checkout(destination: Path) -> Path:
    """Copies the checkout's files (tracked, and untracked ones git does not ignore) to
    ``destination``: what a fresh clone with the working tree's changes holds, without the
    venv, build output or compiled modules. Builds in the copy leave the checkout untouched."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, capture_output=True).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # a file deleted in the working tree is still listed as tracked
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def dynamic_section(path: Path) -> dict[str, list[str]]:
    """The string entries of a shared object's dynamic section, as ``readelf -d`` shows them:
    ``{"NEEDED": [...], "RUNPATH": [...], "RPATH": [...]}`` (a path list split at ``:``)."""
    out = subprocess.run(["readelf", "-d", "--wide", str(path)], check=True,
                         capture_output=True, text=True).stdout
    entries: dict[str, list[str]] = {"NEEDED": [], "RUNPATH": [], "RPATH": []}
    for line in out.splitlines():
        for tag, values in entries.items():
            if f"({tag})" in line and "[" in line:
                value = line[line.index("[") + 1:line.rindex("]")]
                values.extend(value.split(":") if tag != "NEEDED" else [value])
    return entries


@pytest.fixture(scope="session")
def checkout_copier() -> Callable[[Path], Path]:
    return copy_checkout


@pytest.fixture(scope="session")
def elf_dynamic() -> Callable[[Path], dict[str, list[str]]]:
    return dynamic_section
