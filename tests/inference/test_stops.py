"""Stop strings: the answer ends just before one, and none of it is ever streamed."""

from inference.stops import StopMatcher


def feed(matcher: StopMatcher, *chunks: str) -> list[tuple[str, bool]]:
    return [matcher.push(chunk) for chunk in chunks]


def test_it_passes_text_through_without_stop_strings():
    assert feed(StopMatcher([]), "hello", " world") == [("hello", False), (" world", False)]


def test_it_cuts_the_text_just_before_a_stop_string():
    assert feed(StopMatcher(["END"]), "one two END three") == [("one two ", True)]


def test_it_holds_back_what_could_be_the_start_of_a_stop_string():
    matcher = StopMatcher(["<|end|>"])

    assert feed(matcher, "hello <|", "en") == [("hello ", False), ("", False)]
    assert matcher.push("d|> and more") == ("", True)


def test_it_releases_held_text_that_turns_out_not_to_be_a_stop():
    matcher = StopMatcher(["<|end|>"])

    assert feed(matcher, "a <|e", "ach") == [("a ", False), ("<|each", False)]


def test_it_stops_at_the_earliest_of_several_stop_strings():
    assert feed(StopMatcher(["world", "lo w"]), "hello world") == [("hel", True)]


def test_it_returns_held_text_on_flush():
    matcher = StopMatcher(["###"])
    matcher.push("done #")

    assert matcher.flush() == "#"
    assert matcher.flush() == ""


def test_it_ignores_empty_stop_strings():
    assert feed(StopMatcher([""]), "text") == [("text", False)]
