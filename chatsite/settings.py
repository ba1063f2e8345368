"""Django settings for Patchbay. Every knob comes from the environment: see chatsite/env.py."""

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from chatsite.env import BASE_DIR, VAR_DIR, email_settings, read_environment, secret_key

ENV = read_environment()

DEBUG = ENV.DEBUG
SECRET_KEY = secret_key(ENV.SECRET_KEY)
ALLOWED_HOSTS = ENV.ALLOWED_HOSTS
CSRF_TRUSTED_ORIGINS = ENV.CSRF_TRUSTED_ORIGINS
TRUSTED_PROXIES = ENV.TRUSTED_PROXIES  # chatsite/proxies.py
PORT = ENV.PORT

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    "chatsite.accounts",
    "chatsite.adapters",
    "chatsite.chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",
    "chatsite.chat.transports.error_bodies.ApiErrorBodies",  # JSON 404/405/413 under the API prefixes
    # Last, so the whole chain runs in one thread per request; see its docstring.
    "chatsite.middleware.OneThreadPerRequest",
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "chatsite" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "chatsite.accounts.context_processors.mail",
            ],
        },
    },
]

# --- Data -------------------------------------------------------------------------------------
try:
    DATABASES = {"default": dj_database_url.parse(ENV.DATABASE_URL, conn_health_checks=True)}
except ValueError as exc:
    raise ImproperlyConfigured(f"Bad environment setting: DATABASE_URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(exist_ok=True)
    # WAL and IMMEDIATE transactions let the stream writer and page reads share the file.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Each thread keeps its connection: opening one (the file, these pragmas, the functions
    # Django registers) cost more CPU than the statements of a request that used it, and a
    # request or socket step opened one each (docs/BENCHMARKS.md, "Streaming under load").
    DATABASES["default"]["CONN_MAX_AGE"] = None
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A pool per process (psycopg_pool, Django's own support): under ASGI every request runs in a
    # thread of its own and a Celery worker runs a thread per generation, so connections held
    # per thread ran PostgreSQL out of them at 200 live answers. A thread returns its
    # connection at the end of each request or database step, and waits when all are out.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1, "max_size": ENV.DATABASE_POOL_SIZE, "timeout": 30,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if ENV.REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # channels-redis blocks 5 s per receive; redis-py's default socket timeout is also
            # 5 s, so give the socket room or every idle consumer dies with a TimeoutError.
            "CONFIG": {"hosts": [{"address": ENV.REDIS_URL, "socket_timeout": 30}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Accounts ---------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "login"
# EMAIL_BACKEND, EMAIL_HOST, ... and MAIL_ENABLED (pages offer a reset link only when true).
globals().update(email_settings(ENV.EMAIL_URL))
DEFAULT_FROM_EMAIL = ENV.DEFAULT_FROM_EMAIL

# Lock a username out from one address after repeated failures, without letting anyone lock
# another person out from everywhere.
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = 0.25  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The client's address, from X-Forwarded-For only when the peer is one of TRUSTED_PROXIES.
AXES_CLIENT_IP_CALLABLE = "chatsite.proxies.client_ip"
AXES_VERBOSE = False  # else "AXES: BEGIN ..." on every manage.py command and server start

# --- HTTP hardening: on unless DEBUG ------------------------------------------------------------
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_SSL_REDIRECT = not DEBUG
SECURE_HSTS_SECONDS = 0 if DEBUG else 31536000
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}

# --- Static files -----------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise looks here even when serving from finders
# src: the stylesheet and theme.js as written; dist: the chat page's bundle (frontend/bundle.py).
STATICFILES_DIRS = [BASE_DIR / "frontend" / "src", BASE_DIR / "frontend" / "dist"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve straight from frontend/ without collectstatic

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- API --------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # The key first: its Bearer challenge makes a call without credentials a 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "chatsite.accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["chatsite.chat.transports.parsers.GateJSONParser"],
    "DEFAULT_THROTTLE_CLASSES": ["chatsite.chat.transports.throttling.ApiRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "chatsite.chat.transports.api_common.native_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Patchbay API",
    "DESCRIPTION": "Conversations, messages and streamed answers. Send `Authorization: Bearer "
    "<api key>` (keys are made under Account → API keys) or use a signed-in session with CSRF.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Swagger UI's files are served from here, not a CDN: the CSP allows only 'self'.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}
# Per user, on every transport: README "Limits" says what each counts (chatsite/chat/conversations/limits.py).
MAX_LIVE_ANSWERS = ENV.MAX_LIVE_ANSWERS
RATE_LIMIT = ENV.RATE_LIMIT

# --- Inference --------------------------------------------------------------------------------
INFERENCE_MODE = ENV.INFERENCE_MODE
BASE_MODEL = ENV.BASE_MODEL  # in lorax mode: its tokenizer renders the chat template
LORAX_URL = ENV.LORAX_URL
LORAX_API_KEY = ENV.LORAX_API_KEY
ADAPTERS_DIR = ENV.ADAPTERS_DIR
BASE_QUANTIZATION = ENV.BASE_QUANTIZATION
ENGINE_DEVICE = ENV.ENGINE_DEVICE
ENGINE_THREADS = ENV.ENGINE_THREADS
ENGINE_WARMUP = ENV.ENGINE_WARMUP
ENGINE_MAX_BATCH_SIZE = ENV.ENGINE_MAX_BATCH_SIZE
ENGINE_MAX_BATCH_TOKENS = ENV.ENGINE_MAX_BATCH_TOKENS
ENGINE_MAX_QUEUED = ENV.ENGINE_MAX_QUEUED
ADAPTER_MAX_RANK = ENV.ADAPTER_MAX_RANK
ADAPTER_MAX_BYTES = ENV.ADAPTER_MAX_BYTES
ADAPTER_CACHE_SLOTS = ENV.ADAPTER_CACHE_SLOTS
REDIS_URL = ENV.REDIS_URL
REDIS_MAX_CONNECTIONS = ENV.REDIS_MAX_CONNECTIONS
STREAM_RESUME_GRACE_S = ENV.STREAM_RESUME_GRACE_S
STREAM_MAX_BYTES = ENV.STREAM_MAX_BYTES
STREAM_MAX_DURATION_S = ENV.STREAM_MAX_DURATION_S
TOKEN_LOG_TTL_S = ENV.TOKEN_LOG_TTL_S
WORKER_HEARTBEAT_S = ENV.WORKER_HEARTBEAT_S
WORKER_LOST_AFTER_S = ENV.WORKER_LOST_AFTER_S
FAILOVER_MAX = ENV.FAILOVER_MAX  # chatsite/chat/workers/failover.py
ROUTING_AFFINITY = ENV.ROUTING_AFFINITY  # chatsite/chat/workers/task_routing.py
MAX_PROMPT_CHARS = ENV.MAX_PROMPT_CHARS
MAX_NEW_TOKENS = ENV.MAX_NEW_TOKENS
DEFAULT_MAX_NEW_TOKENS = ENV.DEFAULT_MAX_NEW_TOKENS

# Metrics (chatsite/chat/ops/metrics.py): /metrics needs this bearer token, or DEBUG when unset.
METRICS_TOKEN = ENV.METRICS_TOKEN
WORKER_METRICS_PORT = ENV.WORKER_METRICS_PORT
WORKER_METRICS_ADDR = ENV.WORKER_METRICS_ADDR

# Celery (INFERENCE_MODE=celery). Redis is the broker; see docs/ARCHITECTURE.md, "Celery mode".
# A generation must never run twice: tasks are acknowledged when they start (not late), so a
# worker that dies mid-generation does not get its task redelivered; the reaper ends that
# message as `worker_lost` instead. A task that is redelivered before it ever started (its
# worker died while it waited in the prefetch buffer) finds its message already claimed or
# ended and does nothing (`services.generation_claim`). One prefetched task per pool thread.
CELERY_BROKER_URL = ENV.REDIS_URL or "memory://"
CELERY_TASK_ACKS_LATE = False
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Pool threads per worker process (generations at once, all in one engine batch).
CELERY_WORKER_CONCURRENCY = ENV.WORKER_CONCURRENCY
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ROUTES = {"chatsite.chat.tasks.*": {"queue": "gpu"}}
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        # Django's default config gives "django" its own console handler, and it propagates to
        # root: every 404 printed twice. Root alone prints; a 4xx is already Daphne's access
        # line, so django.request keeps only what needs a traceback (5xx).
        "django": {"level": "INFO"},
        "django.request": {"level": "ERROR"},
        # Daphne's start-up notes (endpoints, no HTTP/2); `make run` prints the URL to open.
        "daphne": {"level": "WARNING"},
    },
}
