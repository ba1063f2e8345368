from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        required=False,
        help_text="A label to tell your keys apart, such as the integration that uses it.",
    )


class SignupForm(UserCreationForm):
    """A username and a password; an email address only if the person wants password resets."""

    email = forms.EmailField(
        required=False,
        help_text="Optional. Only used to send you a link if you forget your password.",
    )

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")
