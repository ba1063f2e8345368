from django.conf import settings
from rest_framework import serializers

from chatsite.adapters.models import Adapter
from chatsite.chat.models import Conversation, Message


class AdapterSerializer(serializers.ModelSerializer):
    class Meta:
        model = Adapter
        fields = ["slug", "name", "description"]


class ConversationSerializer(serializers.ModelSerializer):
    adapter = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)

    class Meta:
        model = Conversation
        fields = ["id", "title", "adapter", "system_prompt", "created_at", "updated_at"]


class MessageSerializer(serializers.ModelSerializer):
    adapter = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    usage = serializers.SerializerMethodField()
    timings = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id", "conversation", "parent", "role", "content", "status", "finish_reason",
            "adapter", "usage", "timings", "error", "created_at", "updated_at",
        ]

    def get_usage(self, message) -> dict:
        return {
            "prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens,
        }

    def get_timings(self, message) -> dict:
        return {"ttft_ms": message.ttft_ms, "total_ms": message.total_ms}

    def get_error(self, message) -> dict | None:
        if not message.error_code:
            return None
        return {"code": message.error_code, "message": message.error_text}


# --- input ------------------------------------------------------------------------------------
class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would turn 0 into "0"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


# Bounds mirror chat.streams.protocol.GenerationParams, which validates again when the exchange starts.
class ParametersSerializer(serializers.Serializer):
    max_tokens = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=settings.MAX_NEW_TOKENS
    )
    temperature = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=2)
    top_p = serializers.FloatField(required=False, allow_null=True, min_value=0.000001, max_value=1)
    seed = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=2**63 - 1
    )
    stop = serializers.ListField(
        child=StrictCharField(min_length=1, max_length=100, trim_whitespace=False),
        required=False, allow_null=True, max_length=4,
    )
    ignore_eos = serializers.BooleanField(
        required=False, help_text="Run to max_tokens past end-of-turn tokens (benchmarks)."
    )
    top_k = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    presence_penalty = serializers.FloatField(
        required=False, allow_null=True, min_value=-2, max_value=2
    )
    frequency_penalty = serializers.FloatField(
        required=False, allow_null=True, min_value=-2, max_value=2
    )
    repetition_penalty = serializers.FloatField(
        required=False, allow_null=True, min_value=0.000001,
        help_text="Divide the logits of tokens already in the prompt or answer by this.",
    )
    logit_bias = serializers.DictField(
        child=serializers.FloatField(min_value=-100, max_value=100),
        required=False, allow_null=True, help_text="Token id → bias added to its logit.",
    )
    response_format = serializers.JSONField(
        required=False, allow_null=True,
        help_text='{"type": "text"}, {"type": "json_object"} or '
        '{"type": "json_schema", "schema": {…}}: the answer follows it.',
    )

    def to_internal_value(self, data):
        # DRF drops fields it does not know; a parameter must be honoured or refused.
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {unknown[0]: "Patchbay does not know this parameter; leave it out."}
                )
        return super().to_internal_value(data)


class SendSerializer(serializers.Serializer):
    content = StrictCharField(trim_whitespace=False)
    adapter = StrictCharField(
        required=False, allow_null=True, allow_blank=True,
        help_text="An adapter slug; \"\" for the base model; left out, the conversation's own.",
    )
    adapters = serializers.ListField(
        child=StrictCharField(allow_blank=True), min_length=2, max_length=4, required=False,
        help_text="Compare: 2 to 4 adapter slugs (\"\" for the base model) instead of `adapter`; "
        "each answers the message, side by side in one batch, as sibling answers.",
    )
    parameters = ParametersSerializer(required=False)

    def validate(self, data):
        if "adapters" in data and "adapter" in data:
            raise serializers.ValidationError("Give either `adapter` or `adapters`, not both.")
        return data


class SentSerializer(serializers.Serializer):
    message = serializers.IntegerField(help_text="The assistant message being generated.")
    messages = serializers.ListField(
        child=serializers.IntegerField(), required=False,
        help_text="With `adapters`: one assistant message per adapter, in their order "
        "(`message` is the first).",
    )
    user_message = serializers.IntegerField()
    conversation = serializers.IntegerField()
    stream = serializers.CharField(help_text="Where its events stream (SSE).")


class ConversationCreateSerializer(serializers.Serializer):
    title = StrictCharField(
        max_length=200, required=False, allow_blank=True, default="", trim_whitespace=False
    )
    adapter = StrictCharField(required=False, allow_null=True, allow_blank=True)
    system_prompt = StrictCharField(
        required=False, allow_blank=True, default="", trim_whitespace=False
    )


class ConversationRenameSerializer(serializers.Serializer):
    title = StrictCharField(max_length=200, allow_blank=True, required=False, trim_whitespace=False)


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
