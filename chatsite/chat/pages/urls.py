from django.urls import path, re_path

from chatsite.chat.pages import transfer_views, views

app_name = "chat"
urlpatterns = [
    path("", views.home, name="home"),
    path("c/<int:conversation_id>/", views.conversation_page, name="conversation"),
    path("c/search", views.conversation_search, name="search"),
    re_path(r"^c/export\.(?P<fmt>md|jsonl)$", transfer_views.export_all, name="export-all"),
    path("c/import", transfer_views.import_file, name="import"),
    re_path(
        r"^c/(?P<conversation_id>[0-9]+)/export\.(?P<fmt>md|jsonl)$", transfer_views.export_one,
        name="export",
    ),
    path("c/new", views.conversation_settings, name="create"),
    path("c/<int:conversation_id>/rename", views.conversation_rename, name="rename"),
    path("c/<int:conversation_id>/delete", views.conversation_delete, name="delete"),
    path("c/<int:conversation_id>/settings", views.conversation_settings, name="settings"),
]
