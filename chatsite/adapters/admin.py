from django.contrib import admin

from chatsite.adapters.models import Adapter


@admin.register(Adapter)
class AdapterAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "enabled", "base_model", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["slug", "name", "description"]
