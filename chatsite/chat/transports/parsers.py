"""The native API's JSON parser: DRF's, through the input gate (chatsite/chat/transports/gate.py). Its own
module: DRF imports it while building APIView."""

from django.conf import settings
from rest_framework.parsers import JSONParser

from chatsite.chat.transports import gate


class GateJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        # DRF reads the stream itself, past Django's DATA_UPLOAD_MAX_MEMORY_SIZE check.
        raw = stream.read(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
        return gate.loads(raw)
