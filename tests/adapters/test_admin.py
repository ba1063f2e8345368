"""Adding and managing adapters in the admin, as an administrator does it (Django test client)."""

import io
import shutil
import socket
import zipfile

import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile

from chatsite.adapters.models import Adapter
from tests.adapters.conftest import CONFIG, WEIGHTS

pytestmark = pytest.mark.django_db
ADD = "/admin/adapters/adapter/add/"


def change_url(adapter) -> str:
    return f"/admin/adapters/adapter/{adapter.pk}/change/"


def form(slug="mine", **fields) -> dict:
    return {"slug": slug, "name": slug.title(), "visibility": "public", "enabled": "on", **fields}


def upload(path, name=None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or path.name, path.read_bytes())


def zip_of(entries: dict[str, bytes]) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        for name, data in entries.items():
            out.writestr(name, data)
    return SimpleUploadedFile("adapter.zip", buffer.getvalue())


def files_of(crafted) -> dict:
    return {"config_file": upload(crafted.path / CONFIG), "weights_file": upload(crafted.path / WEIGHTS)}


def refused(response) -> str:
    """The page an invalid form comes back as, with its errors."""
    assert response.status_code == 200, response.status_code
    assert response.context["adminform"].form.errors, "the form was accepted"
    return response.content.decode()


def nothing_written(adapters_dir) -> bool:
    leftovers = [p for p in adapters_dir.rglob("*") if p.is_file()]
    return leftovers == []


# --- ways in ----------------------------------------------------------------------------------


def test_it_offers_the_four_ways_in_on_the_add_page(admin_client, adapters_dir):
    page = admin_client.get(ADD).content.decode()

    assert 'enctype="multipart/form-data"' in page
    for field in ("config_file", "weights_file", "archive", "server_path", "hub_id"):
        assert f'name="{field}"' in page
    assert page.count('name="way_in"') == 4



def test_it_adds_an_adapter_from_its_two_uploaded_files(admin_client, craft, adapters_dir):
    response = admin_client.post(ADD, form(way_in="files", **files_of(craft())))

    assert response.status_code == 302
    adapter = Adapter.objects.get(slug="mine")
    assert (adapter.enabled, adapter.location, adapter.source, adapter.rank) == (True, "mine", "upload", 8)
    assert sorted(p.name for p in (adapters_dir / "mine").iterdir()) == [CONFIG, WEIGHTS]


def test_it_adds_an_adapter_from_a_zip(admin_client, craft, adapters_dir):
    crafted = craft("demo-chef")
    archive = zip_of({f"chef/{n}": (crafted.path / n).read_bytes() for n in (CONFIG, WEIGHTS)})

    response = admin_client.post(ADD, form(way_in="zip", archive=archive))

    assert response.status_code == 302
    assert Adapter.objects.get(slug="mine").rank == 16
    assert (adapters_dir / "mine" / WEIGHTS).is_file()


def test_it_registers_a_directory_inside_adapters_dir_where_it_is(admin_client, craft, adapters_dir):
    shutil.copytree(craft().path, adapters_dir / "team" / "poet-v2")

    response = admin_client.post(ADD, form(way_in="path", server_path="team/poet-v2"))

    assert response.status_code == 302
    assert Adapter.objects.get(slug="mine").location == "team/poet-v2"


@pytest.mark.parametrize("where", ["../outside", "/etc", "linked"])
def test_it_refuses_a_server_path_outside_adapters_dir(admin_client, craft, adapters_dir, where):
    shutil.copytree(craft().path, adapters_dir.parent / "outside")
    (adapters_dir / "linked").symlink_to(adapters_dir.parent / "outside")

    page = refused(admin_client.post(ADD, form(way_in="path", server_path=where)))

    assert "is not a directory inside ADAPTERS_DIR" in page
    assert not Adapter.objects.exists()


def test_it_refuses_a_server_path_whose_weights_link_outside(admin_client, craft, adapters_dir):
    crafted = craft()
    (adapters_dir / "sneaky").mkdir()
    shutil.copy(crafted.path / CONFIG, adapters_dir / "sneaky")
    (adapters_dir / "sneaky" / WEIGHTS).symlink_to(crafted.path / WEIGHTS)

    page = refused(admin_client.post(ADD, form(way_in="path", server_path="sneaky")))

    assert "adapter_model.safetensors in sneaky links outside ADAPTERS_DIR" in page


def test_it_says_plainly_when_the_hub_cannot_be_reached(admin_client, adapters_dir, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")

    page = refused(admin_client.post(ADD, form(way_in="hub", hub_id="someone/poet-lora")))

    assert f"could not be fetched from the model hub at http://127.0.0.1:{port}" in page
    assert nothing_written(adapters_dir)


def test_it_asks_for_the_files_the_chosen_way_needs(admin_client, craft, adapters_dir):
    page = refused(admin_client.post(ADD, form(way_in="files", config_file=upload(craft().path / CONFIG))))

    assert "Choose the adapter_model.safetensors file." in page


# --- rejections reach the form in plain words -------------------------------------------------


def test_it_rejects_uploaded_pickle_weights(admin_client, craft, adapters_dir):
    crafted = craft()
    torch.save(crafted.weights, crafted.path / "adapter_model.bin")
    files = {"config_file": upload(crafted.path / CONFIG), "weights_file": upload(crafted.path / "adapter_model.bin")}

    page = refused(admin_client.post(ADD, form(way_in="files", **files)))

    assert "adapter_model.bin is a pickle file, which can run code when loaded" in page
    assert nothing_written(adapters_dir)


def test_it_rejects_a_pickle_uploaded_as_safetensors(admin_client, craft, adapters_dir):
    crafted = craft()
    torch.save(crafted.weights, crafted.path / WEIGHTS)

    page = refused(admin_client.post(ADD, form(way_in="files", **files_of(crafted))))

    assert "pickle file with a safetensors name" in page
    assert nothing_written(adapters_dir)


def test_it_rejects_a_rank_above_adapter_max_rank(admin_client, craft, adapters_dir, settings):
    settings.ADAPTER_MAX_RANK = 4

    page = refused(admin_client.post(ADD, form(way_in="files", **files_of(craft()))))

    assert "The adapter has rank 8; this server accepts ranks up to 4 (ADAPTER_MAX_RANK)." in page


def test_it_rejects_files_larger_than_adapter_max_bytes(admin_client, craft, adapters_dir, settings):
    settings.ADAPTER_MAX_BYTES = 1000

    page = refused(admin_client.post(ADD, form(way_in="files", **files_of(craft()))))

    assert "ADAPTER_MAX_BYTES" in page
    assert nothing_written(adapters_dir)


def test_it_rejects_a_zip_that_escapes_and_writes_nothing(admin_client, craft, adapters_dir):
    crafted = craft()
    entries = {n: (crafted.path / n).read_bytes() for n in (CONFIG, WEIGHTS)}
    archive = zip_of({**entries, "../../evil.txt": b"x"})

    page = refused(admin_client.post(ADD, form(way_in="zip", archive=archive)))

    assert "points outside the archive" in page
    assert nothing_written(adapters_dir)
    assert not (adapters_dir.parent / "evil.txt").exists()


def test_it_rejects_an_adapter_for_another_architecture(admin_client, craft, adapters_dir):
    crafted = craft().set(target_modules=["query_key_value"])

    page = refused(admin_client.post(ADD, form(way_in="files", **files_of(crafted))))

    assert "The base model has no layer called query_key_value" in page


def test_it_refuses_a_default_max_tokens_above_the_servers_limit(admin_client, craft, adapters_dir, settings):
    page = refused(admin_client.post(ADD, form(way_in="files", max_tokens=settings.MAX_NEW_TOKENS + 1, **files_of(craft()))))

    assert f"At most {settings.MAX_NEW_TOKENS}" in page


def test_it_keeps_no_staged_files_when_another_field_is_refused(admin_client, craft, adapters_dir):
    page = refused(admin_client.post(ADD, form(way_in="files", temperature=5, **files_of(craft()))))

    assert "Ensure this value is less than or equal to 2" in page
    assert nothing_written(adapters_dir)


def test_it_shows_a_warning_when_only_the_base_models_name_differs(admin_client, craft, adapters_dir):
    crafted = craft().set(base_model_name_or_path="someone/llama-tiny")

    response = admin_client.post(ADD, form(way_in="files", **files_of(crafted)), follow=True)

    assert "someone/llama-tiny" in response.content.decode()
    assert "someone/llama-tiny" in Adapter.objects.get(slug="mine").validation_warnings


# --- enabling, validating again -----------------------------------------------------------------


@pytest.fixture
def imported(admin_client, craft, adapters_dir):
    """An adapter added through the admin, disabled, with its directory at hand."""
    admin_client.post(ADD, form(way_in="files", enabled="", **files_of(craft())))
    adapter = Adapter.objects.get(slug="mine")
    assert not adapter.enabled
    return adapter


def change_form(adapter, **fields) -> dict:
    return {
        "slug": adapter.slug, "name": adapter.name, "visibility": adapter.visibility,
        "description": "", "system_prompt": "", **fields,
    }


def test_it_validates_again_before_enabling(admin_client, imported, adapters_dir):
    (adapters_dir / "mine" / CONFIG).write_text('{"peft_type": "LORA", "use_dora": true}')

    page = refused(admin_client.post(change_url(imported), change_form(imported, enabled="on")))

    assert "It cannot be enabled:" in page and "DoRA" in page
    imported.refresh_from_db()
    assert not imported.enabled


def test_it_enables_an_adapter_whose_files_pass(admin_client, imported):
    response = admin_client.post(change_url(imported), change_form(imported, enabled="on"))

    assert response.status_code == 302
    imported.refresh_from_db()
    assert imported.enabled


def test_it_disables_an_adapter_that_fails_validation_again(admin_client, imported, adapters_dir):
    Adapter.objects.filter(pk=imported.pk).update(enabled=True)
    (adapters_dir / "mine" / WEIGHTS).write_bytes(b"\x80\x02 not weights")

    response = admin_client.post(f"/admin/adapters/adapter/{imported.pk}/validate/", follow=True)

    assert "failed validation and is disabled" in response.content.decode()
    imported.refresh_from_db()
    assert not imported.enabled


def test_it_enables_and_disables_from_the_list(admin_client, imported):
    changelist = "/admin/adapters/adapter/"

    admin_client.post(changelist, {"action": "enable", "_selected_action": [imported.pk]})
    imported.refresh_from_db()
    assert imported.enabled
    admin_client.post(changelist, {"action": "disable", "_selected_action": [imported.pk]})
    imported.refresh_from_db()
    assert not imported.enabled


def test_it_answers_action_urls_only_to_post(admin_client, imported):
    assert admin_client.get(f"/admin/adapters/adapter/{imported.pk}/validate/").status_code == 405


def test_it_keeps_adapter_actions_from_non_staff(client, owner, imported):
    client.force_login(owner)

    response = client.post(f"/admin/adapters/adapter/{imported.pk}/try/", {"prompt": "Hi"})

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_it_validates_again_on_request_and_says_so(admin_client, imported):
    before = imported.validated_at

    response = admin_client.post(f"/admin/adapters/adapter/{imported.pk}/validate/", follow=True)

    assert "Adapter mine passed validation." in response.content.decode()
    imported.refresh_from_db()
    assert imported.validated_at > before
