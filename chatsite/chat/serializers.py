from rest_framework import serializers

from chatsite.adapters.models import Adapter
from chatsite.chat.models import Conversation, Message


class AdapterSerializer(serializers.ModelSerializer):
    class Meta:
        model = Adapter
        fields = ["slug", "name", "description"]


class ConversationSerializer(serializers.ModelSerializer):
    adapter = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Conversation
        fields = ["id", "title", "adapter", "system_prompt", "created_at", "updated_at"]


class MessageSerializer(serializers.ModelSerializer):
    adapter = serializers.SlugRelatedField(slug_field="slug", read_only=True)
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
