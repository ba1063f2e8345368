"""Settings for the test suite: the product's settings, pointed at the shared test model."""

import os
import tempfile
from pathlib import Path

TEST_MODEL_DIR = Path(
    os.environ.get("PATCHBAY_TEST_MODEL_DIR", Path(tempfile.gettempdir()) / "patchbay-test-model")
)
os.environ.setdefault("BASE_MODEL", str(TEST_MODEL_DIR / "base"))
os.environ.setdefault("ADAPTERS_DIR", str(TEST_MODEL_DIR / "adapters"))
os.environ.setdefault("ENGINE_WARMUP", "0")
os.environ.setdefault("ENGINE_THREADS", "1")
os.environ.setdefault("STREAM_RESUME_GRACE_S", "0")
from tests.holding import HELD_ENV  # noqa: E402

for _name, _value in HELD_ENV.items():
    os.environ.setdefault(_name, _value)

from chatsite.settings import *  # noqa: E402,F403

# Tests speak plain HTTP to the test client and to a local Daphne.
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]

# An in-memory SQLite test database reaches other threads (the sockets' database helpers) through
# SQLite's shared cache, whose table locks fail at once ("database table is locked") instead of
# waiting. A file waits out the busy timeout, as the product's own SQLite database does.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": str(Path(tempfile.gettempdir()) / f"patchbay-test-{os.getpid()}.sqlite3")
    }
