"""Users see and use only the adapters they may; a forbidden one looks exactly like an unknown one.

Setup (`restricted`): demo-poet is staff only, demo-chef is for the "chefs" group, demo-terse is
disabled. Checked on the chat page's picker, the read API and the socket.
"""

import pytest

ALL = {"demo-poet", "demo-chef", "demo-terse"}


def picker_slugs(client, user) -> set[str]:
    client.force_login(user)
    page = client.get("/").content.decode()
    return {slug for slug in ALL if f'value="{slug}"' in page}


def api_slugs(client, user) -> set[str]:
    client.force_login(user)
    return {adapter["slug"] for adapter in client.get("/api/v1/adapters/").json()}


@pytest.mark.django_db
@pytest.mark.parametrize("listing", [picker_slugs, api_slugs], ids=["page", "api"])
def test_it_lists_each_user_only_the_adapters_they_may_use(
    client, restricted, owner, staff_user, group_member, admin_user, listing
):
    assert listing(client, owner) == set()
    assert listing(client, staff_user) == {"demo-poet"}
    assert listing(client, group_member) == {"demo-chef"}
    assert listing(client, admin_user) == {"demo-poet", "demo-chef"}


@pytest.mark.django_db
def test_it_lists_public_enabled_adapters_to_everyone(client, demo_adapters, owner):
    assert picker_slugs(client, owner) == ALL
    assert api_slugs(client, owner) == ALL


def refusal(events) -> dict:
    assert [e["type"] for e in events] == ["inference.error", "inference.end"]
    return events[0]["payload"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("slug", ["demo-poet", "demo-chef", "demo-terse"])
async def test_it_refuses_a_forbidden_adapter_on_the_socket_as_if_unknown(
    restricted, owner, socket_for, slug
):
    socket = await socket_for(owner)

    await socket.chat("Hello", adapter=slug)
    forbidden = refusal(await socket.until_end())
    await socket.chat("Hello", adapter="no-such-adapter")
    unknown = refusal(await socket.until_end())

    assert forbidden["code"] == unknown["code"] == "unknown_adapter"
    assert forbidden["message"] == unknown["message"].replace("no-such-adapter", slug)


@pytest.mark.django_db(transaction=True)
async def test_it_lets_a_group_member_chat_with_the_groups_adapter(restricted, group_member, socket_for):
    socket = await socket_for(group_member)

    await socket.chat("Hello", adapter="demo-chef", params={"max_tokens": 3})
    events = await socket.until_end()

    assert events[0]["type"] == "inference.start"
    assert events[0]["payload"]["adapter"] == "demo-chef"
    assert events[-1]["payload"]["reason"] in ("stop", "length")


@pytest.mark.django_db(transaction=True)
async def test_it_refuses_to_continue_with_an_adapter_that_became_forbidden(
    demo_adapters, owner, socket_for
):
    from channels.db import database_sync_to_async

    socket = await socket_for(owner)
    await socket.chat("Hello", adapter="demo-poet", params={"max_tokens": 2})
    conversation = (await socket.until_end())[0]["payload"]["conversation"]
    poet = demo_adapters["demo-poet"]
    poet.visibility = "staff"
    await database_sync_to_async(poet.save)()

    await socket.chat("Again", conversation=conversation)

    assert refusal(await socket.until_end())["code"] == "unknown_adapter"
