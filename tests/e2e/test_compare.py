"""One message to several adapters at once over the native API: sibling answers, one batch."""

import pytest

from tests.e2e.clients import Account
from tests.e2e.servers import local_deployment
from tests.settings import TEST_MODEL_DIR

pytestmark = pytest.mark.e2e

COMPARED = ["demo-poet", "demo-chef", ""]  # "" is the base model


@pytest.fixture(scope="module")
def base_url(demo_model, tmp_path_factory):
    with local_deployment(tmp_path_factory.mktemp("compare"), TEST_MODEL_DIR) as url:
        yield url


def new_conversation(account) -> int:
    return account.post("/api/v1/conversations/", {}).json()["id"]


def compare(account, conversation, adapters, **extra):
    return account.post(
        f"/api/v1/conversations/{conversation}/messages/",
        {"content": "Tell me about rivers.", "adapters": adapters,
         "parameters": {"max_tokens": 8, "seed": 1}, **extra},
    )


def test_it_answers_one_message_with_each_adapter_as_sibling_answers(base_url):
    account = Account(base_url, "comparer")
    conversation = new_conversation(account)
    response = compare(account, conversation, COMPARED)
    assert response.status_code == 201, response.text
    body = response.json()
    assert len(body["messages"]) == 3 and body["message"] == body["messages"][0]

    answers = [account.wait_for_status(message_id) for message_id in body["messages"]]
    assert [answer["status"] for answer in answers] == ["complete"] * 3
    assert [answer["adapter"] for answer in answers] == ["demo-poet", "demo-chef", None]
    assert {answer["parent"] for answer in answers} == {body["user_message"]}
    assert all(answer["content"] for answer in answers)
    stream = account.get(f"/api/v1/messages/{body['messages'][1]}/stream", stream=True)
    assert "event: inference.end" in stream.text  # each answer streams as any other


def test_it_refuses_an_unknown_adapter_and_saves_nothing(base_url):
    account = Account(base_url, "careful")
    conversation = new_conversation(account)
    response = compare(account, conversation, ["demo-poet", "no-such-adapter"])
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_adapter"
    assert account.get(f"/api/v1/conversations/{conversation}/messages/").json() == []


@pytest.mark.parametrize(
    "adapters, extra, named",
    [
        (["demo-poet"], {}, "adapters"),
        (["demo-poet", "demo-chef", "demo-terse", "", "demo-poet"], {}, "adapters"),
        (["demo-poet", "demo-chef"], {"adapter": "demo-poet"}, "adapter"),
    ],
)
def test_it_refuses_a_bad_list_of_adapters_naming_the_field(base_url, adapters, extra, named):
    account = Account(base_url, f"picky{len(adapters)}{len(extra)}")
    response = compare(account, new_conversation(account), adapters, **extra)
    assert response.status_code == 400
    assert named in response.text


def test_it_refuses_the_same_adapter_twice(base_url):
    account = Account(base_url, "twice")
    response = compare(account, new_conversation(account), ["demo-poet", "demo-poet"])
    assert response.status_code == 400
    assert "once" in response.json()["message"]
