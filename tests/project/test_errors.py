"""The one error type: a code, a sentence, the field at fault, and one status per code."""

from chatsite.errors import ChatError, field_error, status_of


def test_it_names_a_refused_field_in_the_sentence_and_in_param():
    err = field_error("messages.0.role", "must be system, user or assistant.")

    assert (err.code, err.param) == ("bad_request", "messages.0.role")
    assert err.message == "Field “messages.0.role”: must be system, user or assistant."


def test_it_keeps_no_field_for_an_error_about_no_field():
    assert ChatError("overloaded", "The engine is full; try again soon.").param is None


def test_it_answers_each_code_with_its_one_status_and_any_other_with_400():
    assert status_of(ChatError("unknown_adapter", "No such adapter.")) == 404
    assert status_of(ChatError("rate_limited", "Too many requests.")) == 429
    assert status_of(ChatError("invalid_title", "A name needs a letter.")) == 400


def test_it_agrees_with_the_statuses_drf_gives_its_own_refusals_in_the_native_api():
    from chatsite.chat.transports.api_common import _NATIVE_CODES

    for drf_exception, code in _NATIVE_CODES:
        assert status_of(ChatError(code, "")) == drf_exception.status_code, code
