"""Writes to the adapter registry (docs/ARCHITECTURE.md, "Adapters").

Every way in (admin upload, zip, server path, hub id, `import_adapter`) ends the same way: the
adapter's files sit in a directory under ADAPTERS_DIR, `inference.validation` has passed them,
and only then does a row point at them. Uploads and downloads are staged in
ADAPTERS_DIR/.incoming/ and moved into ADAPTERS_DIR/<slug> when registered, so nothing is
written outside ADAPTERS_DIR and a rejected adapter leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chatsite.adapters.models import Adapter
from chatsite.adapters.selectors import adapter_path
from inference.errors import AdapterError
from inference.validation import (
    CONFIG_NAME,
    README_NAME,
    WEIGHTS_NAME,
    AdapterReport,
    Limits,
    check_no_pickle_weights,
    extract_adapter_zip,
    is_pickle_weights,
    readable_size,
    reject,
    validate_adapter_dir,
)

if TYPE_CHECKING:
    from inference.demo import DemoModel
    from inference.demo_adapters import DemoAdapterSpec

DEMO_BASE_NAME = "patchbay-demo-base"
INCOMING = ".incoming"
STALE_STAGING_S = 24 * 3600
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class Incoming:
    """Adapter files that passed validation and wait to be registered."""

    path: Path
    report: AdapterReport
    source: str
    staged: bool  # a copy under .incoming/, moved into place on registration

    def discard(self) -> None:
        if self.staged:
            shutil.rmtree(self.path.parent, ignore_errors=True)


# --- ways in ----------------------------------------------------------------------------------


def incoming_from_files(*, config_file, weights_file) -> Incoming:
    """Two uploaded files (Django UploadedFile objects or any readable file with a name)."""
    if is_pickle_weights(weights_file.name):
        raise _pickle_upload(weights_file.name)
    _check_upload_size(config_file.size + weights_file.size)
    with _staging() as folder:
        for upload, name in ((config_file, CONFIG_NAME), (weights_file, WEIGHTS_NAME)):
            with (folder / name).open("xb") as out:
                for chunk in upload.chunks():
                    out.write(chunk)
        return _validated(folder, source="upload")


def incoming_from_zip(*, archive) -> Incoming:
    _check_upload_size(archive.size, what="The archive")
    with _staging() as folder:
        zipped = folder.parent / "upload.zip"
        with zipped.open("xb") as out:
            for chunk in archive.chunks():
                out.write(chunk)
        extract_adapter_zip(zipped, folder, max_bytes=settings.ADAPTER_MAX_BYTES)
        zipped.unlink()
        return _validated(folder, source="upload (zip)")


def incoming_from_server_path(*, path: str) -> Incoming:
    """A directory already under ADAPTERS_DIR, registered where it is."""
    root = Path(settings.ADAPTERS_DIR).resolve()
    folder = (root / path).resolve()  # an absolute `path` replaces root; resolve follows links
    if not folder.is_relative_to(root) or folder == root or INCOMING in folder.parts:
        raise reject(f"{path} is not a directory inside ADAPTERS_DIR ({root}).")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        file = folder / name
        if file.exists() and not file.resolve().is_relative_to(root):
            raise reject(f"{name} in {path} links outside ADAPTERS_DIR.")
    report = validate_adapter_dir(folder, base_model=settings.BASE_MODEL, limits=limits())
    return Incoming(folder, report, source=f"server path {path}", staged=False)


def incoming_from_dir(*, path: Path) -> Incoming:
    """A directory anywhere on this machine (the shell command): its adapter files are copied."""
    path = Path(path)
    if not path.is_dir():
        raise reject(f"{path} is not a directory.")
    check_no_pickle_weights(path)
    with _staging() as folder:
        for name in (CONFIG_NAME, WEIGHTS_NAME, README_NAME):
            if (path / name).is_file():
                _copy_bounded(path / name, folder / name)
        return _validated(folder, source=f"directory {path}")


def incoming_from_hub(*, repo_id: str, revision: str | None = None) -> Incoming:
    """An adapter repository on the Hugging Face hub (HF_ENDPOINT), where the hub is reachable."""
    repo_id = repo_id.strip()
    if not HUB_ID.match(repo_id):
        raise reject(f"{repo_id!r} is not a hub id; write it as owner/name.")
    with _staging() as folder:
        _download(repo_id, revision, folder)
        if not (folder / WEIGHTS_NAME).is_file():
            raise reject(
                f"The hub repository {repo_id} has no {WEIGHTS_NAME}; Patchbay does not load "
                "pickle (.bin) weights."
            )
        return _validated(folder, source=f"hub {repo_id}")


# --- registration and checks ------------------------------------------------------------------


def adapter_register(*, incoming: Incoming, adapter: Adapter) -> Adapter:
    """Put the files in place and save `adapter` (unsaved, its fields set) pointing at them."""
    if Adapter.objects.filter(slug=adapter.slug).exists():
        incoming.discard()
        raise reject(f"An adapter with slug {adapter.slug!r} is already registered.")
    final = incoming.path
    if incoming.staged:
        final = _move_into_place(incoming, adapter.slug)
    adapter.location = _location(final)
    adapter.source = incoming.source
    record_validation(adapter=adapter, report=incoming.report)
    try:
        with transaction.atomic():
            adapter.save()
    except Exception:
        if incoming.staged:
            shutil.rmtree(final, ignore_errors=True)
        raise
    return adapter


def adapter_validate(*, adapter: Adapter) -> AdapterReport:
    """Check the adapter's files again; one that fails is disabled, so nobody gets it."""
    try:
        report = validate_adapter_dir(
            adapter_path(adapter), base_model=settings.BASE_MODEL, limits=limits()
        )
    except AdapterError:
        if adapter.enabled:
            adapter.enabled = False
            adapter.save(update_fields=["enabled", "updated_at"])
        raise
    record_validation(adapter=adapter, report=report)
    adapter.save()
    return report


def adapter_set_enabled(*, adapter: Adapter, enabled: bool) -> None:
    """Enable only after the files pass validation again (they may have changed on disk)."""
    if enabled:
        adapter_validate(adapter=adapter)
    adapter.enabled = enabled
    adapter.save(update_fields=["enabled", "updated_at"])


def limits() -> Limits:
    return Limits(max_rank=settings.ADAPTER_MAX_RANK, max_bytes=settings.ADAPTER_MAX_BYTES)


def demo_adapters_register(demo: DemoModel) -> list[Adapter]:
    """Register (or refresh) the demo adapters; an admin's enabled flag is left alone."""
    adapters = []
    for spec in demo.adapters:
        adapter, _ = Adapter.objects.update_or_create(
            slug=spec.slug,
            defaults={
                "name": spec.name,
                "description": spec.description,
                "base_model": DEMO_BASE_NAME,
                "location": _location(Path(spec.path)),
                "source": "demo model",
            },
        )
        adapters.append(adapter)
    return adapters


def trained_demo_adapters_register(specs: tuple[DemoAdapterSpec, ...]) -> list[Adapter]:
    """Register the default model's committed demo adapters once, validated like any import.

    Later starts only put back files that went missing: an admin's edits (name, description,
    enabled, visibility) stay as they are.
    """
    adapters = []
    for spec in specs:
        adapter = Adapter.objects.filter(slug=spec.slug).first()
        if adapter is None:
            new = Adapter(slug=spec.slug, name=spec.name, description=spec.description)
            adapter = adapter_register(incoming=incoming_from_dir(path=spec.path), adapter=new)
        elif not (adapter_path(adapter) / WEIGHTS_NAME).is_file():
            adapter_path(adapter).mkdir(parents=True, exist_ok=True)
            for name in (CONFIG_NAME, WEIGHTS_NAME):
                _copy_bounded(spec.path / name, adapter_path(adapter) / name)
        adapters.append(adapter)
    return adapters


# --- helpers ----------------------------------------------------------------------------------


def record_validation(*, adapter: Adapter, report: AdapterReport) -> None:
    """Keep what the last passing validation found (shown in the admin)."""
    adapter.validated_at = timezone.now()
    adapter.validation_warnings = "\n".join(report.warnings)
    adapter.rank = report.rank
    adapter.size_bytes = report.size_bytes
    adapter.base_model = adapter.base_model or report.trained_on[:500]


def _validated(folder: Path, *, source: str) -> Incoming:
    report = validate_adapter_dir(folder, base_model=settings.BASE_MODEL, limits=limits())
    return Incoming(folder, report, source=source, staged=True)


class _staging:
    """A fresh folder under ADAPTERS_DIR/.incoming/, removed unless validation passed."""

    def __enter__(self) -> Path:
        incoming = Path(settings.ADAPTERS_DIR) / INCOMING
        incoming.mkdir(parents=True, exist_ok=True)
        _remove_stale(incoming)
        self.root = Path(tempfile.mkdtemp(dir=incoming))
        folder = self.root / "adapter"
        folder.mkdir()
        return folder

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def _remove_stale(incoming: Path) -> None:
    """Staged uploads a form never registered (the admin left the page) are not kept forever."""
    cutoff = time.time() - STALE_STAGING_S
    for child in incoming.iterdir():
        if child.is_dir() and child.stat().st_mtime < cutoff:
            shutil.rmtree(child, ignore_errors=True)


def _move_into_place(incoming: Incoming, slug: str) -> Path:
    final = Path(settings.ADAPTERS_DIR) / slug
    if final.exists():
        incoming.discard()
        raise reject(f"ADAPTERS_DIR already holds a directory called {slug}; pick another slug.")
    os.replace(incoming.path, final)
    shutil.rmtree(incoming.path.parent, ignore_errors=True)
    return final


def _download(repo_id: str, revision: str | None, folder: Path) -> None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    # Read HF_ENDPOINT now, not at import: the library caches it when first imported.
    endpoint = os.environ.get("HF_ENDPOINT") or None
    try:
        snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, README_NAME],
            local_dir=folder,
            cache_dir=folder.parent / "hub-cache",  # inside ADAPTERS_DIR, removed with it
            endpoint=endpoint,
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        where = endpoint or "https://huggingface.co"
        raise AdapterError(
            "hub_unreachable",
            f"The adapter {repo_id} could not be fetched from the model hub at {where}: "
            f"{_first_line(error)} Upload its files instead, or import them from a directory.",
        ) from error
    shutil.rmtree(folder / ".cache", ignore_errors=True)  # the library's own bookkeeping


def _copy_bounded(source: Path, target: Path) -> None:
    if source.stat().st_size > settings.ADAPTER_MAX_BYTES:
        raise reject(
            f"{source.name} is larger than the limit (ADAPTER_MAX_BYTES) of "
            f"{readable_size(settings.ADAPTER_MAX_BYTES)}."
        )
    shutil.copyfile(source, target)


def _check_upload_size(size: int, what: str = "The adapter's files") -> None:
    if size > settings.ADAPTER_MAX_BYTES:
        raise reject(
            f"{what} take {readable_size(size)}; the limit (ADAPTER_MAX_BYTES) is "
            f"{readable_size(settings.ADAPTER_MAX_BYTES)}."
        )


def _pickle_upload(name: str) -> AdapterError:
    return reject(
        f"{name} is a pickle file, which can run code when loaded; Patchbay accepts "
        f"{WEIGHTS_NAME} only."
    )


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if line.endswith(".") else line + "."


def _location(path: Path) -> str:
    """Relative to ADAPTERS_DIR when inside it, so the tree can move as a whole."""
    try:
        return str(path.resolve().relative_to(Path(settings.ADAPTERS_DIR).resolve()))
    except ValueError:
        return str(path.resolve())
