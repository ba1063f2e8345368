from django.urls import path

from chatsite.chat import views

app_name = "chat"
urlpatterns = [
    path("", views.home, name="home"),
    path("c/<int:conversation_id>/", views.conversation_page, name="conversation"),
    path("c/search", views.conversation_search, name="search"),
    path("c/new", views.conversation_settings, name="create"),
    path("c/<int:conversation_id>/rename", views.conversation_rename, name="rename"),
    path("c/<int:conversation_id>/delete", views.conversation_delete, name="delete"),
    path("c/<int:conversation_id>/settings", views.conversation_settings, name="settings"),
]
