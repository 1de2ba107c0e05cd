"""Shared by the browser checks in .ci/checks/ (docs, stream, dashboard): Playwright, imported
from the checks' virtual environment (target/ci-venv-playwright, which .ci/lib/browser.sh makes)
when the script was started with another Python, and the flags Debian's Chromium runs with."""

import os
import sys

try:
    from playwright.sync_api import Error as PlaywrightError  # noqa: F401
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: F401
    from playwright.sync_api import sync_playwright  # noqa: F401
except ImportError:
    VENV_PY = os.path.join(os.path.dirname(__file__), "../../target/ci-venv-playwright/bin/python")
    if os.path.exists(VENV_PY) and not os.environ.get("CI_BROWSER_REEXEC"):
        os.environ["CI_BROWSER_REEXEC"] = "1"
        os.execv(VENV_PY, [VENV_PY, *sys.argv])
    print(f"{os.path.basename(sys.argv[0])}: ERROR: Playwright is not installed (the check's .sh "
          "installs it into target/ci-venv-playwright)", flush=True)
    sys.exit(2)

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
]
