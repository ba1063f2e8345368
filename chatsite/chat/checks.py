from django.conf import settings
from django.core.checks import Error, register


@register()
def inference_mode_available(app_configs, **kwargs):
    if settings.INFERENCE_MODE == "local":
        return []
    return [
        Error(
            f"INFERENCE_MODE={settings.INFERENCE_MODE} is not available in this build yet.",
            hint="Use INFERENCE_MODE=local (the default): the engine runs in the web process.",
            id="patchbay.E001",
        )
    ]
