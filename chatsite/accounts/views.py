from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_not_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_POST
from django.views.generic import CreateView

from chatsite.accounts import keys
from chatsite.accounts.forms import ApiKeyForm, SignupForm


@method_decorator(login_not_required, name="dispatch")
class SignupView(CreateView):
    form_class = SignupForm
    template_name = "registration/signup.html"
    success_url = reverse_lazy("chat:home")

    def form_valid(self, form):
        response = super().form_valid(form)
        login(self.request, self.object, backend="django.contrib.auth.backends.ModelBackend")
        return response


def api_keys(request):
    """List the user's keys and create one; a new key's secret is shown on this answer only."""
    form = ApiKeyForm(request.POST or None)
    secret = None
    if request.method == "POST" and form.is_valid():
        _, secret = keys.api_key_create(user=request.user, name=form.cleaned_data["name"])
        form = ApiKeyForm()
    return render(
        request,
        "accounts/api_keys.html",
        {"form": form, "secret": secret, "keys": keys.api_keys_of(request.user)},
    )


@require_POST
def api_key_revoke(request, key_id: int):
    if not keys.api_key_revoke(user=request.user, key_id=key_id):
        raise Http404("No such key.")
    messages.success(request, "The key was revoked; calls that use it now get 401.")
    return redirect("api-keys")
