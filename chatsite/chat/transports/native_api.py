"""Native API under /api/v1/ (docs/ARCHITECTURE.md, "HTTP APIs"): API key or session (with
CSRF). Thin: parse, authorise, call one service or selector, format. Another user's ids
answer 404, exactly like ids that do not exist."""

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import generics, renderers, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from chatsite.adapters.selectors import adapter_for_user, adapters_usable_by
from chatsite.chat.conversations import selectors, services
from chatsite.chat.models import Message
from chatsite.chat.transports import gate, streaming
from chatsite.chat.transports.request_params import native_params
from chatsite.chat.transports.serializers import (
    AdapterSerializer,
    ConversationCreateSerializer,
    ConversationRenameSerializer,
    ConversationSerializer,
    ErrorSerializer,
    MessageSerializer,
    SendSerializer,
    SentSerializer,
)
from chatsite.errors import ChatError

# DRF answers unauthenticated API calls itself (401 JSON), not with a login redirect.
api_view = method_decorator(login_not_required, name="dispatch")
SSE_EVENT = inline_serializer(
    "ServerSentEvent",
    {
        "id": serializers.CharField(),
        "event": serializers.CharField(),
        "data": serializers.CharField(),
    },
)
ERRORS = {code: ErrorSerializer for code in (400, 401, 403, 404, 429)}


@api_view
class ConversationList(generics.ListAPIView):
    serializer_class = ConversationSerializer

    def get_queryset(self):
        return selectors.conversations_of(self.request.user)

    @extend_schema(responses={200: ConversationSerializer(many=True), **ERRORS})
    def get(self, request):
        return super().get(request)

    @extend_schema(
        request=ConversationCreateSerializer, responses={201: ConversationSerializer, **ERRORS}
    )
    def post(self, request):
        data = _valid(ConversationCreateSerializer, request.data)
        _check_prompt_size(data["system_prompt"], "system_prompt")
        slug = data.get("adapter")
        conversation = services.conversation_create(
            owner=request.user,
            adapter=adapter_for_user(request.user, slug) if slug else None,
            title=data["title"],
            system_prompt=data["system_prompt"],
        )
        return Response(ConversationSerializer(conversation).data, status=status.HTTP_201_CREATED)


@api_view
class ConversationDetail(APIView):
    @extend_schema(responses={200: ConversationSerializer, **ERRORS})
    def get(self, request, pk: int):
        conversation = selectors.conversation_of(request.user, pk)
        return Response(ConversationSerializer(conversation).data)

    @extend_schema(
        request=ConversationRenameSerializer, responses={200: ConversationSerializer, **ERRORS}
    )
    def patch(self, request, pk: int):
        data = _valid(ConversationRenameSerializer, request.data)
        if "title" in data:
            conversation = services.conversation_rename(
                user=request.user, conversation_id=pk, title=data["title"]
            )
        else:
            conversation = selectors.conversation_of(request.user, pk)
        return Response(ConversationSerializer(conversation).data)

    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request, pk: int):
        streaming.conversation_delete_from_sync_view(user=request.user, conversation_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


@api_view
class ConversationMessages(generics.ListAPIView):
    serializer_class = MessageSerializer

    def get_queryset(self):
        conversation = selectors.conversation_of(self.request.user, self.kwargs["pk"])
        return selectors.messages_of(conversation)

    @extend_schema(responses={200: MessageSerializer(many=True), **ERRORS})
    def get(self, request, pk: int):
        return super().get(request, pk=pk)

    @extend_schema(
        request=SendSerializer,
        responses={201: SentSerializer, **ERRORS},
        description="Send a message and start generating the answer; follow it on `stream`.",
    )
    def post(self, request, pk: int):
        data = _valid(SendSerializer, request.data)
        fields = dict(
            user=request.user, conversation_id=pk, content=data["content"],
            params=native_params(data.get("parameters", {}), prefix="parameters."),
        )
        if "adapters" in data:
            exchanges = streaming.start_compare_from_sync_view(adapter_slugs=data["adapters"], **fields)
        else:
            exchanges = [streaming.start_from_sync_view(adapter_slug=data.get("adapter"), **fields)]
        answer = exchanges[0].assistant_message.pk
        body = {
            "message": answer,
            "user_message": exchanges[0].user_message.pk,
            "conversation": exchanges[0].conversation.pk,
            "stream": f"/api/v1/messages/{answer}/stream",
        }
        if "adapters" in data:
            body["messages"] = [exchange.assistant_message.pk for exchange in exchanges]
        return Response(body, status=status.HTTP_201_CREATED)


@api_view
class MessageDetail(APIView):
    @extend_schema(responses={200: MessageSerializer, **ERRORS})
    def get(self, request, pk: int):
        return Response(MessageSerializer(selectors.message_of(request.user, pk)).data)


class EventStreamRenderer(renderers.BaseRenderer):
    """Lets `Accept: text/event-stream` (EventSource, SSE libraries) reach the stream view; the
    stream itself is a StreamingHttpResponse. An error before it starts is one SSE event whose
    data is the usual `{code, message}`."""

    media_type = "text/event-stream"
    format = "event-stream"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return streaming.sse_data(data) if data is not None else b""


@api_view
class MessageStream(APIView):
    renderer_classes = [renderers.JSONRenderer, EventStreamRenderer]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "Last-Event-ID",
                {"type": "integer", "minimum": 0},
                OpenApiParameter.HEADER,
                description="Resume after this event id: every later event once, then the live tail.",
            )
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                SSE_EVENT,
                description="Server-sent events: `retry:`, then inference.start, "
                "inference.token…, inference.error, inference.end (docs/PROTOCOL.md §1); in "
                "celery mode an inference.notice (worker_lost, resumed) where the answer "
                "failed over to another worker.",
            ),
            204: OpenApiResponse(
                description="The answer has ended and Last-Event-ID is its end: nothing more "
                "(an EventSource stops reconnecting)."
            ),
            410: OpenApiResponse(
                ErrorSerializer,
                description="`stream_expired`: the answer has ended and its events after "
                "Last-Event-ID are no longer kept; read the message instead.",
            ),
            **ERRORS,
        },
    )
    def get(self, request, pk: int):
        message = selectors.message_of(request.user, pk, role=Message.Role.ASSISTANT)
        key_id = getattr(request.auth, "pk", None)  # None: a signed-in session, not a key
        after = gate.event_id(request.headers.get("Last-Event-ID"))
        return async_to_sync(streaming.native_sse_response)(message, after, key_id=key_id)


@api_view
class MessageStop(APIView):
    @extend_schema(request=None, responses={200: MessageSerializer, **ERRORS})
    def post(self, request, pk: int):
        message = selectors.message_of(request.user, pk, role=Message.Role.ASSISTANT)
        streaming.stop_from_sync_view(message.pk)
        message.refresh_from_db()
        return Response(MessageSerializer(message).data)


@api_view
class AdapterList(generics.ListAPIView):
    serializer_class = AdapterSerializer

    def get_queryset(self):
        return adapters_usable_by(self.request.user)

    @extend_schema(responses={200: AdapterSerializer(many=True), **ERRORS})
    def get(self, request):
        return super().get(request)


@csrf_exempt  # it changes nothing; a CSRF refusal would be an HTML page
@login_not_required
def not_found(request, rest: str = ""):
    """Any other address under /api/v1/: a JSON 404, not an HTML page (nor an APPEND_SLASH
    redirect that would drop a POST body)."""
    body = {"code": "not_found", "message": "There is no API endpoint at this address."}
    return JsonResponse(body, status=404)


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _check_prompt_size(text: str, field: str) -> None:
    if len(text) > settings.MAX_PROMPT_CHARS:
        raise ChatError(
            "invalid_content",
            f"Field “{field}” is {len(text)} characters long; the limit is "
            f"{settings.MAX_PROMPT_CHARS}.",
            param=field,
        )
