"""An answer that cannot end before the test acts.

A test that needs an answer still running (to stop it, drop its client, kill its worker) asks
for `HELD`: end-of-sequence is ignored and the token budget would take the tiny demo model
well over a minute, so only what the test does ends it. Never a sleep, never a seed that
"happens" to run long. `HELD_ENV` raises the server's limits so such a request is admitted.
"""

HELD_TOKENS = 40_000
HELD = {"temperature": 0, "max_tokens": HELD_TOKENS, "ignore_eos": True}
HELD_ENV = {
    "MAX_NEW_TOKENS": str(HELD_TOKENS),
    # Held rows reserve their whole budget; dozens of them must still share one batch.
    "ENGINE_MAX_BATCH_TOKENS": str(100 * HELD_TOKENS),
}
