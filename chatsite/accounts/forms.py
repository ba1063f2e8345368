from django import forms


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        required=False,
        help_text="A label to tell your keys apart, such as the integration that uses it.",
    )
