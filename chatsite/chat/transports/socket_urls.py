from django.urls import path

from chatsite.chat.transports.socket_consumer import ChatConsumer

websocket_urlpatterns = [path("ws/chat/", ChatConsumer.as_asgi())]
