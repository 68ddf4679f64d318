from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config_file
from gateway.datadir import DataDir
from gateway.errors import ConfigError


def test_default_config_file_is_valid_and_commented(tmp_path: Path) -> None:
    dd = DataDir(tmp_path / "data")
    assert dd.write_default_config()
    assert not dd.write_default_config()  # never overwritten
    text = dd.config_file.read_text()
    assert "# " in text and "[partners.demo]" in text
    config = dd.load_config()
    assert list(config.partners) == ["demo"]
    assert config.intake.max_flow_bytes == 100_000_000


def test_unknown_key_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[intake]\nscan_interval = 3\n[partners.acme]\nname='A'\ncolour='red'\n")
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    message = str(info.value)
    assert "intake.scan_interval: unknown key" in message
    assert "partners.acme.colour: unknown key" in message


def test_wrong_type_and_bad_partner_id(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[workers]\nthreads = 'many'\n[partners.'bad id']\n")
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert "workers.threads" in str(info.value)
    assert "bad id" in str(info.value)


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dd = DataDir(tmp_path)
    dd.write_default_config()
    assert main(["check-config", "--data-dir", str(tmp_path)]) == 0
    assert "OK" in capsys.readouterr().out
    dd.config_file.write_text("[store]\nurl = 1\nextra = 2\n")
    assert main(["check-config", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "store.url" in err and "store.extra: unknown key" in err


def test_broken_toml_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[intake\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config_file(path)


def _keys(model: type, prefix: str = "") -> list[str]:
    from pydantic import BaseModel

    keys = []
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        nested = [c for c in (*getattr(field.annotation, "__args__", ()), field.annotation)
                  if isinstance(c, type) and issubclass(c, BaseModel)]  # fmt: skip
        if nested and name not in ("cii_profiles", "ubl_profiles", "partners"):
            keys += _keys(nested[0], f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def test_every_config_key_is_documented() -> None:
    from gateway.config import GatewayConfig, PartnerConfig
    from gateway.resources import project_root

    doc = (project_root() / "docs" / "configuration.md").read_text()
    keys = _keys(GatewayConfig) + _keys(PartnerConfig, "partners.<id>.")
    missing = [k for k in keys if f"`{k}`" not in doc and k != "partners"]
    assert not missing, f"not in docs/configuration.md: {missing}"


def test_partner_folder_on_another_filesystem_is_refused(tmp_path: Path) -> None:
    import os
    import tempfile

    from gateway.config import parse_config

    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem (/dev/shm) to put a partner folder on")
    other = Path(tempfile.mkdtemp(dir=shm))
    try:
        config = parse_config({"partners": {"far": {"folder": str(other)}}})
        with pytest.raises(ConfigError, match="partners.far.folder: .* another filesystem"):
            DataDir(tmp_path).prepare(config)
    finally:
        for root, dirs, _files in os.walk(other, topdown=False):
            for d in dirs:
                os.rmdir(os.path.join(root, d))
        os.rmdir(other)


def test_checking_a_config_loads_no_server_or_parser_stack() -> None:
    """`gateway check-config` stays light: the config models import neither asyncssh nor pypdf, and
    the monitoring module does not import the command line (no import cycle)."""
    import subprocess
    import sys

    probe = (
        "import sys, gateway.config, gateway.telemetry.http\n"
        "print(sorted(m for m in ('asyncssh', 'pypdf', 'gateway.cli') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
