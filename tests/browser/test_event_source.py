"""A browser's own EventSource on the native SSE stream: it gets every event of an answer once,
and once the answer has ended its reconnect is answered 204, so it stops for good."""

FOLLOW_TO_THE_END = """async () => {
    const csrf = document.cookie.match(/csrftoken=([^;]+)/)[1];
    const post = (url, body) => fetch(url, {
        method: "POST",
        headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
        body: JSON.stringify(body),
    }).then((response) => response.json());
    const conversation = await post("/api/v1/conversations/", {});
    const sent = await post(`/api/v1/conversations/${conversation.id}/messages/`,
                            {content: "Hi", parameters: {max_tokens: 4}});
    return await new Promise((resolve) => {
        const seen = {ids: [], types: [], opens: 0};
        const source = new EventSource(sent.stream);
        source.onopen = () => { seen.opens += 1; };
        for (const type of ["inference.start", "inference.token", "inference.error", "inference.end"]) {
            source.addEventListener(type, (event) => {
                seen.ids.push(event.lastEventId);
                seen.types.push(type);
            });
        }
        source.onerror = () => {
            if (source.readyState === EventSource.CLOSED) resolve({...seen, closed: true});
        };
    });
}"""


def test_it_lets_an_event_source_stop_once_the_answer_has_ended(visit):
    browser = visit()
    browser.sign_up("eve-source")

    seen = browser.page.evaluate(FOLLOW_TO_THE_END)

    # One connection that got every event once; its reconnect (after `retry:`) got 204.
    assert seen["closed"] and seen["opens"] == 1
    assert seen["ids"] == [str(i) for i in range(len(seen["ids"]))]
    assert seen["types"][0] == "inference.start" and seen["types"][-1] == "inference.end"
