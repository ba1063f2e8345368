"""ASGI entry point: HTTP through Django, WebSockets through Channels (served by Daphne)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chatsite.chat.ops.startup import warm_up  # noqa: E402
from chatsite.chat.transports.socket_urls import websocket_urlpatterns  # noqa: E402
from chatsite.middleware import ThreadPerConnection  # noqa: E402
from chatsite.origins import SiteOriginOnly  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": ThreadPerConnection(django_asgi_app),
        "websocket": ThreadPerConnection(
            SiteOriginOnly(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)

warm_up()
