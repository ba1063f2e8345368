"""A small SVG chart of an adapter's use per day, drawn on the server: requests as bars,
tokens per second as a line. No script, no inline style (the CSP allows neither: colours are SVG
attributes) and no chart library; every value is also in a `<title>` (a tooltip, and what a
screen reader says)."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join

from chatsite.adapters.selectors import UsageDay

WIDTH, HEIGHT, PAD = 420, 120, 18  # px; the plot is HEIGHT - 2 * PAD tall


def usage_chart(days: list[UsageDay]) -> str:
    """An inline <svg> (safe HTML) with one bar per day and the tokens/s line over them."""
    plot = HEIGHT - 2 * PAD
    step = WIDTH / max(len(days), 1)
    most = max((d.requests for d in days), default=0) or 1
    fastest = max((d.tokens_per_s or 0 for d in days), default=0) or 1
    bars = format_html_join("", (
        '<rect class="requests" x="{}" y="{}" width="{}" height="{}" fill="#79aec8">'
        "<title>{}: {} requests{}</title></rect>"
    ), (
        (_px(i * step + 1), _px(PAD + plot - plot * d.requests / most), _px(max(step - 2, 1)),
         _px(plot * d.requests / most), d.day.strftime("%d %b"), d.requests, _rate(d))
        for i, d in enumerate(days)
    ))
    points = " ".join(
        f"{i * step + step / 2:.1f},{PAD + plot - plot * d.tokens_per_s / fastest:.1f}"
        for i, d in enumerate(days) if d.tokens_per_s
    )
    line = format_html(
        '<polyline class="rate" points="{}" fill="none" stroke="#c2410c" stroke-width="2" />',
        points,
    ) if points else ""
    return format_html(
        '<svg data-testid="adapter-usage-chart" class="usage-chart" viewBox="0 0 {} {}" '
        'width="{}" height="{}" role="img" aria-label="{}" font-size="10" fill="currentColor">'
        "{}{}"
        '<text x="0" y="11">requests per day (bars, most {}) · tokens/s (line, best {})</text>'
        '<text x="0" y="{}">{}</text><text x="{}" y="{}" text-anchor="end">{}</text></svg>',
        WIDTH, HEIGHT, WIDTH, HEIGHT, f"Use over the last {len(days)} days",
        bars, line, most, f"{fastest:.1f}" if any(d.tokens_per_s for d in days) else "none",
        HEIGHT - 4, days[0].day.strftime("%d %b") if days else "",
        WIDTH, HEIGHT - 4, days[-1].day.strftime("%d %b") if days else "",
    )


def _px(value: float) -> str:
    # format_html escapes its arguments to strings first, so numbers are formatted here.
    return f"{value:.1f}"


def _rate(day: UsageDay) -> str:
    return f", {day.tokens_per_s:.1f} tokens/s" if day.tokens_per_s else ""
