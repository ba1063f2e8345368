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
    if mode == "lorax":
        return [
            Error(
                "INFERENCE_MODE=lorax is not available in this build yet.",
                hint="Use INFERENCE_MODE=local or celery.",
                id="patchbay.E001",
            )
        ]
    return []
