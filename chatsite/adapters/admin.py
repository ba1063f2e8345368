"""Adapter management in the admin: ways in, access, defaults, actions, usage and a try-it box.

A thin transport like the others: forms parse, services (`services.py`, `cache.py`,
`trial.py`) do the work, and every refusal reaches the page as the validator's sentence.
"""

from __future__ import annotations

import json
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince
from django.utils.timezone import localtime
from django.views.decorators.http import require_POST

from chatsite.adapters import cache, services
from chatsite.adapters.charts import usage_chart
from chatsite.adapters.models import Adapter
from chatsite.adapters.selectors import adapter_path, adapter_usage, adapter_usage_by_day
from chatsite.adapters.trial import trial_request, trial_stream
from chatsite.chat.streams import envelopes
from chatsite.errors import ChatError
from inference.errors import AdapterError
from inference.validation import readable_size, validate_adapter_dir

REGISTRY = ("Registry", {"fields": ["slug", "name", "description"]})
ACCESS = ("Access", {"fields": ["enabled", "visibility", "groups"]})
DEFAULTS = (
    "Defaults for conversations",
    {"fields": ["system_prompt", "temperature", "max_tokens"]},
)
WAYS_IN = (
    ("files", "Upload adapter_config.json and adapter_model.safetensors"),
    ("zip", "Upload a .zip holding those two files"),
    ("path", "A directory already inside ADAPTERS_DIR"),
    ("hub", "A hub id (owner/name), where the model hub is reachable"),
)
# The form fields each way in needs, with the sentence shown when one is missing.
NEEDS = {
    "files": {
        "config_file": "Choose the adapter_config.json file.",
        "weights_file": "Choose the adapter_model.safetensors file.",
    },
    "zip": {"archive": "Choose the .zip archive."},
    "path": {"server_path": "Write the directory's path inside ADAPTERS_DIR."},
    "hub": {"hub_id": "Write the hub id, e.g. owner/my-adapter."},
}


class _DefaultsMixin:
    def clean_max_tokens(self):
        value = self.cleaned_data.get("max_tokens")
        if value is not None and value > settings.MAX_NEW_TOKENS:
            raise forms.ValidationError(
                f"At most {settings.MAX_NEW_TOKENS} (the server's MAX_NEW_TOKENS)."
            )
        return value


class AdapterAddForm(_DefaultsMixin, forms.ModelForm):
    """A new adapter: its files come in one of four ways and are checked before it is saved."""

    way_in = forms.ChoiceField(choices=WAYS_IN, initial="files", widget=forms.RadioSelect)
    config_file = forms.FileField(required=False, label="adapter_config.json")
    weights_file = forms.FileField(required=False, label="adapter_model.safetensors")
    archive = forms.FileField(required=False, label=".zip archive")
    server_path = forms.CharField(
        required=False, max_length=1000, help_text="Relative to ADAPTERS_DIR, e.g. my-adapter."
    )
    hub_id = forms.CharField(required=False, max_length=200, label="Hub id")

    class Meta:
        model = Adapter
        fields = [
            "slug", "name", "description", "enabled", "visibility", "groups",
            "system_prompt", "temperature", "max_tokens",
        ]

    incoming: services.Incoming | None = None

    def clean(self):
        cleaned = super().clean()
        way = cleaned.get("way_in")
        for field, sentence in NEEDS.get(way, {}).items():
            if not cleaned.get(field):
                self.add_error(field, sentence)
        if self.errors or self._slug_taken(cleaned.get("slug")):
            return cleaned  # the field errors come first; files are not looked at yet
        try:
            self.incoming = self._incoming(way, cleaned)
        except AdapterError as error:
            raise forms.ValidationError(error.message) from None
        return cleaned

    def full_clean(self):
        super().full_clean()
        if self.errors and self.incoming is not None:
            # A later check (a model validator) refused the form: do not keep the staged files.
            self.incoming.discard()
            self.incoming = None

    def _slug_taken(self, slug: str) -> bool:
        """A taken slug is reported by the model form's own uniqueness check."""
        if Adapter.objects.filter(slug=slug).exists():
            return True
        if (Path(settings.ADAPTERS_DIR) / slug).exists() and self.cleaned_data["way_in"] != "path":
            self.add_error("slug", f"ADAPTERS_DIR already holds a directory called {slug}.")
            return True
        return False

    def _incoming(self, way: str, cleaned: dict) -> services.Incoming:
        if way == "files":
            return services.incoming_from_files(
                config_file=cleaned["config_file"], weights_file=cleaned["weights_file"]
            )
        if way == "zip":
            return services.incoming_from_zip(archive=cleaned["archive"])
        if way == "path":
            return services.incoming_from_server_path(path=cleaned["server_path"])
        return services.incoming_from_hub(repo_id=cleaned["hub_id"])


class AdapterChangeForm(_DefaultsMixin, forms.ModelForm):
    """An existing adapter. Switching it on checks its files again first."""

    class Meta:
        model = Adapter
        fields = AdapterAddForm.Meta.fields

    report = None

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("enabled") and not self.instance.enabled:
            try:
                self.report = validate_adapter_dir(
                    adapter_path(self.instance),
                    base_model=settings.BASE_MODEL,
                    limits=services.limits(),
                )
            except AdapterError as error:
                self.add_error("enabled", f"It cannot be enabled: {error.message}")
        return cleaned


@admin.register(Adapter)
class AdapterAdmin(admin.ModelAdmin):
    # Short columns: with full timestamps the list was clipped at 1280 px.
    list_display = ["slug", "name", "enabled", "visibility", "rank", "validated", "updated"]
    list_filter = ["enabled", "visibility"]
    search_fields = ["slug", "name", "description"]
    filter_horizontal = ["groups"]
    actions = ["validate_again", "enable", "disable", "preload_and_pin", "evict"]
    change_form_template = "admin/adapters/adapter/change_form.html"
    file_fields = [
        "location", "source", "rank", "size_bytes", "validated_at", "validation_warnings",
    ]

    # --- forms --------------------------------------------------------------------------------
    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = AdapterChangeForm if obj else AdapterAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            way_in = ["way_in", "config_file", "weights_file", "archive", "server_path", "hub_id"]
            return [("Adapter files", {"fields": way_in}), REGISTRY, ACCESS, DEFAULTS]
        return [
            REGISTRY, ACCESS, DEFAULTS,
            ("Files and validation", {"fields": self.file_fields}),
            ("Usage", {"fields": ["usage", "cache_state"]}),
        ]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else [*self.file_fields, "usage", "cache_state"]

    def save_model(self, request, obj, form, change):
        if not change:
            services.adapter_register(incoming=form.incoming, adapter=obj)
            self._warn(request, obj, form.incoming.report.warnings)
            return
        if form.report is not None:
            services.record_validation(adapter=obj, report=form.report)
            self._warn(request, obj, form.report.warnings)
        super().save_model(request, obj, form, change)

    # --- list columns -------------------------------------------------------------------------
    @admin.display(description="Validated", ordering="validated_at")
    def validated(self, obj):
        return _short_date(obj.validated_at) if obj.validated_at else "not yet"

    @admin.display(description="Updated", ordering="updated_at")
    def updated(self, obj):
        return _short_date(obj.updated_at)

    # --- read-only panels ---------------------------------------------------------------------
    @admin.display(description="Usage")
    def usage(self, obj):
        usage = adapter_usage(obj)
        rows = [
            ("Requests", usage.requests),
            ("Tokens in / out", f"{usage.prompt_tokens} / {usage.completion_tokens}"),
            ("Errors", usage.errors),
            ("Last used", _when(usage.last_used) if usage.last_used else "never"),
            ("Mean time to first token", _ms(usage.mean_ttft_ms)),
            ("Tokens per second", _rate(usage.tokens_per_s)),
        ]
        return format_html(
            "{}{}", _table(["", ""], rows, testid="adapter-usage"),
            usage_chart(adapter_usage_by_day(obj)),
        )

    @admin.display(description="Cache per worker")
    def cache_state(self, obj):
        try:
            states = cache.adapter_cache_state(obj)
        except cache.CacheUnavailable as error:
            return str(error)
        rows = [
            (s.worker, _yes(s.loaded), _yes(s.pinned), _size(s.memory_bytes)) for s in states
        ]
        return _table(["Worker", "Loaded", "Pinned", "Memory"], rows, testid="adapter-cache")

    # --- actions on the list ------------------------------------------------------------------
    @admin.action(description="Validate again (a failing adapter is disabled)")
    def validate_again(self, request, queryset):
        for adapter in queryset:
            self._validate(request, adapter)

    @admin.action(description="Enable (after validating again)")
    def enable(self, request, queryset):
        for adapter in queryset:
            self._set_enabled(request, adapter, True)

    @admin.action(description="Disable")
    def disable(self, request, queryset):
        for adapter in queryset:
            self._set_enabled(request, adapter, False)

    @admin.action(description="Preload and pin in the engine")
    def preload_and_pin(self, request, queryset):
        for adapter in queryset:
            self._cache_action(request, adapter, cache.adapter_preload, "preloaded and pinned")

    @admin.action(description="Evict from the engine")
    def evict(self, request, queryset):
        for adapter in queryset:
            self._cache_action(request, adapter, cache.adapter_evict, "evicted")

    # --- buttons on the change page -----------------------------------------------------------
    def get_urls(self):
        def route(suffix, view):
            return path(
                f"<int:object_id>/{suffix}/",
                self.admin_site.admin_view(require_POST(view)),
                name=f"adapters_adapter_{suffix}",
            )

        return [
            route("validate", self.validate_view),
            route("preload", self.preload_view),
            route("evict", self.evict_view),
            route("try", self.try_view),
        ] + super().get_urls()

    def validate_view(self, request, object_id):
        adapter = self._posted(request, object_id)
        self._validate(request, adapter)
        return redirect(_change_url(adapter))

    def preload_view(self, request, object_id):
        adapter = self._posted(request, object_id)
        self._cache_action(request, adapter, cache.adapter_preload, "preloaded and pinned")
        return redirect(_change_url(adapter))

    def evict_view(self, request, object_id):
        adapter = self._posted(request, object_id)
        self._cache_action(request, adapter, cache.adapter_evict, "evicted")
        return redirect(_change_url(adapter))

    def try_view(self, request, object_id):
        """Stream one test prompt as server-sent events (read by adapters/try-it.js)."""
        adapter = self._posted(request, object_id)
        prompt = request.POST.get("prompt", "").strip()
        if not prompt or len(prompt) > settings.MAX_PROMPT_CHARS:
            limit = settings.MAX_PROMPT_CHARS
            return _events_response(_refusal(f"Write a test prompt of 1 to {limit} characters."))
        return _events_response(trial_stream(adapter.slug, trial_request(adapter, prompt)))

    # --- helpers ------------------------------------------------------------------------------
    def _posted(self, request, object_id) -> Adapter:
        adapter = self.get_object(request, str(object_id))
        if adapter is None:
            raise Http404("No such adapter.")
        if not self.has_change_permission(request, adapter):
            raise PermissionDenied
        return adapter

    def _validate(self, request, adapter: Adapter) -> None:
        try:
            report = services.adapter_validate(adapter=adapter)
        except AdapterError as error:
            failed = f"Adapter {adapter.slug} failed validation and is disabled: {error.message}"
            self.message_user(request, failed, messages.ERROR)
            return
        self.message_user(request, f"Adapter {adapter.slug} passed validation.", messages.SUCCESS)
        self._warn(request, adapter, report.warnings)

    def _set_enabled(self, request, adapter: Adapter, enabled: bool) -> None:
        try:
            services.adapter_set_enabled(adapter=adapter, enabled=enabled)
        except AdapterError as error:
            refused = f"Adapter {adapter.slug} cannot be enabled: {error.message}"
            self.message_user(request, refused, messages.ERROR)
            return
        state = "enabled" if enabled else "disabled"
        self.message_user(request, f"Adapter {adapter.slug} is {state}.", messages.SUCCESS)

    def _cache_action(self, request, adapter: Adapter, action, done: str) -> None:
        try:
            action(adapter)
        except cache.CacheUnavailable as error:
            self.message_user(request, f"Adapter {adapter.slug}: {error}", messages.WARNING)
            return
        self.message_user(request, f"Adapter {adapter.slug} is {done}.", messages.SUCCESS)

    def _warn(self, request, adapter: Adapter, warnings) -> None:
        for warning in warnings:
            self.message_user(request, f"Adapter {adapter.slug}: {warning}", messages.WARNING)


def _events_response(events) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_sse(events), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _sse(events):
    """SSE framing of docs/PROTOCOL.md §1: id, event, data, blank line."""
    index = 0
    async for envelope in _aiter(events):
        yield f"id: {index}\nevent: {envelope['type']}\ndata: {json.dumps(envelope)}\n\n"
        index += 1


async def _aiter(events):
    if hasattr(events, "__aiter__"):
        async for envelope in events:
            yield envelope
    else:
        for envelope in events:
            yield envelope


def _refusal(sentence: str) -> list[dict]:
    return envelopes.rejection(ChatError("invalid_content", sentence))


def _change_url(adapter: Adapter) -> str:
    return reverse("admin:adapters_adapter_change", args=[adapter.pk])


def _table(headers, rows, *, testid: str):
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers)) if any(headers) else ""
    body = format_html_join(
        "", "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows),
    )
    return format_html(
        '<table data-testid="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
        testid, head, body,
    )


def _short_date(value) -> str:
    return date_format(localtime(value), "j M Y, H:i")


def _when(value) -> str:
    """A date a person reads at once: "2 Dec 2026, 14:05 (3 hours ago)"."""
    return f"{_short_date(value)} ({timesince(value)} ago)"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _size(count: int | None) -> str:
    return "—" if count is None else readable_size(count)
