"""The install `make run` does: CPU torch from PyTorch's CPU index elsewhere, the local wheel here.

`make torch-source` prints the pip options the install uses for torch. It decides with a dry
run that never touches the network (`--no-index`), so neither answer costs a timeout.
"""

import os
import subprocess
import zipfile

from tests.e2e.servers import ROOT

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def torch_pin() -> str:
    lines = (ROOT / "requirements" / "cpu.txt").read_text().splitlines()
    return next(line for line in lines if line.startswith("torch=="))


def torch_source(tmp_path, *, find_links: str | None) -> str:
    """`make torch-source` with none of this machine's pip configuration, as elsewhere."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_CACHE_DIR=str(tmp_path / "cache"))
    if find_links:
        env["PIP_FIND_LINKS"] = find_links
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", "torch-source"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def fake_wheel(folder, version: str) -> None:
    """A wheel pip can resolve in a dry run: metadata only (it is never installed)."""
    folder.mkdir()
    info = f"torch-{version}.dist-info"
    wheel = folder / f"torch-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")


def test_it_pins_the_cpu_build_of_torch():
    assert torch_pin().endswith("+cpu")


def test_it_takes_torch_from_pytorchs_cpu_index_where_pip_has_no_local_wheel(tmp_path):
    assert torch_source(tmp_path, find_links=None) == f"--index-url {CPU_INDEX}"


def test_it_asks_no_index_at_all_where_pip_finds_the_pinned_wheel_locally(tmp_path):
    fake_wheel(tmp_path / "wheels", torch_pin().split("==")[1])
    assert torch_source(tmp_path, find_links=str(tmp_path / "wheels")) == "--no-index"


def test_it_installs_torch_alone_without_its_dependencies_so_nothing_pulls_cuda():
    dry_run = subprocess.run(
        ["make", "-n", "--no-print-directory", "-W", "requirements/cpu.txt", ".venv/.runtime-installed"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert dry_run.returncode == 0, dry_run.stderr
    torch_line = next(line for line in dry_run.stdout.splitlines() if f'"{torch_pin()}"' in line)
    assert "install --no-deps" in torch_line and CPU_INDEX in torch_line
