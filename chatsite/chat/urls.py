from django.urls import path

from chatsite.chat import views

app_name = "chat"
urlpatterns = [
    path("", views.home, name="home"),
    path("c/<int:conversation_id>/", views.conversation_page, name="conversation"),
]
