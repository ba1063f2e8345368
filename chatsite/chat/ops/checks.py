from django.conf import settings
from django.core.checks import Error, register


@register()
def inference_mode_available(app_configs, **kwargs):
    mode = settings.INFERENCE_MODE
    if mode == "celery" and not settings.REDIS_URL:
        return [
            Error(
                "INFERENCE_MODE=celery needs REDIS_URL: Redis carries the task queue and the "
                "token log.",
                hint="Set REDIS_URL, e.g. redis://127.0.0.1:6379/0.",
                id="patchbay.E002",
            )
        ]
    if mode == "lorax" and not settings.LORAX_URL:
        return [
            Error(
                "INFERENCE_MODE=lorax needs LORAX_URL: the LoRAX server that generates.",
                hint="Set LORAX_URL, e.g. http://lorax:8080 (and LORAX_API_KEY if it wants one).",
                id="patchbay.E001",
            )
        ]
    return []
