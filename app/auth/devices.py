"""A coarse label of the device behind a log-in, from its User-Agent: "Firefox on Linux".

Only the browser family and the operating system, never a version or a
build: the label is for a person telling their own log-ins apart, and a
finer one would fingerprint them. Anything not recognised is "unknown".
"""

from __future__ import annotations

UNKNOWN_DEVICE = "unknown"
#: Only the start of a User-Agent is read.
MAX_READ = 512

# Order matters: Edge and Opera say "Chrome" too, Chrome says "Safari",
# and every Android says "Linux".
_BROWSERS = (
    ("edg/", "Edge"),
    ("edga/", "Edge"),
    ("edgios/", "Edge"),
    ("opr/", "Opera"),
    ("firefox/", "Firefox"),
    ("fxios/", "Firefox"),
    ("crios/", "Chrome"),
    ("chrome/", "Chrome"),
    ("chromium/", "Chromium"),
    ("safari/", "Safari"),
    ("curl/", "curl"),
    ("python-httpx/", "httpx"),
    ("okhttp/", "OkHttp"),
    ("cfnetwork/", "an iOS app"),
    ("dalvik/", "an Android app"),
)
_SYSTEMS = (
    ("windows", "Windows"),
    ("iphone", "iOS"),
    ("ipad", "iPadOS"),
    ("android", "Android"),
    ("cros", "ChromeOS"),
    ("mac os x", "macOS"),
    ("macintosh", "macOS"),
    ("darwin", "macOS"),
    ("linux", "Linux"),
)


def _first(text: str, table: tuple[tuple[str, str], ...]) -> str | None:
    return next((name for needle, name in table if needle in text), None)


def device_label(user_agent: str | None) -> str:
    """ "<browser> on <system>", one of the two alone, or "unknown"."""
    if not user_agent:
        return UNKNOWN_DEVICE
    text = user_agent[:MAX_READ].lower()
    browser, system = _first(text, _BROWSERS), _first(text, _SYSTEMS)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or UNKNOWN_DEVICE
