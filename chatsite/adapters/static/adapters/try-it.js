// The admin's try-it box: post a test prompt and show the streamed answer as it arrives.
// The server answers with server-sent events in the native envelope format (docs/PROTOCOL.md §1).
// Text from the model is untrusted: it is only ever inserted with textContent.

const form = document.getElementById("adapter-try");

if (form) {
  const output = document.getElementById("adapter-try-output");
  const status = document.getElementById("adapter-try-status");
  const button = form.querySelector("button[type=submit]");

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    output.textContent = "";
    status.textContent = "Streaming…";
    button.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: { Accept: "text/event-stream" },
      });
      if (!response.ok) {
        status.textContent = `The server answered ${response.status}.`;
        return;
      }
      await readEvents(response.body, show);
    } catch (error) {
      status.textContent = `The stream broke: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  });

  function show(envelope) {
    const payload = envelope.payload || {};
    if (envelope.type === "inference.token") {
      output.textContent += payload.text;
    } else if (envelope.type === "inference.error") {
      status.textContent = `${payload.code}: ${payload.message}`;
    } else if (envelope.type === "inference.end") {
      const usage = payload.usage || {};
      const timings = payload.timings || {};
      const ended = `Ended (${payload.reason}): ${usage.completion_tokens} tokens, first after ${timings.ttft_ms ?? "—"} ms, ${timings.total_ms} ms in all.`;
      status.textContent = status.textContent.startsWith("Streaming") ? ended : `${status.textContent} ${ended}`;
    }
  }
}

async function readEvents(body, onEnvelope) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("\n");
      if (data) onEnvelope(JSON.parse(data));
    }
  }
}
